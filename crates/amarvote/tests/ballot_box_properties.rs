//! A property of the ballot box under attack: whatever mix of honest and hostile
//! submissions arrives, in whatever order, the ballot box holds exactly the ballots a
//! model of the rules accepts, the published record holds the same ones, and
//! `amarvote verify` proves that record complete.

mod common;

use std::collections::BTreeSet;

use amarvote::commands::client::Client;
use amarvote::domain::{BallotState, TALLY_SHARDS};
use common::{submit_ballot, without_nonces, TestServer, VoterDevice};
use electionguard::ballot::CiphertextBallot;
use electionguard::tally::CiphertextTally;
use proptest::prelude::*;

const VOTERS: usize = 4;

#[derive(Clone, Debug)]
enum Attempt {
    /// The voter's device encrypts, chains and submits a ballot.
    Device { voter: usize, spoil: bool },
    /// The server encrypts for the voter, who then casts or challenges it.
    Server { voter: usize, spoil: bool },
    /// A copy of an accepted ballot, re-labelled and chained on the voter's device.
    Copy { voter: usize, of: usize },
    /// An accepted ballot's id again, on a fresh encryption.
    SameId { voter: usize, of: usize },
    /// A ballot seeded from the device's hash again: a fork of its chain.
    Fork { voter: usize },
    /// A ballot that still carries its nonces.
    Nonces { voter: usize },
    /// An id that would leave the record's directory.
    PathId { voter: usize },
}

fn attempt() -> impl Strategy<Value = Attempt> {
    let voter = 0..VOTERS;
    prop_oneof![
        (voter.clone(), any::<bool>()).prop_map(|(voter, spoil)| Attempt::Device { voter, spoil }),
        (voter.clone(), any::<bool>()).prop_map(|(voter, spoil)| Attempt::Server { voter, spoil }),
        (voter.clone(), 0..8usize).prop_map(|(voter, of)| Attempt::Copy { voter, of }),
        (voter.clone(), 0..8usize).prop_map(|(voter, of)| Attempt::SameId { voter, of }),
        voter.clone().prop_map(|voter| Attempt::Fork { voter }),
        voter.clone().prop_map(|voter| Attempt::Nonces { voter }),
        voter.prop_map(|voter| Attempt::PathId { voter }),
    ]
}

/// What the rules say the ballot box holds.
#[derive(Default)]
struct Model {
    cast: BTreeSet<String>,
    spoiled: BTreeSet<String>,
    has_cast: Vec<bool>,
    challenges: Vec<u64>,
    accepted: Vec<CiphertextBallot>,
}

impl Model {
    /// Whether the rules let `voter` add a ballot in this state.
    fn allows(&self, voter: usize, spoil: bool, max_challenges: u64) -> bool {
        !self.has_cast[voter] && (!spoil || self.challenges[voter] < max_challenges)
    }

    fn accept(&mut self, voter: usize, spoil: bool, ballot: CiphertextBallot) {
        let id = ballot.object_id.clone();
        if spoil {
            self.challenges[voter] += 1;
            self.spoiled.insert(id);
        } else {
            self.has_cast[voter] = true;
            self.cast.insert(id);
        }
        self.accepted.push(ballot);
    }
}

struct Election<'a> {
    server: &'a TestServer,
    id: String,
    voters: Vec<String>,
    devices: Vec<VoterDevice>,
    serial: u64,
}

