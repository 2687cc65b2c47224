//! Compact binary storage of ElectionGuard objects: CBOR, with group elements as raw
//! big-endian bytes (the elements serialize as bytes in binary formats), so a stored
//! ballot is a fraction of its reference JSON. The reference JSON is produced on export.

use serde::de::DeserializeOwned;
use serde::Serialize;

pub fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("writing to memory does not fail");
    out
}

pub fn from_cbor<T: DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    ciborium::from_reader(bytes).map_err(|e| anyhow::anyhow!("stored object does not decode: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use electionguard::group::{ElementModP, ElementModQ};

    #[test]
    fn elements_round_trip_as_bytes() {
        let p = ElementModP::generator();
        let q = ElementModQ::random();
        let bytes = to_cbor(&(p.clone(), q.clone()));
        assert!(
            bytes.len() < 512 + 32 + 16,
            "binary, not hex: {} bytes",
            bytes.len()
        );
        assert_eq!(
            from_cbor::<(ElementModP, ElementModQ)>(&bytes).unwrap(),
            (p, q)
        );
    }

    #[test]
    fn out_of_range_element_is_rejected() {
        let too_big = to_cbor(&serde_bytes_like(vec![0xFF; 64]));
        assert!(from_cbor::<ElementModQ>(&too_big).is_err());
    }

    fn serde_bytes_like(bytes: Vec<u8>) -> ciborium::Value {
        ciborium::Value::Bytes(bytes)
    }
}
