//! Properties over random inputs: ElGamal adds counts, any quorum of guardians decrypts
//! whatever subset is missing, and chunk tallies merge to the same tally in any order.
//!
//! Every case does 4096-bit arithmetic, so the case counts are small.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use electionguard::ballot::{
    BallotBoxState, CiphertextBallot, PlaintextBallot, PlaintextBallotContest,
    PlaintextBallotSelection,
};
use electionguard::context::CiphertextElectionContext;
use electionguard::decrypt::{
    combine_shares, compute_compensated_share, compute_decryption_share, lagrange_coefficients,
    reconstruct_share, tally_ciphertexts, ContestCiphertexts, DecryptionShare, PlaintextTally,
};
use electionguard::elgamal::{ElGamalCiphertext, ElGamalKeyPair, EncryptionKey};
use electionguard::encrypt::Encryptor;
use electionguard::group::ElementModQ;
use electionguard::key_ceremony::{
    joint_key, ElectionKeyPair, ElectionPartialKeyBackup, ElectionPublicKey,
};
use electionguard::manifest::{
    BallotStyle, Candidate, ContestDescription, GeopoliticalUnit, InternationalizedText, Manifest,
    SelectionDescription,
};
use electionguard::tally::{CiphertextTally, TallyError, TallyLayout};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const CONTESTS: usize = 2;
const SELECTIONS: usize = 3;
/// Ballots in the chunking property.
const BALLOTS: usize = 12;
const STYLE: &str = "style";
const TIMESTAMP: i64 = 1_700_000_000;

/// A voter's choice in each contest: a selection's index, or none (a null vote).
type Choices = Vec<Option<usize>>;

/// Votes per selection id.
type Counts = BTreeMap<String, u64>;

/// `CONTESTS` one-of-`SELECTIONS` contests in one district and one ballot style.
fn manifest() -> Manifest {
    let candidate_id = |c: usize, s: usize| format!("contest-{c}-candidate-{s}");
    let contests = (0..CONTESTS)
        .map(|c| ContestDescription {
            object_id: format!("contest-{c}"),
            sequence_order: c as u64,
            electoral_district_id: "district".into(),
            vote_variation: "one_of_m".into(),
            number_elected: 1,
            votes_allowed: Some(1),
            name: format!("Contest {c}"),
            ballot_selections: (0..SELECTIONS)
                .map(|s| SelectionDescription {
                    object_id: format!("contest-{c}-selection-{s}"),
                    sequence_order: s as u64,
                    candidate_id: candidate_id(c, s),
                })
                .collect(),
            ballot_title: None,
            ballot_subtitle: None,
            primary_party_ids: None,
        })
        .collect();
    let candidates = (0..CONTESTS)
        .flat_map(|c| (0..SELECTIONS).map(move |s| (c, s)))
        .map(|(c, s)| Candidate {
            object_id: candidate_id(c, s),
            name: InternationalizedText { text: vec![] },
            party_id: None,
            image_uri: None,
            is_write_in: None,
        })
        .collect();
    Manifest {
        election_scope_id: "properties".into(),
        spec_version: "1.0".into(),
        election_type: "general".into(),
        start_date: "2026-01-01T08:00:00+00:00".into(),
        end_date: "2026-01-01T20:00:00+00:00".into(),
        geopolitical_units: vec![GeopoliticalUnit {
            object_id: "district".into(),
            name: "District".into(),
            unit_type: "county".into(),
            contact_information: None,
        }],
        parties: vec![],
        candidates,
        contests,
        ballot_styles: vec![BallotStyle {
            object_id: STYLE.into(),
            geopolitical_unit_ids: Some(vec!["district".into()]),
            party_ids: None,
            image_uri: None,
        }],
        name: None,
        contact_information: None,
    }
}