impl Election<'_> {
    fn next_id(&mut self) -> String {
        self.serial += 1;
        format!("b-{}", self.serial)
    }

    /// Submits a device ballot; (status, the ballot as submitted).
    async fn device_ballot(&mut self, voter: usize, spoil: bool) -> (u16, CiphertextBallot) {
        let id = self.next_id();
        let ballot = without_nonces(&self.devices[voter].encrypt(&id, self.serial));
        let (status, _) =
            submit_ballot(self.server, &self.id, &self.voters[voter], &ballot, spoil).await;
        if status != 201 {
            self.devices[voter].next_seed = ballot.code_seed.clone();
        }
        (status, ballot)
    }

    /// A ballot encrypted on the server, then cast or challenged; the status of the decision.
    async fn server_ballot(&mut self, voter: usize, spoil: bool) -> (u16, Option<String>) {
        let (status, body) = common::status_of(
            self.server,
            reqwest::Method::POST,
            &format!("/api/elections/{}/ballots/encrypt", self.id),
            Some(&self.voters[voter]),
            r#"{"choices":{}}"#,
        )
        .await;
        if status != 201 {
            return (status, None);
        }
        let ballot = body["ballot_id"].as_str().unwrap().to_string();
        let action = if spoil { "challenge" } else { "cast" };
        let (status, _) = common::status_of(
            self.server,
            reqwest::Method::POST,
            &format!("/api/elections/{}/ballots/{ballot}/{action}", self.id),
            Some(&self.voters[voter]),
            "{}",
        )
        .await;
        (status, Some(ballot))
    }

    /// Submits `source` re-labelled as `id` on the voter's device; the status.
    async fn relabelled(&mut self, voter: usize, source: &CiphertextBallot, id: &str) -> u16 {
        let copy = self.devices[voter].relabel(source, id);
        // A refused copy leaves the device's chain where it was.
        self.devices[voter].next_seed = copy.code_seed.clone();
        submit_ballot(self.server, &self.id, &self.voters[voter], &copy, false)
            .await
            .0
    }
}

