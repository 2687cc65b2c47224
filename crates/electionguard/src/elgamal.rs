//! Exponential ElGamal over the ElectionGuard group, and the reference's hashed ElGamal
//! (used for contest extended data and for the guardians' encrypted key backups).

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::dlog::discrete_log;
use crate::fixed_base::FixedBase;
use crate::group::{g_pow_p, g_table, g_table_wide, ElementModP, ElementModQ};
use crate::hash;

/// A secret exponent (guardian key, polynomial coefficient or coordinate). Its value never
/// appears in `Debug` output and is overwritten when dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretKey(ElementModQ);

impl SecretKey {
    pub fn new(value: ElementModQ) -> SecretKey {
        SecretKey(value)
    }

    /// The secret value itself: every use is a place to review.
    pub fn expose(&self) -> &ElementModQ {
        &self.0
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.clear();
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// An ElGamal key pair, as the reference writes it (`secret_key`, `public_key`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElGamalKeyPair {
    pub secret_key: SecretKey,
    pub public_key: ElementModP,
}

impl ElGamalKeyPair {
    pub fn from_secret(secret: ElementModQ) -> ElGamalKeyPair {
        let public_key = g_pow_p(&secret);
        ElGamalKeyPair {
            secret_key: SecretKey(secret),
            public_key,
        }
    }
}

/// A public key with the fixed-base tables an encryption to it uses: K's own (when the key
/// is used many times) and g's.
#[derive(Clone)]
pub struct EncryptionKey {
    key: ElementModP,
    table: Option<Arc<FixedBase>>,
    generator: &'static FixedBase,
}

impl EncryptionKey {
    /// For a key used many times (the joint key): builds an 8-bit table (~50 ms, 4.2 MiB).
    pub fn new(key: &ElementModP) -> EncryptionKey {
        EncryptionKey {
            key: key.clone(),
            table: Some(Arc::new(FixedBase::new(key))),
            generator: g_table(),
        }
    }

    /// For a process that encrypts many ballots: 13-bit tables for K and g (~1 s and
    /// ~81 MB each), 19 multiplications per exponentiation against 31 for [`Self::new`].
    pub fn for_encryption(key: &ElementModP) -> EncryptionKey {
        EncryptionKey {
            key: key.clone(),
            table: Some(Arc::new(FixedBase::wide(key))),
            generator: g_table_wide(),
        }
    }

    /// For a key used once or twice (a guardian receiving a backup): no table, and each
    /// exponentiation is constant-time, since its exponent is a secret nonce.
    pub fn single_use(key: &ElementModP) -> EncryptionKey {
        EncryptionKey {
            key: key.clone(),
            table: None,
            generator: g_table(),
        }
    }

    pub fn key(&self) -> &ElementModP {
        &self.key
    }

    /// K^e mod p.
    pub fn pow(&self, e: &ElementModQ) -> ElementModP {
        match &self.table {
            Some(table) => table.pow(e),
            None => self.key.pow_secret(e),
        }
    }

    /// g^e mod p.
    pub fn g_pow(&self, e: &ElementModQ) -> ElementModP {
        self.generator.pow(e)
    }

    /// K^e · g^f mod p.
    pub fn pow_times_g_pow(&self, e: &ElementModQ, f: &ElementModQ) -> ElementModP {
        match &self.table {
            Some(table) => table.pow_times(e, self.generator, f),
            None => self.key.pow_secret(e).mul(&self.generator.pow(f)),
        }
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey({:?})", self.key)
    }
}

/// (α, β) = (g^r, g^m · K^r).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ElGamalCiphertext {
    pub pad: ElementModP,
    pub data: ElementModP,
}

impl ElGamalCiphertext {
    /// Encrypts `message` (a small count) under `key` with `nonce`, using fixed bases only.
    pub fn encrypt(message: u64, nonce: &ElementModQ, key: &EncryptionKey) -> ElGamalCiphertext {
        let pad = key.g_pow(nonce);
        let data = match message {
            0 => key.pow(nonce),
            m => key.pow_times_g_pow(
                nonce,
                &ElementModQ::from_u64(m).expect("a count is below q"),
            ),
        };
        ElGamalCiphertext { pad, data }
    }

