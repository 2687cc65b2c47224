//! Reading and writing an election record directory in the reference export layout.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use electionguard::json::{from_json, to_reference_json};
use electionguard::record::{layout, ElectionRecord};
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
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut paths: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths.iter().map(|p| read_json(p)).collect()
}

/// Reads a published record; the required files must be there.
pub fn read_record(dir: &Path) -> Result<ElectionRecord> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    Ok(ElectionRecord {
        constants: read_json(&dir.join(layout::CONSTANTS))?,
        manifest: read_json(&dir.join(layout::MANIFEST))?,
        context: read_json(&dir.join(layout::CONTEXT))?,
        devices: read_all(&dir.join(layout::DEVICES_DIR))?,
        guardians: read_all(&dir.join(layout::GUARDIANS_DIR))?,
        submitted_ballots: read_all(&dir.join(layout::SUBMITTED_BALLOTS_DIR))?,
        encrypted_tally: read_optional(&dir.join(layout::ENCRYPTED_TALLY))?,
        coefficients: read_optional(&dir.join(layout::COEFFICIENTS))?,
        tally: read_optional(&dir.join(layout::TALLY))?,
        spoiled_ballots: read_all(&dir.join(layout::SPOILED_BALLOTS_DIR))?,
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