async fn run(server: &TestServer, attempts: Vec<Attempt>) -> Result<(), TestCaseError> {
    let client = Client::new(&server.url);
    let (id, voters, _) = common::small_election(&client, &server.admin, VOTERS as u32).await;
    let mut devices = Vec::new();
    for (i, voter) in voters.iter().enumerate() {
        devices.push(VoterDevice::register(server, &id, voter, 100 + i as u64).await);
    }
    let mut election = Election {
        server,
        id: id.clone(),
        voters,
        devices,
        serial: 0,
    };
    let max = server.app.settings.max_challenges_per_voter;
    let mut model = Model {
        has_cast: vec![false; VOTERS],
        challenges: vec![0; VOTERS],
        ..Model::default()
    };
    for attempt in attempts {
        match attempt {
            Attempt::Device { voter, spoil } => {
                let allowed = model.allows(voter, spoil, max);
                let (status, ballot) = election.device_ballot(voter, spoil).await;
                prop_assert_eq!(status == 201, allowed, "{:?} answered {}", attempt, status);
                if allowed {
                    model.accept(voter, spoil, ballot);
                }
            }
            Attempt::Server { voter, spoil } => {
                let allowed = model.allows(voter, spoil, max);
                let (status, ballot) = election.server_ballot(voter, spoil).await;
                prop_assert_eq!(status == 200, allowed, "{:?} answered {}", attempt, status);
                if let (true, Some(ballot)) = (allowed, ballot) {
                    let counted = if spoil {
                        &mut model.spoiled
                    } else {
                        &mut model.cast
                    };
                    counted.insert(ballot);
                    if spoil {
                        model.challenges[voter] += 1;
                    } else {
                        model.has_cast[voter] = true;
                    }
                }
            }
            Attempt::Copy { voter, of } if !model.accepted.is_empty() => {
                let source = model.accepted[of % model.accepted.len()].clone();
                let fresh = election.next_id();
                let status = election.relabelled(voter, &source, &fresh).await;
                prop_assert_ne!(status, 201, "a copy was accepted");
            }
            Attempt::SameId { voter, of } if !model.accepted.is_empty() => {
                let taken = model.accepted[of % model.accepted.len()].object_id.clone();
                let device = &mut election.devices[voter];
                let seed = device.next_seed.clone();
                let fresh = without_nonces(&device.encrypt(&taken, 7));
                device.next_seed = seed;
                let (status, _) =
                    submit_ballot(server, &id, &election.voters[voter], &fresh, true).await;
                prop_assert_ne!(status, 201, "a ballot under a taken id was accepted");
            }
            Attempt::Fork { voter } => {
                let device = &mut election.devices[voter];
                let (seed, origin) = (device.next_seed.clone(), device.device.hash());
                if seed != origin {
                    device.next_seed = origin;
                    let fork = without_nonces(&device.encrypt("fork", 8));
                    device.next_seed = seed;
                    let (status, _) =
                        submit_ballot(server, &id, &election.voters[voter], &fork, true).await;
                    prop_assert_ne!(status, 201, "a fork of a chain was accepted");
                }
            }
            Attempt::Nonces { voter } => {
                let device = &mut election.devices[voter];
                let seed = device.next_seed.clone();
                let carrying = device.encrypt("with-nonces", 9);
                device.next_seed = seed;
                let (status, _) =
                    submit_ballot(server, &id, &election.voters[voter], &carrying, true).await;
                prop_assert_ne!(status, 201, "a ballot with its nonces was accepted");
            }
            Attempt::PathId { voter } => {
                let device = &mut election.devices[voter];
                let seed = device.next_seed.clone();
                let hostile = without_nonces(&device.encrypt("/../../manifest", 10));
                device.next_seed = seed;
                let (status, _) =
                    submit_ballot(server, &id, &election.voters[voter], &hostile, true).await;
                prop_assert_eq!(status, 400);
            }
            Attempt::Copy { .. } | Attempt::SameId { .. } => {}
        }
    }

    let store = &server.app.store;
    prop_assert_eq!(
        store.count_ballots(&id, BallotState::Cast).await.unwrap(),
        model.cast.len() as u64
    );
    prop_assert_eq!(
        store
            .count_ballots(&id, BallotState::Spoiled)
            .await
            .unwrap(),
        model.spoiled.len() as u64
    );
    common::close_voting(&client, &server.admin, &id).await;
    let dir = tempfile::tempdir().unwrap();
    amarvote::commands::demo_server::download_record(&client, &id, dir.path())
        .await
        .unwrap();
    let record = amarvote::record_io::read_record(dir.path()).unwrap();
    let ids = |cast: bool| -> BTreeSet<String> {
        record
            .submitted_ballots
            .iter()
            .filter(|b| b.is_cast() == cast)
            .map(|b| b.object_id.clone())
            .collect()
    };
    prop_assert_eq!(ids(true), model.cast.clone());
    prop_assert_eq!(ids(false), model.spoiled.clone());
    // The running products kept at cast time hold exactly the cast ballots of the record.
    let shards = store.tally_shards(&id, 0, TALLY_SHARDS).await.unwrap();
    let held: u64 = shards.iter().map(|s| s.ballots).sum();
    prop_assert_eq!(held, model.cast.len() as u64);
    let mut of_products = CiphertextTally::empty("t", &record.manifest);
    let products: Vec<&[u8]> = shards.iter().map(|s| s.product.as_slice()).collect();
    of_products.append_inputs(&products).unwrap();
    let mut of_ballots = CiphertextTally::empty("t", &record.manifest);
    let cast: Vec<&CiphertextBallot> = record
        .submitted_ballots
        .iter()
        .filter(|b| b.is_cast())
        .collect();
    of_ballots.append_all(&cast).unwrap();
    prop_assert_eq!(of_products, of_ballots);
    let report = electionguard::verify::verify_record(&record);
    prop_assert!(
        report.passed(),
        "{:?}",
        report
            .checks
            .iter()
            .filter(|c| !c.passed())
            .map(|c| (c.name, &c.failures))
            .collect::<Vec<_>>()
    );
    Ok(())
}

#[test]
fn interleaved_honest_and_hostile_submissions_leave_a_ballot_box_the_record_and_verifier_agree_on()
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(common::embedded());
    let config = ProptestConfig {
        cases: 6,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(attempts in proptest::collection::vec(attempt(), 4..14))| {
        runtime.block_on(run(&server, attempts))?;
    });
}