    /// The encryption of zero with nonce zero: the identity of homomorphic addition.
    pub fn identity() -> ElGamalCiphertext {
        ElGamalCiphertext {
            pad: ElementModP::one(),
            data: ElementModP::one(),
        }
    }

    /// Homomorphic addition: componentwise product.
    pub fn add(&self, other: &ElGamalCiphertext) -> ElGamalCiphertext {
        ElGamalCiphertext {
            pad: self.pad.mul(&other.pad),
            data: self.data.mul(&other.data),
        }
    }

    pub fn crypto_hash(&self) -> ElementModQ {
        hash!(self.pad, self.data)
    }

    /// M = α^s: one guardian's share of a decryption.
    pub fn partial_decrypt(&self, secret: &SecretKey) -> ElementModP {
        self.pad.pow_secret(secret.expose())
    }

    /// The plaintext count, given the product of all decryption shares (or K^r).
    pub fn decrypt_known_product(&self, product: &ElementModP) -> Option<u64> {
        discrete_log(&self.data.mul(&product.inv()?))
    }

    /// Decrypts with the encryption nonce: how a voter checks a challenged ballot.
    pub fn decrypt_known_nonce(&self, key: &ElementModP, nonce: &ElementModQ) -> Option<u64> {
        self.decrypt_known_product(&key.pow_secret(nonce))
    }
}

/// Hashed ElGamal as electionguard-python 1.4 does it: HMAC-SHA256 keystream and MAC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashedElGamalCiphertext {
    pub pad: ElementModP,
    /// Ciphertext bytes as hex (leading zero bytes dropped, as the reference writes them).
    pub data: String,
    pub mac: String,
}

/// Why a hashed ElGamal ciphertext would not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashedElGamalError {
    #[error("ciphertext data is not hex")]
    NotHex,
    #[error("MAC verification failed")]
    BadMac,
}

const BLOCK_SIZE: usize = 32;
/// The reference pads hashed ElGamal messages to 512 bytes.
pub(crate) const PADDED_SIZE: usize = 512;

type HmacSha256 = Hmac<Sha256>;

/// HMAC(key, start‖message‖length) with 4-byte little-endian counters, as the reference's `get_hmac`.
fn hmac_with_counters(key: &[u8], message: &[u8], bit_length: u32, start: u32) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&start.to_le_bytes());
    mac.update(message);
    mac.update(&bit_length.to_le_bytes());
    mac.finalize().into_bytes().into()
}

