//! Criterion benchmarks of the core operations on the reference fixture's election
//! (`../shared/fixtures/electionguard-python-1.4`: a 3-candidate contest and a yes/no
//! referendum). Run with `cargo bench -p electionguard`.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use electionguard::ballot::{CiphertextBallot, PlaintextBallot};
use electionguard::batch::ballot_proofs_hold;
use electionguard::context::CiphertextElectionContext;
use electionguard::elgamal::EncryptionKey;
use electionguard::encrypt::Encryptor;
use electionguard::group::ElementModQ;
use electionguard::json::from_json;
use electionguard::manifest::Manifest;
use electionguard::tally::CiphertextTally;

fn fixture() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/electionguard-python-1.4");
    assert!(
        dir.is_dir(),
        "the reference fixture is missing at {}",
        dir.display()
    );
    dir
}

fn read<T: serde::de::DeserializeOwned>(path: PathBuf) -> T {
    from_json(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn crypto(c: &mut Criterion) {
    let dir = fixture();
    let manifest: Manifest = read(dir.join("manifest.json"));
    let context: CiphertextElectionContext = read(dir.join("context.json"));
    let plaintext: PlaintextBallot =
        read(dir.join("private/plaintext_ballots/plaintext_ballot_ballot-00002.json"));
    let cast: CiphertextBallot =
        read(dir.join("submitted_ballots/submitted_ballot_ballot-00002.json"));
    let encryptor = Encryptor::new(&manifest, &context);
    let key = EncryptionKey::new(&context.elgamal_public_key);
    let seed = ElementModQ::random();

    c.bench_function(
        "encrypt ballot (2 contests, 5 selections + 2 placeholders)",
        |b| {
            b.iter(|| {
                encryptor
                    .encrypt(&plaintext, &seed, &ElementModQ::random(), 0)
                    .unwrap()
            })
        },
    );
    c.bench_function("verify ballot proofs, batched (16 ballots)", |b| {
        let batch: Vec<&CiphertextBallot> = std::iter::repeat_n(&cast, 16).collect();
        b.iter(|| assert!(ballot_proofs_hold(&batch, &key)))
    });
    c.bench_function("verify ballot proofs, one at a time", |b| {
        b.iter(|| {
            for contest in &cast.contests {
                for s in &contest.ballot_selections {
                    s.proof
                        .as_ref()
                        .unwrap()
                        .verify(&s.ciphertext, &key, &context.crypto_extended_base_hash)
                        .unwrap();
                }
            }
        })
    });
    c.bench_function("tally 1,000 ballots", |b| {
        let ballots: Vec<&CiphertextBallot> = std::iter::repeat_n(&cast, 1000).collect();
        b.iter(|| {
            let mut tally = CiphertextTally::empty("bench", &manifest);
            tally.append_all(&ballots).unwrap();
            tally
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = crypto
}
criterion_main!(benches);
