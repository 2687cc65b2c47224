//! The election record as one tar archive, built a file at a time with the `tar` crate
//! (GNU long names for any path over 100 bytes), so an export of any size never sits in
//! memory and no name length can end the stream half-way.

use std::io;

/// Turns record files into archive bytes, one entry at a time.
pub struct ArchiveWriter {
    builder: ::tar::Builder<Vec<u8>>,
    mtime_seconds: u64,
}

impl ArchiveWriter {
    pub fn new(mtime_seconds: u64) -> ArchiveWriter {
        ArchiveWriter {
            builder: ::tar::Builder::new(Vec::new()),
            mtime_seconds,
        }
    }

    /// The bytes of one regular file's entry (its header or headers, content, padding).
    pub fn entry(&mut self, name: &str, body: &[u8]) -> io::Result<Vec<u8>> {
        let mut header = ::tar::Header::new_gnu();
        header.set_entry_type(::tar::EntryType::Regular);
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(self.mtime_seconds);
        self.builder.append_data(&mut header, name, body)?;
        Ok(std::mem::take(self.builder.get_mut()))
    }

    /// The two zero blocks that end the archive.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        self.builder.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_streamed_one_by_one_read_back_as_one_archive_long_names_included() {
        let long = format!("submitted_ballots/submitted_ballot_{}.json", "x".repeat(90));
        let files = [
            ("constants.json", "{}".to_string()),
            (long.as_str(), "a".repeat(700)),
        ];
        let mut writer = ArchiveWriter::new(1_700_000_000);
        let mut archive = Vec::new();
        for (name, body) in &files {
            archive.extend(writer.entry(name, body.as_bytes()).unwrap());
        }
        archive.extend(writer.finish().unwrap());
        let mut read = ::tar::Archive::new(archive.as_slice());
        let entries: Vec<(String, String)> = read
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let mut body = String::new();
                io::Read::read_to_string(&mut e, &mut body).unwrap();
                (name, body)
            })
            .collect();
        let expected: Vec<(String, String)> = files
            .iter()
            .map(|(n, b)| (n.to_string(), b.clone()))
            .collect();
        assert_eq!(entries, expected);
    }
}
