//! An election's documents: the manifest and the ciphertext election context, as the
//! service and the verifier read them (`from_json::<Manifest>`,
//! `from_json::<CiphertextElectionContext>`). Each input is tried as both. After a
//! successful parse, the target does what their readers do next: hashes, validation,
//! the per-style and per-contest lookups the verifier makes, and a reference-JSON round trip.
//! Any panic (including an arithmetic overflow: CI builds with debug assertions) is a finding.

#![no_main]

use electionguard::context::{
    crypto_base_hash, crypto_extended_base_hash, CiphertextElectionContext,
};
use electionguard::json::{from_json, to_reference_json};
use electionguard::manifest::{iso_utc, Manifest};
use libfuzzer_sys::fuzz_target;

fn manifest(text: &str) {
    let Ok(manifest) = from_json::<Manifest>(text) else {
        return;
    };
    let hash = manifest.crypto_hash();
    let _ = manifest.validate();
    let _ = (iso_utc(&manifest.start_date), iso_utc(&manifest.end_date));
    // What verify_record / verify_submission do with a manifest (crates/electionguard/src/verify.rs):
    // the contests of each style, and each contest's hash and placeholder selections.
    for style in &manifest.ballot_styles {
        let _ = style.crypto_hash();
        for contest in manifest.contests_for_style(&style.object_id) {
            let _ = manifest.contest(&contest.object_id);
            let _ = contest.crypto_hash();
            for s in contest.placeholder_selections() {
                let _ = s.crypto_hash();
            }
        }
    }

    let json = to_reference_json(&manifest);
    let again: Manifest = from_json(&json).expect("a re-serialized manifest parses");
    assert_eq!(again, manifest, "JSON round trip changed the manifest");
    assert_eq!(
        again.crypto_hash(),
        hash,
        "JSON round trip changed the manifest hash"
    );
    assert_eq!(
        to_reference_json(&again),
        json,
        "reference JSON is not a fixed point"
    );
}

fn context(text: &str) {
    let Ok(context) = from_json::<CiphertextElectionContext>(text) else {
        return;
    };
    let base = crypto_base_hash(
        context.number_of_guardians,
        context.quorum,
        &context.manifest_hash,
    );
    let _ = crypto_extended_base_hash(&base, &context.commitment_hash);

    let json = to_reference_json(&context);
    let again: CiphertextElectionContext =
        from_json(&json).expect("a re-serialized context parses");
    assert_eq!(again, context, "JSON round trip changed the context");
    assert_eq!(
        to_reference_json(&again),
        json,
        "reference JSON is not a fixed point"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    manifest(text);
    context(text);
});
