//! Many vote messages in one broker message.
//!
//! A persistent message costs the broker the same work whether it holds one
//! vote or five hundred, and with a message per vote the broker was the
//! pipeline's bottleneck. So the RabbitMQ adapter packs each publish into
//! envelopes of up to [`MAX_PARTS`] parts and unpacks them on consume.
//!
//! The framing is a big-endian `u32` part count, then each part as a
//! big-endian `u32` length and its bytes. Nothing may follow the last part.

/// Most parts in one envelope: a validation batch, so one envelope is
/// decided in one registry round trip.
pub const MAX_PARTS: usize = 500;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a vote envelope: {0}")]
pub struct EnvelopeError(&'static str);

/// Frames `parts` (at most [`MAX_PARTS`]) as one envelope.
pub fn pack(parts: &[Vec<u8>]) -> Vec<u8> {
    debug_assert!(parts.len() <= MAX_PARTS);
    let size = 4 + parts.iter().map(|p| 4 + p.len()).sum::<usize>();
    let mut envelope = Vec::with_capacity(size);
    envelope.extend_from_slice(&frame_len(parts.len()));
    for part in parts {
        envelope.extend_from_slice(&frame_len(part.len()));
        envelope.extend_from_slice(part);
    }
    envelope
}

fn frame_len(n: usize) -> [u8; 4] {
    u32::try_from(n)
        .expect("vote messages are far smaller than 4 GiB")
        .to_be_bytes()
}

/// The byte range of each part of `envelope`.
pub fn spans(envelope: &[u8]) -> Result<Vec<std::ops::Range<usize>>, EnvelopeError> {
    let mut at = 0;
    let count = read_len(envelope, &mut at)?;
    if count > MAX_PARTS {
        return Err(EnvelopeError("too many parts"));
    }
    let mut spans = Vec::with_capacity(count);
    for _ in 0..count {
        let len = read_len(envelope, &mut at)?;
        let end = at
            .checked_add(len)
            .filter(|&end| end <= envelope.len())
            .ok_or(EnvelopeError("a part runs past the end"))?;
        spans.push(at..end);
        at = end;
    }
    if at != envelope.len() {
        return Err(EnvelopeError("bytes after the last part"));
    }
    Ok(spans)
}

fn read_len(envelope: &[u8], at: &mut usize) -> Result<usize, EnvelopeError> {
    let bytes = envelope
        .get(*at..*at + 4)
        .ok_or(EnvelopeError("truncated length"))?;
    *at += 4;
    let len = u32::from_be_bytes(bytes.try_into().expect("four bytes"));
    Ok(len as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpack(envelope: &[u8]) -> Result<Vec<Vec<u8>>, EnvelopeError> {
        Ok(spans(envelope)?
            .into_iter()
            .map(|s| envelope[s].to_vec())
            .collect())
    }

    #[test]
    fn parts_come_back_whole_and_in_order() {
        let parts = vec![b"first".to_vec(), Vec::new(), vec![0xff; 300]];
        assert_eq!(unpack(&pack(&parts)).unwrap(), parts);
        assert_eq!(unpack(&pack(&[])).unwrap(), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn damaged_envelopes_are_refused() {
        let envelope = pack(&[b"vote".to_vec(), b"another".to_vec()]);
        for cut in 0..envelope.len() {
            assert!(spans(&envelope[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = envelope.clone();
        longer.push(0);
        assert_eq!(
            spans(&longer),
            Err(EnvelopeError("bytes after the last part"))
        );
        let mut huge_count = envelope;
        huge_count[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(spans(&huge_count), Err(EnvelopeError("too many parts")));
        assert!(spans(b"{\"request_id\":\"x\"}").is_err());
    }
}