fn plaintext_ballot(manifest: &Manifest, index: usize, choices: &Choices) -> PlaintextBallot {
    let contests = manifest
        .contests
        .iter()
        .zip(choices)
        .map(|(contest, choice)| PlaintextBallotContest {
            object_id: contest.object_id.clone(),
            ballot_selections: contest
                .ballot_selections
                .iter()
                .enumerate()
                .map(|(s, selection)| PlaintextBallotSelection {
                    object_id: selection.object_id.clone(),
                    vote: u64::from(*choice == Some(s)),
                    is_placeholder_selection: false,
                    write_in: None,
                })
                .collect(),
        })
        .collect();
    PlaintextBallot {
        object_id: format!("ballot-{index}"),
        style_id: STYLE.into(),
        contests,
    }
}

/// Encrypts and casts one ballot per voter.
fn cast_ballots(
    encryptor: &Encryptor,
    manifest: &Manifest,
    voters: &[Choices],
) -> Vec<CiphertextBallot> {
    voters
        .iter()
        .enumerate()
        .map(|(i, choices)| {
            let plaintext = plaintext_ballot(manifest, i, choices);
            let ballot = encryptor
                .encrypt(
                    &plaintext,
                    &ElementModQ::random(),
                    &ElementModQ::random(),
                    TIMESTAMP,
                )
                .unwrap();
            ballot.submit(BallotBoxState::Cast)
        })
        .collect()
}

fn tally_of<'a>(
    manifest: &Manifest,
    ballots: impl IntoIterator<Item = &'a CiphertextBallot>,
) -> CiphertextTally {
    let mut tally = CiphertextTally::empty("tally", manifest);
    for ballot in ballots {
        tally.append(ballot).unwrap();
    }
    tally
}

/// What the voters chose, counted in the clear.
fn ground_truth(manifest: &Manifest, voters: &[Choices]) -> Counts {
    let mut counts: Counts = manifest
        .contests
        .iter()
        .flat_map(|c| c.ballot_selections.iter().map(|s| (s.object_id.clone(), 0)))
        .collect();
    for choices in voters {
        for (contest, choice) in manifest.contests.iter().zip(choices) {
            if let Some(s) = choice {
                *counts
                    .get_mut(&contest.ballot_selections[*s].object_id)
                    .unwrap() += 1;
            }
        }
    }
    counts
}

fn decrypted_counts(tally: &PlaintextTally) -> Counts {
    tally
        .contests
        .values()
        .flat_map(|c| {
            c.selections
                .values()
                .map(|s| (s.object_id.clone(), s.tally))
        })
        .collect()
}

/// A uniformly random nonce below 2^255, which is below q, so it is always in range.
fn nonce() -> impl Strategy<Value = ElementModQ> {
    any::<[u8; 32]>().prop_map(|mut bytes| {
        bytes[0] &= 0x7f;
        ElementModQ::from_bytes_be(&bytes).unwrap()
    })
}

fn voters(count: impl Into<prop::collection::SizeRange>) -> impl Strategy<Value = Vec<Choices>> {
    prop::collection::vec(
        prop::collection::vec(prop::option::of(0..SELECTIONS), CONTESTS),
        count,
    )
}

/// One election key shared by the cases that need no key ceremony: building a key's table costs ~50 ms.
struct Election {
    keys: ElGamalKeyPair,
    key: EncryptionKey,
    manifest: Manifest,
    context: CiphertextElectionContext,
}

fn election() -> &'static Election {
    static ELECTION: OnceLock<Election> = OnceLock::new();
    ELECTION.get_or_init(|| {
        let keys = ElGamalKeyPair::from_secret(ElementModQ::random_at_least_two());
        let manifest = manifest();
        let context = CiphertextElectionContext::new(
            1,
            1,
            keys.public_key.clone(),
            ElementModQ::random(),
            manifest.crypto_hash(),
        );
        Election {
            key: EncryptionKey::new(&keys.public_key),
            keys,
            manifest,
            context,
        }
    })
}

/// The guardians after their key ceremony.
struct Guardians {
    keys: Vec<ElectionKeyPair>,
    public: Vec<ElectionPublicKey>,
}