fn hmac_plain(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Hex of the integer the bytes spell: the reference's `bytes_to_hex`.
fn bytes_to_hex(bytes: &[u8]) -> String {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    ElementModP::hex_of_bytes(&bytes[first..])
}

fn xor_keystream(blocks: &[u8], session_key: &[u8], seed: &[u8], bit_length: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(blocks.len());
    for (i, block) in blocks.chunks(BLOCK_SIZE).enumerate() {
        let key = hmac_with_counters(session_key, seed, bit_length, i as u32 + 1);
        out.extend(block.iter().zip(key.iter()).map(|(a, b)| a ^ b));
    }
    out
}

impl HashedElGamalCiphertext {
    pub fn encrypt(
        message: &[u8],
        nonce: &ElementModQ,
        key: &EncryptionKey,
        seed: &ElementModQ,
    ) -> Self {
        let pad = key.g_pow(nonce);
        let session_key = hash!(pad, key.pow(nonce)).to_bytes_be();
        let mut padded = message.to_vec();
        padded.resize(message.len().div_ceil(BLOCK_SIZE) * BLOCK_SIZE, 0);
        let bit_length = (padded.len() * 8) as u32;
        let seed = seed.to_bytes_be();
        let data = xor_keystream(&padded, &session_key, &seed, bit_length);
        let mac_key = hmac_with_counters(&session_key, &seed, bit_length, 0);
        let mut to_mac = pad.to_bytes_be();
        to_mac.extend_from_slice(&data);
        let mac = hmac_plain(&mac_key, &to_mac);
        HashedElGamalCiphertext {
            pad,
            data: bytes_to_hex(&data),
            mac: bytes_to_hex(&mac),
        }
    }

    /// Opens the ciphertext with the recipient's secret key; the MAC is checked first.
    pub fn decrypt(
        &self,
        secret: &SecretKey,
        seed: &ElementModQ,
    ) -> Result<Vec<u8>, HashedElGamalError> {
        let session_key = hash!(self.pad, self.pad.pow_secret(secret.expose())).to_bytes_be();
        let data = padded_bytes(&self.data)?;
        let bit_length = (data.len() * 8) as u32;
        let seed = seed.to_bytes_be();
        let mac_key = hmac_with_counters(&session_key, &seed, bit_length, 0);
        let mut to_mac = self.pad.to_bytes_be();
        to_mac.extend_from_slice(&data);
        if bytes_to_hex(&hmac_plain(&mac_key, &to_mac)) != self.mac {
            return Err(HashedElGamalError::BadMac);
        }
        Ok(xor_keystream(&data, &session_key, &seed, bit_length))
    }
}

/// The reference's `to_padded_bytes`: hex to bytes, left-padded with zeros to 512 bytes.
fn padded_bytes(hex: &str) -> Result<Vec<u8>, HashedElGamalError> {
    let hex = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex.to_string()
    };
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| HashedElGamalError::NotHex))
        .collect::<Result<_, _>>()?;
    if bytes.len() >= PADDED_SIZE {
        return Ok(bytes);
    }
    let mut out = vec![0u8; PADDED_SIZE - bytes.len()];
    out.extend(bytes);
    Ok(out)
}

/// The reference's `add_padding`: 2-byte big-endian pad length, message, zero padding.
pub(crate) fn pad_message(message: &[u8]) -> Option<Vec<u8>> {
    let room = PADDED_SIZE - 2;
    if message.len() > room {
        return None;
    }
    let padding = room - message.len();
    let mut out = (padding as u16).to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out.resize(PADDED_SIZE, 0);
    Some(out)
}

/// The reference's `remove_padding`.
pub(crate) fn unpad_message(padded: &[u8]) -> Option<&[u8]> {
    let padding = u16::from_be_bytes([*padded.first()?, *padded.get(1)?]) as usize;
    padded.get(2..PADDED_SIZE.checked_sub(padding)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_decrypts_and_adds() {
        let keys = ElGamalKeyPair::from_secret(ElementModQ::random_at_least_two());
        let key = EncryptionKey::new(&keys.public_key);
        let a = ElGamalCiphertext::encrypt(3, &ElementModQ::random(), &key);
        let b = ElGamalCiphertext::encrypt(4, &ElementModQ::random(), &key);
        let sum = a.add(&b);
        assert_eq!(
            sum.decrypt_known_product(&sum.partial_decrypt(&keys.secret_key)),
            Some(7)
        );
    }

    #[test]
    fn hashed_elgamal_round_trips_and_rejects_tampering() {
        let keys = ElGamalKeyPair::from_secret(ElementModQ::random_at_least_two());
        let key = EncryptionKey::new(&keys.public_key);
        let seed = ElementModQ::random();
        let message = pad_message(br#"{"coordinate": "0A"}"#).unwrap();
        let ct = HashedElGamalCiphertext::encrypt(&message, &ElementModQ::random(), &key, &seed);
        let opened = ct.decrypt(&keys.secret_key, &seed).unwrap();
        assert_eq!(unpad_message(&opened).unwrap(), br#"{"coordinate": "0A"}"#);
        let mut bad = ct.clone();
        bad.mac
            .replace_range(0..1, if bad.mac.starts_with('0') { "1" } else { "0" });
        assert_eq!(
            bad.decrypt(&keys.secret_key, &seed),
            Err(HashedElGamalError::BadMac)
        );
    }
}
