//! Offline generation of the eligible-voter hash list from the mailing list.
//!
//! The authority that mails one-time codes holds a CSV of `nas,code,law_id`
//! rows. Before the referendum opens, each row is turned into a
//! [`VoterHash`] and the hashes are written to shard files, which the
//! registry then loads; the CSV itself never reaches the online service.
//!
//! The national list is millions of rows, so the reader streams (constant
//! memory), reuses one line buffer, hashes from a pre-keyed HMAC state, and
//! writes through buffered writers. A malformed row does not abort the run: it
//! is counted and reported (the first [`MAX_BAD_ROWS_KEPT`] in detail) so the
//! authority can fix the source and re-run.
//!
//! Shards are files `hashes-IIIII-of-NNNNN.txt`, one lowercase hex hash per
//! line, with the shard picked from the hash's first four bytes. Splitting lets
//! loading and transfer be parallelised and resumed per file; reading checks
//! that the set of shards is complete and consistent.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::domain::voter_hash::{ElectionSecret, HexError, VoterHash, VoterHasher};

/// How many bad rows are described in a [`HashgenReport`]; all are counted.
pub const MAX_BAD_ROWS_KEPT: usize = 1000;
/// The largest shard count that fits the five-digit file names.
pub const MAX_SHARDS: u32 = 99_999;
const HEADER: [&str; 3] = ["nas", "code", "law_id"];
const PROGRESS_EVERY_LINES: u64 = 16_384;
const WRITE_BUFFER_BYTES: usize = 256 * 1024;
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Debug, thiserror::Error)]
pub enum HashgenError {
    #[error("shard count must be between 1 and {MAX_SHARDS}, got {0}")]
    ShardCount(u32),
    #[error("reading the voter list: {0}")]
    Read(#[source] io::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}:{line}: {source}", path.display())]
    BadShardLine {
        path: PathBuf,
        line: u64,
        #[source]
        source: HexError,
    },
    #[error("{}: {reason}", dir.display())]
    ShardSet { dir: PathBuf, reason: String },
}

/// One input row that produced no hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// 1-based physical line number in the input.
    pub line: u64,
    pub reason: String,
}

/// What a [`generate_hashes`] run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashgenReport {
    /// Data rows seen (header and blank lines excluded).
    pub rows: u64,
    /// Hashes written to shards. Equals `rows - bad_row_count`.
    pub written: u64,
    /// Rows rejected, all of them counted.
    pub bad_row_count: u64,
    /// The first [`MAX_BAD_ROWS_KEPT`] rejected rows, in input order.
    pub bad_rows: Vec<BadRow>,
}

impl HashgenReport {
    fn record_bad_row(&mut self, line: u64, reason: String) {
        self.bad_row_count += 1;
        if self.bad_rows.len() < MAX_BAD_ROWS_KEPT {
            self.bad_rows.push(BadRow { line, reason });
        }
    }
}

/// The file name of shard `index` in a set of `count`.
pub fn shard_file_name(index: u32, count: u32) -> String {
    format!("hashes-{index:05}-of-{count:05}.txt")
}

/// The shard a hash belongs to: its first four bytes, big-endian, modulo `count`.
pub fn shard_of(hash: &VoterHash, count: u32) -> u32 {
    let [a, b, c, d, ..] = *hash.as_bytes();
    u32::from_be_bytes([a, b, c, d]) % count
}

/// Reads `nas,code,law_id` rows from `input`, writes each row's voter hash to
/// `shard_count` shard files in `out_dir` (created if missing, existing shard
/// files of the same names overwritten), and reports what happened.
///
/// `on_progress` receives the cumulative number of input bytes consumed, every
/// few thousand lines and once at the end, so a caller can drive a progress bar
/// sized from the input file's length.
pub fn generate_hashes(
    mut input: impl BufRead,
    secret: &ElectionSecret,
    out_dir: &Path,
    shard_count: u32,
    on_progress: &dyn Fn(u64),
) -> Result<HashgenReport, HashgenError> {
    if !(1..=MAX_SHARDS).contains(&shard_count) {
        return Err(HashgenError::ShardCount(shard_count));
    }
    let mut run = Run {
        hasher: VoterHasher::new(secret),
        shards: ShardWriters::create(out_dir, shard_count)?,
        report: HashgenReport::default(),
    };
    let mut line = Vec::with_capacity(128);
    let (mut line_no, mut bytes_read) = (0_u64, 0_u64);
    loop {
        line.clear();
        let read = input
            .read_until(b'\n', &mut line)
            .map_err(HashgenError::Read)?;
        if read == 0 {
            break;
        }
        line_no += 1;
        bytes_read += read as u64;
        run.consume(&line, line_no)?;
        if line_no % PROGRESS_EVERY_LINES == 0 {
            on_progress(bytes_read);
        }
    }
    run.shards.finish()?;
    on_progress(bytes_read);
    Ok(run.report)
}