impl Guardians {
    fn generate(number: usize, quorum: usize) -> Guardians {
        let keys: Vec<ElectionKeyPair> = (1..=number)
            .map(|i| ElectionKeyPair::generate(&format!("guardian-{i}"), i as u64, quorum as u32))
            .collect();
        let public = keys.iter().map(ElectionKeyPair::share).collect();
        Guardians { keys, public }
    }

    /// P_missing(ℓ) as guardian ℓ receives and checks it in the ceremony.
    fn coordinate(&self, missing: usize, available: usize) -> electionguard::elgamal::SecretKey {
        let backup =
            ElectionPartialKeyBackup::generate(&self.keys[missing], &self.public[available]);
        backup
            .verify(&self.keys[available], &self.public[missing])
            .unwrap()
    }

    /// Decrypts with every guardian but `missing`, rebuilding the missing ones' shares from
    /// the others' compensated shares; shares ordered available first, then missing.
    fn decrypt(
        &self,
        missing: &[usize],
        contests: &[ContestCiphertexts],
        manifest: &Manifest,
        qbar: &ElementModQ,
    ) -> PlaintextTally {
        let available: Vec<usize> = (0..self.keys.len())
            .filter(|i| !missing.contains(i))
            .collect();
        let mut shares: Vec<DecryptionShare> = available
            .iter()
            .map(|&a| compute_decryption_share("tally", &self.keys[a], contests, qbar))
            .collect();
        let available_keys: Vec<ElectionPublicKey> =
            available.iter().map(|&a| self.public[a].clone()).collect();
        let coefficients = lagrange_coefficients(&available_keys);
        for &m in missing {
            let parts: Vec<_> = available
                .iter()
                .map(|&a| {
                    compute_compensated_share(
                        "tally",
                        &self.coordinate(m, a),
                        &self.public[a],
                        &self.public[m],
                        contests,
                        qbar,
                    )
                })
                .collect();
            shares
                .push(reconstruct_share(&self.public[m], contests, &parts, &coefficients).unwrap());
        }
        combine_shares("tally", contests, &shares, manifest).unwrap()
    }
}

/// N guardians, quorum K, and a set of at most N − K missing guardians (by index). The
/// number missing is drawn before the quorum, so that most cases do have missing guardians.
fn guardians_quorum_and_missing() -> impl Strategy<Value = (usize, usize, Vec<usize>)> {
    (1..=5usize)
        .prop_flat_map(|n| (Just(n), 0..n))
        .prop_flat_map(|(n, missing)| {
            (
                Just(n),
                1..=n - missing,
                prop::sample::subsequence((0..n).collect::<Vec<_>>(), missing),
            )
        })
}

