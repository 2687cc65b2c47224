//! The body a voter's device POSTs to /elections/{id}/ballots: parsed as the API does
//! (`from_json::<CiphertextBallot>`), then taken through what the service does next.
//! Any panic (including an arithmetic overflow: CI builds with debug assertions) is a finding.

#![no_main]

use std::sync::OnceLock;

use electionguard::ballot::{
    BallotBoxState, CiphertextBallot, CiphertextBallotContest, CiphertextBallotSelection,
};
use electionguard::context::CiphertextElectionContext;
use electionguard::elgamal::EncryptionKey;
use electionguard::json::{from_json, to_reference_json};
use electionguard::manifest::Manifest;
use electionguard::verify::verify_submission;
use libfuzzer_sys::fuzz_target;

/// The election the ballots are submitted to: electionguard-python 1.4's fixture.
struct Election {
    manifest: Manifest,
    context: CiphertextElectionContext,
    key: EncryptionKey,
}

fn election() -> &'static Election {
    static ELECTION: OnceLock<Election> = OnceLock::new();
    ELECTION.get_or_init(|| {
        let manifest: Manifest = from_json(include_str!("../fixtures/manifest.json")).unwrap();
        let context: CiphertextElectionContext =
            from_json(include_str!("../fixtures/context.json")).unwrap();
        let key = EncryptionKey::new(&context.elgamal_public_key);
        Election {
            manifest,
            context,
            key,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // The API rejects a body that is not UTF-8 before parsing it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(ballot) = from_json::<CiphertextBallot>(text) else {
        return;
    };

    // The reference JSON of a parsed ballot parses back to the same ballot, and is a fixed point.
    let json = to_reference_json(&ballot);
    let again: CiphertextBallot = from_json(&json).expect("a re-serialized ballot parses");
    assert_eq!(again, ballot, "JSON round trip changed the ballot");
    assert_eq!(
        to_reference_json(&again),
        json,
        "reference JSON is not a fixed point"
    );

    // The service stores the submitted ballot as CBOR and reads it back in the workers.
    let submitted = ballot.submit(BallotBoxState::Unknown);
    let mut cbor = Vec::new();
    ciborium::into_writer(&submitted, &mut cbor).expect("CBOR to memory");
    let stored: CiphertextBallot = ciborium::from_reader(cbor.as_slice()).expect("CBOR parses");
    assert_eq!(stored, submitted, "CBOR round trip changed the ballot");
    let _ = (stored.is_cast(), stored.is_spoiled());

    // Hashes and the ballot code, as the ballot box recomputes them.
    for contest in &ballot.contests {
        for s in &contest.ballot_selections {
            let _ = CiphertextBallotSelection::compute_crypto_hash(
                &s.object_id,
                &s.description_hash,
                &s.ciphertext,
            );
        }
        let _ = CiphertextBallotContest::compute_crypto_hash(
            &contest.object_id,
            &contest.description_hash,
            &contest.ballot_selections,
        );
        let _ = CiphertextBallotContest::accumulate(&contest.ballot_selections);
    }
    let hash = CiphertextBallot::compute_crypto_hash(
        &ballot.object_id,
        &ballot.manifest_hash,
        &ballot.contests,
    );
    let _ = CiphertextBallot::compute_code(&ballot.code_seed, ballot.timestamp, &hash);

    // The full check the service runs before storing a ballot (crates/amarvote/src/service/ballots.rs).
    let e = election();
    let _ = verify_submission(&ballot, &e.manifest, &e.context, &e.key);
});