/// The state of one [`generate_hashes`] call.
struct Run {
    hasher: VoterHasher,
    shards: ShardWriters,
    report: HashgenReport,
}

impl Run {
    fn consume(&mut self, raw: &[u8], line_no: u64) -> Result<(), HashgenError> {
        let fields = match parse_line(raw, line_no) {
            Line::Skip => return Ok(()),
            Line::Bad(reason) => Err(reason),
            Line::Row(fields) => Ok(fields),
        };
        self.report.rows += 1;
        let hashed = fields.and_then(|[nas, code, law_id]| {
            self.hasher
                .hash(nas, code, law_id)
                .map_err(|err| err.to_string())
        });
        match hashed {
            Ok(hash) => {
                self.shards.write(&hash)?;
                self.report.written += 1;
            }
            Err(reason) => self.report.record_bad_row(line_no, reason),
        }
        Ok(())
    }
}

/// One input line, classified.
enum Line<'a> {
    /// Blank line, or the header on line 1.
    Skip,
    Bad(String),
    Row([&'a str; 3]),
}

fn parse_line(raw: &[u8], line_no: u64) -> Line<'_> {
    let raw = if line_no == 1 {
        raw.strip_prefix(UTF8_BOM).unwrap_or(raw)
    } else {
        raw
    };
    let Ok(text) = std::str::from_utf8(raw) else {
        return Line::Bad("line is not valid UTF-8".to_owned());
    };
    let text = text.trim();
    if text.is_empty() {
        return Line::Skip;
    }
    match split_fields(text) {
        Some(fields) if line_no == 1 && is_header(&fields) => Line::Skip,
        Some(fields) => Line::Row(fields),
        None => Line::Bad("expected 3 comma-separated fields: nas,code,law_id".to_owned()),
    }
}

fn split_fields(text: &str) -> Option<[&str; 3]> {
    let mut parts = text.split(',').map(str::trim);
    let fields = [parts.next()?, parts.next()?, parts.next()?];
    parts.next().is_none().then_some(fields)
}

fn is_header(fields: &[&str; 3]) -> bool {
    fields
        .iter()
        .zip(HEADER)
        .all(|(field, name)| field.eq_ignore_ascii_case(name))
}

/// One buffered writer per shard file.
struct ShardWriters {
    files: Vec<(PathBuf, BufWriter<File>)>,
}

impl ShardWriters {
    fn create(dir: &Path, count: u32) -> Result<Self, HashgenError> {
        fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
        let files = (0..count)
            .map(|index| {
                let path = dir.join(shard_file_name(index, count));
                let file = File::create(&path).map_err(|source| io_error(&path, source))?;
                Ok((path, BufWriter::with_capacity(WRITE_BUFFER_BYTES, file)))
            })
            .collect::<Result<_, HashgenError>>()?;
        Ok(ShardWriters { files })
    }

    fn write(&mut self, hash: &VoterHash) -> Result<(), HashgenError> {
        let count = u32::try_from(self.files.len()).expect("at most MAX_SHARDS files");
        let index = usize::try_from(shard_of(hash, count)).expect("u32 fits in usize");
        let (path, writer) = &mut self.files[index];
        let mut line = [b'\n'; 65];
        line[..64].copy_from_slice(&hash.to_hex_bytes());
        writer
            .write_all(&line)
            .map_err(|source| io_error(path, source))
    }

