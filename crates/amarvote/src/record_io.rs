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
    })
}

fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<()> {
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
    Ok(())
}