/// Cut points splitting `BALLOTS` ballots into chunks, and the order the chunks are merged in.
fn chunking() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    prop::sample::subsequence((1..BALLOTS).collect::<Vec<_>>(), 0..BALLOTS).prop_flat_map(|cuts| {
        let order = Just((0..=cuts.len()).collect::<Vec<_>>()).prop_shuffle();
        (Just(cuts), order)
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 8,
        // Failing cases are kept beside this file (proptest cannot place them for an integration test).
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/properties.proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn decrypting_a_sum_of_encryptions_gives_the_sum_of_counts(m1 in 0u64..1000, m2 in 0u64..1000, r1 in nonce(), r2 in nonce()) {
        let Election { keys, key, .. } = election();
        let sum = ElGamalCiphertext::encrypt(m1, &r1, key).add(&ElGamalCiphertext::encrypt(m2, &r2, key));
        let decrypted = sum.decrypt_known_product(&sum.partial_decrypt(&keys.secret_key));
        prop_assert_eq!(decrypted, Some(m1 + m2));
    }

    #[test]
    fn any_quorum_decrypts_the_tally((n, k, missing) in guardians_quorum_and_missing(), voters in voters(1..=4)) {
        let guardians = Guardians::generate(n, k);
        let manifest = manifest();
        let (key, commitment_hash) = joint_key(&guardians.public);
        let context = CiphertextElectionContext::new(n as u32, k as u32, key, commitment_hash, manifest.crypto_hash());
        let ballots = cast_ballots(&Encryptor::new(&manifest, &context), &manifest, &voters);
        let contests = tally_ciphertexts(&tally_of(&manifest, &ballots));
        let tally = guardians.decrypt(&missing, &contests, &manifest, &context.crypto_extended_base_hash);
        prop_assert_eq!(decrypted_counts(&tally), ground_truth(&manifest, &voters));
    }

    #[test]
    fn chunk_tallies_merge_to_the_whole_tally(voters in voters(BALLOTS), (cuts, order) in chunking()) {
        let Election { key, manifest, context, .. } = election();
        let encryptor = Encryptor::with_key(manifest, context, key.clone());
        let ballots = cast_ballots(&encryptor, manifest, &voters);
        let bounds: Vec<usize> = std::iter::once(0).chain(cuts.iter().copied()).chain(std::iter::once(BALLOTS)).collect();
        let chunks: Vec<CiphertextTally> = bounds.windows(2).map(|w| tally_of(manifest, &ballots[w[0]..w[1]])).collect();
        let mut merged = CiphertextTally::empty("tally", manifest);
        for &i in &order {
            merged.merge(&chunks[i]).unwrap();
        }
        prop_assert_eq!(merged, tally_of(manifest, &ballots));
    }

    #[test]
    fn a_tally_of_compact_inputs_is_the_tally_of_whole_ballots(voters in voters(1..=5), dropped in 0..CONTESTS) {
        let Election { key, manifest, context, .. } = election();
        let encryptor = Encryptor::with_key(manifest, context, key.clone());
        let mut ballots = cast_ballots(&encryptor, manifest, &voters);
        // A ballot whose style lacks a contest adds nothing to that contest.
        ballots[0].contests.remove(dropped);
        let layout = TallyLayout::new(manifest);
        let inputs: Vec<Vec<u8>> = ballots.iter().map(|b| layout.input_of(b).unwrap()).collect();
        prop_assert!(inputs.iter().all(|i| i.len() == layout.input_len()));
        let inputs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let mut compact = CiphertextTally::empty("tally", manifest);
        compact.append_inputs(&inputs).unwrap();
        prop_assert_eq!(&compact, &tally_of(manifest, &ballots));
        // A running product taking in one ballot at a time is the same tally.
        let running = inputs.iter().fold(None::<Vec<u8>>, |product, input| {
            let parts: Vec<&[u8]> = product.as_deref().into_iter().chain([*input]).collect();
            Some(layout.product(&parts).unwrap())
        });
        let mut of_product = CiphertextTally::empty("tally", manifest);
        of_product.append_inputs(&[&running.unwrap()]).unwrap();
        prop_assert_eq!(of_product, compact);
    }
}

#[test]
fn a_malformed_tally_input_adds_nothing_and_is_named() {
    let Election {
        key,
        manifest,
        context,
        ..
    } = election();
    let encryptor = Encryptor::with_key(manifest, context, key.clone());
    let ballots = cast_ballots(&encryptor, manifest, &[vec![Some(0); CONTESTS]]);
    let layout = TallyLayout::new(manifest);
    let good = layout.input_of(&ballots[0]).unwrap();
    let short = &good[..good.len() - 1];
    let mut above_p = good.clone();
    above_p[..512].fill(0xFF);
    let zero = vec![0u8; good.len()];
    let empty = CiphertextTally::empty("tally", manifest);
    for (bad, why) in [
        (short, "its length is not this tally's"),
        (&above_p[..], "a number is not in the group"),
        (&zero[..], "a number is not in the group"),
    ] {
        let mut tally = empty.clone();
        assert_eq!(
            tally.append_inputs(&[&good, bad]),
            Err(TallyError::BadInput(1, why))
        );
        assert_eq!(tally, empty, "a refused batch adds nothing");
    }
    let mut foreign = ballots[0].clone();
    foreign.contests[0].object_id = "no-such-contest".into();
    assert!(matches!(
        layout.input_of(&foreign),
        Err(TallyError::UnknownContest { .. })
    ));
}
