//! Just enough of the POSIX ustar format to stream the election record as one archive:
//! regular files, each a 512-byte header, the content, and zero padding to 512 bytes.

const BLOCK: usize = 512;

/// The header of a regular file; `name` must fit the 100-byte name field.
pub fn header(name: &str, size: usize, mtime_seconds: u64) -> Result<[u8; BLOCK], String> {
    if name.len() > 99 || name.is_empty() {
        return Err(format!("{name}: a record file name must be 1 to 99 bytes"));
    }
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size as u64);
    octal(&mut h[136..148], mtime_seconds);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field read as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    octal(&mut h[148..155], u64::from(sum));
    h[155] = b' ';
    Ok(h)
}

/// Zero bytes that round a file's content up to a whole block.
pub fn padding(size: usize) -> Vec<u8> {
    vec![0; (BLOCK - size % BLOCK) % BLOCK]
}

/// Two zero blocks end an archive.
pub fn end() -> Vec<u8> {
    vec![0; 2 * BLOCK]
}

/// Writes `value` as zero-padded octal digits, NUL-terminated, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let last = field.len() - 1;
    let digits = format!("{value:0last$o}");
    field[..last].copy_from_slice(digits.as_bytes());
    field[last] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_holds_name_size_and_a_checksum_tar_accepts() {
        let h = header("guardians/guardian_guardian-1.json", 1234, 0).unwrap();
        assert_eq!(&h[..34], b"guardians/guardian_guardian-1.json");
        assert_eq!(&h[124..136], b"00000002322\0");
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut blank = h;
        blank[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, blank.iter().map(|&b| u32::from(b)).sum::<u32>());
        assert!(header(&"x".repeat(100), 1, 0).is_err());
    }

    #[test]
    fn content_is_padded_to_whole_blocks() {
        assert_eq!(padding(512).len(), 0);
        assert_eq!(padding(1).len(), 511);
        assert_eq!(end().len(), 1024);
    }
}