    /// Flushes and syncs every shard, so a completed run is durable.
    fn finish(self) -> Result<(), HashgenError> {
        for (path, writer) in self.files {
            let file = writer
                .into_inner()
                .map_err(|err| io_error(&path, err.into_error()))?;
            file.sync_all().map_err(|source| io_error(&path, source))?;
        }
        Ok(())
    }
}

fn io_error(path: &Path, source: io::Error) -> HashgenError {
    HashgenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Streams every hash from a complete shard set in `dir`, shard by shard.
///
/// Fails up front if `dir` holds no shards, shards from sets of different
/// sizes, or an incomplete set, so a half-copied directory is never loaded.
pub fn read_shards(dir: &Path) -> Result<ShardReader, HashgenError> {
    let paths = shard_paths(dir)?;
    Ok(ShardReader {
        pending: paths.into_iter(),
        current: None,
        line: String::with_capacity(72),
    })
}

fn shard_paths(dir: &Path) -> Result<Vec<PathBuf>, HashgenError> {
    let mut shards = Vec::new();
    for entry in fs::read_dir(dir).map_err(|source| io_error(dir, source))? {
        let entry = entry.map_err(|source| io_error(dir, source))?;
        if let Some(index_and_count) = entry.file_name().to_str().and_then(parse_shard_name) {
            shards.push((index_and_count, entry.path()));
        }
    }
    shards.sort();
    check_complete(dir, &shards)?;
    Ok(shards.into_iter().map(|(_, path)| path).collect())
}

fn parse_shard_name(name: &str) -> Option<(u32, u32)> {
    let (index, count) = name
        .strip_prefix("hashes-")?
        .strip_suffix(".txt")?
        .split_once("-of-")?;
    let parse = |digits: &str| {
        (digits.len() == 5 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    };
    Some((parse(index)?, parse(count)?))
}

fn check_complete(dir: &Path, shards: &[((u32, u32), PathBuf)]) -> Result<(), HashgenError> {
    let set_error = |reason: String| HashgenError::ShardSet {
        dir: dir.to_path_buf(),
        reason,
    };
    let Some(((_, count), _)) = shards.first() else {
        return Err(set_error("no hashes-*-of-*.txt shard files".to_owned()));
    };
    if shards.iter().any(|((_, other), _)| other != count) {
        return Err(set_error(
            "shard files from sets of different sizes".to_owned(),
        ));
    }
    let indices_complete = shards
        .iter()
        .enumerate()
        .all(|(expected, ((index, _), _))| usize::try_from(*index) == Ok(expected));
    if !indices_complete || usize::try_from(*count) != Ok(shards.len()) {
        return Err(set_error(format!(
            "incomplete shard set: found {} of {count}",
            shards.len()
        )));
    }
    Ok(())
}

/// Iterator over the hashes of a shard set; see [`read_shards`].
pub struct ShardReader {
    pending: std::vec::IntoIter<PathBuf>,
    current: Option<OpenShard>,
    line: String,
}

struct OpenShard {
    path: PathBuf,
    reader: BufReader<File>,
    line_no: u64,
}

impl ShardReader {
    /// Up to `max` next hashes; empty once every shard is exhausted.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<VoterHash>, HashgenError> {
        self.by_ref().take(max).collect()
    }

    fn open_next(&mut self) -> Option<Result<(), HashgenError>> {
        let path = self.pending.next()?;
        Some(match File::open(&path) {
            Ok(file) => {
                self.current = Some(OpenShard {
                    path,
                    reader: BufReader::new(file),
                    line_no: 0,
                });
                Ok(())
            }
            Err(source) => Err(io_error(&path, source)),
        })
    }

    /// The next hash of the open shard; `None` when it is exhausted.
    fn read_hash(&mut self) -> Option<Result<VoterHash, HashgenError>> {
        let shard = self.current.as_mut()?;
        loop {
            self.line.clear();
            match shard.reader.read_line(&mut self.line) {
                Ok(0) => return None,
                Ok(_) => shard.line_no += 1,
                Err(source) => return Some(Err(io_error(&shard.path, source))),
            }
            let text = self.line.trim();
            if !text.is_empty() {
                return Some(VoterHash::from_hex(text).map_err(|source| {
                    HashgenError::BadShardLine {
                        path: shard.path.clone(),
                        line: shard.line_no,
                        source,
                    }
                }));
            }
        }
    }
}

impl Iterator for ShardReader {
    type Item = Result<VoterHash, HashgenError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(result) = self.read_hash() {
                return Some(result);
            }
            self.current = None;
            if let Err(err) = self.open_next()? {
                return Some(Err(err));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashSet;

    use super::*;
    use crate::domain::voter_hash::voter_hash;

    fn secret() -> ElectionSecret {
        ElectionSecret::from_hex(&"42".repeat(32)).unwrap()
    }

    fn run(csv: &str, dir: &Path, shards: u32) -> HashgenReport {
        generate_hashes(csv.as_bytes(), &secret(), dir, shards, &|_| {}).unwrap()
    }

    fn all_hashes(dir: &Path) -> Vec<VoterHash> {
        read_shards(dir).unwrap().collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn writes_each_rows_hash_to_its_shard() {
        let dir = tempfile::tempdir().unwrap();
        let csv = "nas,code,law_id\n123456789,abcd2345,loi-1\n987654321,WXYZ9876,loi-2\n";
        let report = run(csv, dir.path(), 4);
        assert_eq!(
            (report.rows, report.written, report.bad_row_count),
            (2, 2, 0)
        );

        let expected = [
            voter_hash(&secret(), "123456789", "ABCD2345", "loi-1").unwrap(),
            voter_hash(&secret(), "987654321", "WXYZ9876", "loi-2").unwrap(),
        ];
        for hash in expected {
            let shard = shard_file_name(shard_of(&hash, 4), 4);
            let content = fs::read_to_string(dir.path().join(shard)).unwrap();
            assert!(content.lines().any(|line| line == hash.to_hex()));
        }
        let found: HashSet<_> = all_hashes(dir.path()).into_iter().collect();
        assert_eq!(found, HashSet::from(expected));
    }

    #[test]
    fn header_is_optional_and_whitespace_crlf_and_blank_lines_are_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let report = run(
            "\u{feff} 123456789 , abcd2345 ,loi\r\n\r\n\n",
            dir.path(),
            1,
        );
        assert_eq!((report.rows, report.written), (1, 1));
        let expected = voter_hash(&secret(), "123456789", "ABCD2345", "loi").unwrap();
        assert_eq!(all_hashes(dir.path()), vec![expected]);
    }

    #[test]
    fn bad_rows_are_counted_with_line_and_reason_and_do_not_stop_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let csv = "NAS,Code,Law_ID\n12345678,abcd2345,loi\n123456789,abcd2345\n\
                   123456789,abcd2345,loi,extra\n123456789,abcd2345,loi\nnas,code,law_id\n";
        let report = run(csv, dir.path(), 2);
        assert_eq!(
            (report.rows, report.written, report.bad_row_count),
            (5, 1, 4)
        );
        let lines: Vec<u64> = report.bad_rows.iter().map(|bad| bad.line).collect();
        assert_eq!(lines, [2, 3, 4, 6]);
        assert!(report.bad_rows[0].reason.contains("nas"));
        assert!(report.bad_rows[1]
            .reason
            .contains("3 comma-separated fields"));
        assert!(report.bad_rows[3].reason.contains("nas"));
    }

    #[test]
    fn invalid_utf8_is_a_bad_row() {
        let dir = tempfile::tempdir().unwrap();
        let input: &[u8] = b"123456789,ab\xffcd2345,loi\n123456789,abcd2345,loi\n";
        let report = generate_hashes(input, &secret(), dir.path(), 1, &|_| {}).unwrap();
        assert_eq!((report.written, report.bad_row_count), (1, 1));
        assert!(report.bad_rows[0].reason.contains("UTF-8"));
    }

    #[test]
    fn short_or_ambiguous_codes_are_refused_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let csv = "123456789,AB12,loi\n123456789,ABCDEFGO,loi\n123456789,ABCDEFGH,loi\n";
        let report = run(csv, dir.path(), 1);
        assert_eq!((report.written, report.bad_row_count), (1, 2));
        for bad in &report.bad_rows {
            assert!(bad.reason.contains("8 to 32"), "{}", bad.reason);
        }
    }

    #[test]
    fn only_the_first_bad_rows_are_kept_but_all_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let csv = "bad\n".repeat(MAX_BAD_ROWS_KEPT + 5);
        let report = run(&csv, dir.path(), 1);
        assert_eq!(report.bad_row_count, MAX_BAD_ROWS_KEPT as u64 + 5);
        assert_eq!(report.bad_rows.len(), MAX_BAD_ROWS_KEPT);
        assert_eq!(report.written, 0);
    }

    #[test]
    fn progress_reports_cumulative_bytes_ending_with_the_total() {
        let dir = tempfile::tempdir().unwrap();
        let csv = "123456789,abcd2345,loi\n".repeat(40_000);
        let seen = RefCell::new(Vec::new());
        let on_progress = |bytes| seen.borrow_mut().push(bytes);
        generate_hashes(csv.as_bytes(), &secret(), dir.path(), 1, &on_progress).unwrap();
        let seen = seen.into_inner();
        assert!(seen.len() >= 3, "{seen:?}");
        assert!(seen.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(seen.last(), Some(&(csv.len() as u64)));
    }

    #[test]
    fn shard_count_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        for count in [0, MAX_SHARDS + 1] {
            let result = generate_hashes(&b""[..], &secret(), dir.path(), count, &|_| {});
            assert!(matches!(result, Err(HashgenError::ShardCount(c)) if c == count));
        }
    }

    #[test]
    fn shards_partition_hashes_by_prefix() {
        let mut bytes = [0; 32];
        bytes[..5].copy_from_slice(&[0, 0, 1, 2, 0xff]);
        let hash = VoterHash::from_bytes(bytes);
        assert_eq!(shard_of(&hash, 1000), 258);
        assert_eq!(shard_of(&hash, 1), 0);
        assert_eq!(shard_file_name(3, 16), "hashes-00003-of-00016.txt");
    }

    #[test]
    fn many_rows_spread_over_all_shards_and_read_back_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let csv: String = (0..2_000)
            .map(|i| format!("{:09},K{i:07},loi\n", 100_000_000 + i))
            .collect();
        let report = run(&csv, dir.path(), 8);
        assert_eq!(report.written, 2_000);
        for index in 0..8 {
            let shard = fs::read_to_string(dir.path().join(shard_file_name(index, 8))).unwrap();
            assert!(shard.lines().count() > 150, "shard {index} is nearly empty");
        }
        let mut reader = read_shards(dir.path()).unwrap();
        let mut total = HashSet::new();
        loop {
            let batch = reader.next_batch(300).unwrap();
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= 300);
            total.extend(batch);
        }
        assert_eq!(total.len(), 2_000);
    }

    #[test]
    fn reading_rejects_missing_mixed_or_empty_shard_sets() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_shards(dir.path()).err().unwrap();
        assert!(missing.to_string().contains("no hashes"));

        run("123456789,abcd2345,loi\n", dir.path(), 3);
        fs::remove_file(dir.path().join(shard_file_name(1, 3))).unwrap();
        let incomplete = read_shards(dir.path()).err().unwrap();
        assert!(
            incomplete.to_string().contains("found 2 of 3"),
            "{incomplete}"
        );

        run("123456789,abcd2345,loi\n", dir.path(), 2);
        let mixed = read_shards(dir.path()).err().unwrap();
        assert!(mixed.to_string().contains("different sizes"), "{mixed}");
    }

    #[test]
    fn reading_reports_the_file_and_line_of_a_corrupt_hash() {
        let dir = tempfile::tempdir().unwrap();
        let good = "ab".repeat(32);
        fs::write(
            dir.path().join(shard_file_name(0, 1)),
            format!("{good}\nnot-a-hash\n"),
        )
        .unwrap();
        let results: Vec<_> = read_shards(dir.path()).unwrap().collect();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].as_ref().unwrap().to_hex(), good);
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("hashes-00000-of-00001.txt:2"), "{err}");
    }

    #[test]
    fn unrelated_files_in_the_shard_directory_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        run("123456789,abcd2345,loi\n", dir.path(), 1);
        fs::write(dir.path().join("README.txt"), "notes").unwrap();
        fs::write(dir.path().join("hashes-1-of-2.txt"), "junk").unwrap();
        assert_eq!(all_hashes(dir.path()).len(), 1);
    }
}
