//! Reading and writing an election record directory in the reference export layout.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use electionguard::ballot::CiphertextBallot;
use electionguard::decrypt::PlaintextTally;
use electionguard::json::{from_json, to_reference_json};
use electionguard::record::{layout, ElectionRecord};
use rayon::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    from_json(&text).with_context(|| format!("{} is not a valid record file", path.display()))
}

fn read_optional<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

/// Every `.json` file of a sub-directory, parsed, in file-name order.
fn read_all<T: DeserializeOwned>(dir: &Path) -> Result<Vec<T>> {
    let mut paths: Vec<_> = json_files(dir)?.collect::<Result<_>>()?;
    paths.sort();
    paths.iter().map(|p| read_json(p)).collect()
}

/// The `.json` files of a sub-directory (none if it is absent), as the directory lists them.
fn json_files(dir: &Path) -> Result<impl Iterator<Item = Result<PathBuf>>> {
    let entries = match dir.is_dir() {
        true => Some(fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?),
        false => None,
    };
    let listing = dir.display().to_string();
    Ok(entries.into_iter().flatten().filter_map(move |entry| {
        let path = entry
            .with_context(|| format!("cannot list {listing}"))
            .map(|e| e.path());
        match path {
            Ok(p) if p.extension().is_some_and(|x| x == "json") => Some(Ok(p)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    }))
}

/// A record's submitted ballots, read a batch at a time (files parsed on every core) in the
/// order the directory lists them, each with the decryption the record publishes for it.
/// What is held at once is one batch, the names of the decryption files, and no more.
pub struct RecordBallots {
    files: Box<dyn Iterator<Item = Result<PathBuf>>>,
    total: u64,
    spoiled_dir: PathBuf,
    /// Decryption files not yet paired with their ballot.
    decryptions: HashSet<String>,
}

/// One batch of submitted ballots, each with its published decryption if there is one.
pub type BallotBatch = (Vec<CiphertextBallot>, Vec<Option<PlaintextTally>>);

impl RecordBallots {
    pub fn open(dir: &Path) -> Result<RecordBallots> {
        let submitted = dir.join(layout::SUBMITTED_BALLOTS_DIR);
        let total = json_files(&submitted)?.count() as u64;
        let spoiled_dir = dir.join(layout::SPOILED_BALLOTS_DIR);
        let decryptions = json_files(&spoiled_dir)?
            .map(|p| {
                Ok(p?
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned())
            })
            .collect::<Result<_>>()?;
        Ok(RecordBallots {
            files: Box::new(json_files(&submitted)?),
            total,
            spoiled_dir,
            decryptions,
        })
    }

    /// How many submitted ballots the record holds.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The next `size` ballots, or `None` once every one was read.
    pub fn next_batch(&mut self, size: usize) -> Result<Option<BallotBatch>> {
        let paths: Vec<PathBuf> = self.files.by_ref().take(size).collect::<Result<_>>()?;
        if paths.is_empty() {
            return Ok(None);
        }
        let ballots: Vec<CiphertextBallot> = paths
            .par_iter()
            .map(|p| read_json(p))
            .collect::<Result<_>>()?;
        // A decryption is found by the layout's name for the ballot's id, only for an id that
        // makes a plain name of the layout, and only among the files the directory listed.
        let names: Vec<Option<String>> = ballots
            .iter()
            .map(|b| {
                let name = layout::spoiled_ballot(&b.object_id);
                check_record_path(&name).ok()?;
                let (_, file) = name.split_once('/')?;
                self.decryptions.take(file)
            })
            .collect();
        let decryptions = names
            .par_iter()
            .map(|name| {
                name.as_ref()
                    .map(|n| read_json(&self.spoiled_dir.join(n)))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        Ok(Some((ballots, decryptions)))
    }

    /// The decryptions no submitted ballot's id named, read once every ballot was read.
    pub fn unpaired_decryptions(self) -> Result<Vec<PlaintextTally>> {
        let mut names: Vec<String> = self.decryptions.into_iter().collect();
        names.sort();
        names
            .iter()
            .map(|n| read_json(&self.spoiled_dir.join(n)))
            .collect()
    }
}

/// Reads a published record; the required files must be there.
pub fn read_record(dir: &Path) -> Result<ElectionRecord> {
    Ok(ElectionRecord {
        submitted_ballots: read_all(&dir.join(layout::SUBMITTED_BALLOTS_DIR))?,
        spoiled_ballots: read_all(&dir.join(layout::SPOILED_BALLOTS_DIR))?,
        ..read_record_head(dir)?
    })
}

/// A record's small files: everything but its submitted ballots and the decryptions of
/// its challenged ballots, which [`RecordBallots`] reads batch by batch.
pub fn read_record_head(dir: &Path) -> Result<ElectionRecord> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    Ok(ElectionRecord {
        constants: read_json(&dir.join(layout::CONSTANTS))?,
        manifest: read_json(&dir.join(layout::MANIFEST))?,
        context: read_json(&dir.join(layout::CONTEXT))?,
        devices: read_all(&dir.join(layout::DEVICES_DIR))?,
        guardians: read_all(&dir.join(layout::GUARDIANS_DIR))?,
        submitted_ballots: Vec::new(),
        encrypted_tally: read_optional(&dir.join(layout::ENCRYPTED_TALLY))?,
        coefficients: read_optional(&dir.join(layout::COEFFICIENTS))?,
        tally: read_optional(&dir.join(layout::TALLY))?,
        spoiled_ballots: Vec::new(),
        ballot_box: read_optional(&dir.join(layout::BALLOT_BOX))?,
    })
}

/// Checks that a record file name is one of the layout's, as a plain relative path: a
/// known top-level file, or `DIR/PREFIX<id>.json` in a known directory with an id of
/// `a-z 0-9 _ -`. Anything else (`..`, an absolute path, a NUL, a deeper path) could
/// write outside the record's directory or over another of its files.
pub fn check_record_path(name: &str) -> Result<(), String> {
    const TOP: [&str; 7] = [
        layout::CONSTANTS,
        layout::MANIFEST,
        layout::CONTEXT,
        layout::ENCRYPTED_TALLY,
        layout::COEFFICIENTS,
        layout::TALLY,
        layout::BALLOT_BOX,
    ];
    const NAMED: [(&str, &str); 4] = [
        (layout::DEVICES_DIR, "device_"),
        (layout::GUARDIANS_DIR, "guardian_"),
        (layout::SUBMITTED_BALLOTS_DIR, "submitted_ballot_"),
        (layout::SPOILED_BALLOTS_DIR, "spoiled_ballot_"),
    ];
    if TOP.contains(&name) {
        return Ok(());
    }
    let named = name.split_once('/').and_then(|(dir, file)| {
        let (_, prefix) = NAMED.iter().find(|(d, _)| *d == dir)?;
        file.strip_prefix(prefix)?.strip_suffix(".json")
    });
    match named {
        Some(id) if crate::domain::check_id("id", id).is_ok() => Ok(()),
        _ => Err(format!("{name:?} is not a file of the record's layout")),
    }
}

fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<()> {
    if let Err(e) = check_record_path(name) {
        bail!("refusing to write {e}");
    }
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    fs::write(&path, to_reference_json(value))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes the record in the layout electionguard-python exports and `amarvote verify` reads.
pub fn write_record(dir: &Path, record: &ElectionRecord) -> Result<()> {
    write_json(dir, layout::CONSTANTS, &record.constants)?;
    write_json(dir, layout::MANIFEST, &record.manifest)?;
    write_json(dir, layout::CONTEXT, &record.context)?;
    for device in &record.devices {
        write_json(dir, &layout::device(device.device_id), device)?;
    }
    for guardian in &record.guardians {
        write_json(dir, &layout::guardian(&guardian.guardian_id), guardian)?;
    }
    for ballot in &record.submitted_ballots {
        write_json(dir, &layout::submitted_ballot(&ballot.object_id), ballot)?;
    }
    if let Some(tally) = &record.encrypted_tally {
        write_json(dir, layout::ENCRYPTED_TALLY, tally)?;
    }
    if let Some(coefficients) = &record.coefficients {
        write_json(dir, layout::COEFFICIENTS, coefficients)?;
    }
    if let Some(tally) = &record.tally {
        write_json(dir, layout::TALLY, tally)?;
    }
    for ballot in &record.spoiled_ballots {
        write_json(dir, &layout::spoiled_ballot(&ballot.object_id), ballot)?;
    }
    if let Some(ballot_box) = &record.ballot_box {
        write_json(dir, layout::BALLOT_BOX, ballot_box)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_layouts_own_names_are_record_files() {
        for good in [
            "manifest.json",
            "ballot_box.json",
            "encryption_devices/device_1007.json",
            "guardians/guardian_guardian-1.json",
            "submitted_ballots/submitted_ballot_ballot-3f_a.json",
            "spoiled_ballots/spoiled_ballot_b1.json",
        ] {
            assert_eq!(check_record_path(good), Ok(()), "{good}");
        }
        for bad in [
            "submitted_ballots/submitted_ballot_/../../manifest.json",
            "submitted_ballots/submitted_ballot_/../../../../api/x.json",
            "/etc/passwd",
            "../manifest.json",
            "submitted_ballots/submitted_ballot_a\0b.json",
            "submitted_ballots/submitted_ballot_.json",
            "submitted_ballots/x/submitted_ballot_a.json",
            "guardians/submitted_ballot_a.json",
            "notes.txt",
            "",
        ] {
            assert!(check_record_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_record_with_a_ballot_id_that_leaves_the_directory_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let refused = write_json(
            dir.path(),
            "submitted_ballots/submitted_ballot_/../../../x.json",
            &1u8,
        );
        assert!(refused
            .unwrap_err()
            .to_string()
            .contains("refusing to write"));
        assert!(!dir.path().join("../x.json").exists());
    }
}
