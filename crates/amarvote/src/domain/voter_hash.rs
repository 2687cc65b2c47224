//! Voter hashes: the only form in which a voter's identity reaches the registry.
//!
//! A referendum voter proves eligibility with their NAS and a one-time code
//! mailed to them for one law. Storing or logging those values would turn the
//! registry into a list of who voted, so every component past the API edge
//! works with `HMAC-SHA256(election secret, nas ‖ code ‖ law_id)` instead. The
//! keyed hash means that someone who steals the registry cannot enumerate the
//! (small) NAS space to re-identify voters without also stealing the secret.
//!
//! The HMAC input is a canonical encoding: a version tag followed by each field
//! as a 4-byte big-endian length and its bytes. Length prefixes make the
//! encoding unambiguous (`"12" + "3"` and `"1" + "23"` hash differently), and
//! the tag lets a future format coexist with this one.
//!
//! Inputs are validated strictly here so that every caller (the mailing-list
//! hash generator and the voting API) agrees on what a well-formed ballot
//! request is; errors name the offending field but never echo its value.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Domain-separation tag absorbed before the length-prefixed fields.
const DOMAIN_TAG: &[u8] = b"amarvote-voter-v1";
/// Domain tag of [`LockKey`]s: wrong codes are counted per NAS and law.
const LOCK_TAG: &[u8] = b"amarvote-code-lock-v1";
/// Domain tag of request ids' authentication tags.
const REQUEST_TAG: &[u8] = b"amarvote-request-id-v1";
const NAS_LEN: usize = 9;
/// Mailed codes are at least 8 characters of a 32-letter alphabet (40 bits): with a
/// NAS locked after a few wrong codes, guessing is hopeless.
pub const CODE_MIN_LEN: usize = 8;
/// The mailing alphabet (Crockford's base 32): digits and capitals without I, L, O
/// and U, which a reader confuses with 1, 1, 0 and V.
pub const CODE_ALPHABET: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_MAX_LEN: usize = 32;
const LAW_ID_MAX_LEN: usize = 64;

/// A field of a ballot request that failed validation.
///
/// The message names the field and the rule, never the rejected value, so the
/// error can be logged or returned to a client without leaking a NAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("nas must be exactly 9 ASCII digits")]
    Nas,
    #[error(
        "code must be 8 to 32 characters of the mailing alphabet (digits and letters \
         without I, L, O, U)"
    )]
    Code,
    #[error("law_id must be 1 to 64 characters from [A-Za-z0-9_-]")]
    LawId,
    #[error("vote must be `oui` or `non`")]
    Vote,
}

impl InputError {
    /// The name of the rejected field, as it appears in requests and CSV headers.
    pub fn field(self) -> &'static str {
        match self {
            InputError::Nas => "nas",
            InputError::Code => "code",
            InputError::LawId => "law_id",
            InputError::Vote => "vote",
        }
    }
}

/// A hex string that does not encode exactly 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 hexadecimal characters")]
pub struct HexError;

/// A secret file that could not be read, created or parsed.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("election secret file: {0}")]
    Io(#[from] std::io::Error),
    #[error("election secret file: {0}")]
    Hex(#[from] HexError),
}

/// A referendum answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    Oui,
    Non,
}

impl Choice {
    pub fn as_str(self) -> &'static str {
        match self {
            Choice::Oui => "oui",
            Choice::Non => "non",
        }
    }
}

impl FromStr for Choice {
    type Err = InputError;

    fn from_str(vote: &str) -> Result<Self, Self::Err> {
        match vote {
            "oui" => Ok(Choice::Oui),
            "non" => Ok(Choice::Non),
            _ => Err(InputError::Vote),
        }
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The per-election HMAC key. Wiped from memory on drop; never printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct ElectionSecret([u8; 32]);

impl ElectionSecret {
    /// Draws a fresh secret from OpenSSL's CSPRNG.
    pub fn generate() -> Result<Self, openssl::error::ErrorStack> {
        let mut secret = ElectionSecret([0; 32]);
        openssl::rand::rand_bytes(&mut secret.0)?;
        Ok(secret)
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(hex: &str) -> Result<Self, HexError> {
        let mut secret = ElectionSecret([0; 32]);
        decode_hex_into(hex, &mut secret.0)?;
        Ok(secret)
    }

    /// Reads a secret file: 64 hex characters, surrounding whitespace ignored.
    pub fn read_file(path: &std::path::Path) -> Result<Self, SecretFileError> {
        let text = Zeroizing::new(std::fs::read_to_string(path)?);
        Ok(Self::from_hex(text.trim())?)
    }

    /// Reads the secret file at `path`, first creating it (mode 0600) with a
    /// fresh secret if it does not exist.
    pub fn load_or_create(path: &std::path::Path) -> Result<Self, SecretFileError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if !path.exists() {
            let secret = Self::generate().map_err(|err| std::io::Error::other(err.to_string()))?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            file.write_all(secret.to_hex().as_bytes())?;
            file.sync_all()?;
        }
        Self::read_file(path)
    }

    /// Lowercase hex, in a buffer that is wiped when dropped.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex_string(&self.0))
    }
}

impl fmt::Debug for ElectionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ElectionSecret(<redacted>)")
    }
}

/// `HMAC-SHA256(secret, canonical(nas, code, law_id))`: one voter's right to
/// answer one law.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VoterHash([u8; 32]);

impl VoterHash {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        VoterHash(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(hex: &str) -> Result<Self, HexError> {
        let mut bytes = [0; 32];
        decode_hex_into(hex, &mut bytes)?;
        Ok(VoterHash(bytes))
    }

    /// The canonical form: 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex_string(&self.0)
    }

    /// The canonical form as ASCII bytes, without allocating.
    pub(crate) fn to_hex_bytes(self) -> [u8; 64] {
        encode_hex(&self.0)
    }
}

impl fmt::Display for VoterHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for VoterHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VoterHash({self})")
    }
}

impl FromStr for VoterHash {
    type Err = HexError;

    fn from_str(hex: &str) -> Result<Self, Self::Err> {
        VoterHash::from_hex(hex)
    }
}

impl Serialize for VoterHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for VoterHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(deserializer)?;
        VoterHash::from_hex(&hex).map_err(serde::de::Error::custom)
    }
}

/// `HMAC-SHA256(secret, canonical(nas, law_id))` under its own domain tag: whoever
/// tries codes for one NAS and law is counted under this key, whatever the code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LockKey(pub VoterHash);

impl LockKey {
    pub fn to_hex(&self) -> String {
        self.0.to_hex()
    }
}

impl fmt::Display for LockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for LockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockKey({self})")
    }
}

/// A one-time code after validation, uppercased, stored inline (no allocation).
#[derive(Clone, Copy)]
pub struct NormalizedCode {
    bytes: [u8; CODE_MAX_LEN],
    len: usize,
}

impl NormalizedCode {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Checks that `nas` is exactly 9 ASCII digits.
pub fn validate_nas(nas: &str) -> Result<&str, InputError> {
    let valid = nas.len() == NAS_LEN && nas.bytes().all(|b| b.is_ascii_digit());
    valid.then_some(nas).ok_or(InputError::Nas)
}

/// Checks that `code` is 8–32 characters of [`CODE_ALPHABET`] and uppercases it, so
/// a code typed in lowercase still matches the one printed on the letter.
pub fn normalize_code(code: &str) -> Result<NormalizedCode, InputError> {
    if !(CODE_MIN_LEN..=CODE_MAX_LEN).contains(&code.len()) {
        return Err(InputError::Code);
    }
    let mut normalized = NormalizedCode {
        bytes: [0; CODE_MAX_LEN],
        len: code.len(),
    };
    normalized.bytes[..code.len()].copy_from_slice(code.as_bytes());
    normalized.bytes.make_ascii_uppercase();
    let in_alphabet = normalized
        .as_bytes()
        .iter()
        .all(|b| CODE_ALPHABET.as_bytes().contains(b));
    in_alphabet.then_some(normalized).ok_or(InputError::Code)
}

/// Checks that `law_id` is 1–64 characters from `[A-Za-z0-9_-]`.
pub fn validate_law_id(law_id: &str) -> Result<&str, InputError> {
    let valid = (1..=LAW_ID_MAX_LEN).contains(&law_id.len())
        && law_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    valid.then_some(law_id).ok_or(InputError::LawId)
}

/// Computes voter hashes under one secret; built once, used for millions of rows.
///
/// Keying HMAC and absorbing the domain tag is done once in [`VoterHasher::new`];
/// each hash then starts from a copy of that state.
#[derive(Clone)]
pub struct VoterHasher {
    keyed: Hmac<Sha256>,
    lock: Hmac<Sha256>,
    request: Hmac<Sha256>,
}

impl VoterHasher {
    pub fn new(secret: &ElectionSecret) -> Self {
        let tagged = |tag: &[u8]| {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC accepts keys of any length");
            mac.update(tag);
            mac
        };
        VoterHasher {
            keyed: tagged(DOMAIN_TAG),
            lock: tagged(LOCK_TAG),
            request: tagged(REQUEST_TAG),
        }
    }

    /// The key under which wrong codes for this NAS and law are counted.
    pub fn lock_key(&self, nas: &str, law_id: &str) -> Result<LockKey, InputError> {
        let nas = validate_nas(nas)?;
        let law_id = validate_law_id(law_id)?;
        let mut mac = self.lock.clone();
        for field in [nas.as_bytes(), law_id.as_bytes()] {
            let len = u32::try_from(field.len()).expect("validated fields are at most 64 bytes");
            mac.update(&len.to_be_bytes());
            mac.update(field);
        }
        Ok(LockKey(VoterHash(mac.finalize().into_bytes().into())))
    }

    /// The 8-byte authentication tag of a request id's random part, so the API can
    /// tell an id it issued from one it never did without storing either.
    pub fn request_tag(&self, random: &str) -> [u8; 8] {
        let mut mac = self.request.clone();
        mac.update(random.as_bytes());
        let full: [u8; 32] = mac.finalize().into_bytes().into();
        let mut tag = [0; 8];
        tag.copy_from_slice(&full[..8]);
        tag
    }

    /// Validates the three fields and hashes them.
    pub fn hash(&self, nas: &str, code: &str, law_id: &str) -> Result<VoterHash, InputError> {
        let nas = validate_nas(nas)?;
        let code = normalize_code(code)?;
        let law_id = validate_law_id(law_id)?;
        Ok(self.hash_fields([nas.as_bytes(), code.as_bytes(), law_id.as_bytes()]))
    }

    fn hash_fields(&self, fields: [&[u8]; 3]) -> VoterHash {
        let mut mac = self.keyed.clone();
        for field in fields {
            let len = u32::try_from(field.len()).expect("validated fields are at most 64 bytes");
            mac.update(&len.to_be_bytes());
            mac.update(field);
        }
        VoterHash(mac.finalize().into_bytes().into())
    }
}

/// One-shot [`VoterHasher::hash`]; prefer a reused `VoterHasher` in loops.
pub fn voter_hash(
    secret: &ElectionSecret,
    nas: &str,
    code: &str,
    law_id: &str,
) -> Result<VoterHash, InputError> {
    VoterHasher::new(secret).hash(nas, code, law_id)
}

fn encode_hex(bytes: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0; 64];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    hex
}

/// Allocates exactly once, so no stray copy of a secret is left behind by a
/// growing buffer; the stack scratch is wiped.
fn hex_string(bytes: &[u8; 32]) -> String {
    let hex = Zeroizing::new(encode_hex(bytes));
    let mut string = String::with_capacity(hex.len());
    string.extend(hex.iter().map(|&digit| char::from(digit)));
    string
}

fn decode_hex_into(hex: &str, out: &mut [u8; 32]) -> Result<(), HexError> {
    if hex.len() != 64 {
        return Err(HexError);
    }
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Ok(())
}

fn hex_digit(c: u8) -> Result<u8, HexError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(HexError),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> ElectionSecret {
        ElectionSecret([byte; 32])
    }

    #[test]
    fn hash_is_hmac_sha256_over_the_canonical_encoding() {
        let mut expected = Hmac::<Sha256>::new_from_slice(&[7; 32]).unwrap();
        expected.update(b"amarvote-voter-v1");
        expected.update(&[0, 0, 0, 9]);
        expected.update(b"123456789");
        expected.update(&[0, 0, 0, 8]);
        expected.update(b"AB12CD34");
        expected.update(&[0, 0, 0, 5]);
        expected.update(b"loi-1");
        let expected: [u8; 32] = expected.finalize().into_bytes().into();

        let hash = voter_hash(&secret(7), "123456789", "ab12cd34", "loi-1").unwrap();
        assert_eq!(hash.as_bytes(), &expected);
    }

    #[test]
    fn code_case_does_not_change_the_hash() {
        let lower = voter_hash(&secret(1), "123456789", "abcd1234", "law_1").unwrap();
        let upper = voter_hash(&secret(1), "123456789", "ABCD1234", "law_1").unwrap();
        assert_eq!(lower, upper);
    }

    #[test]
    fn every_input_changes_the_hash() {
        let base = voter_hash(&secret(1), "123456789", "ABCD2345", "law").unwrap();
        let variants = [
            voter_hash(&secret(2), "123456789", "ABCD2345", "law").unwrap(),
            voter_hash(&secret(1), "123456780", "ABCD2345", "law").unwrap(),
            voter_hash(&secret(1), "123456789", "ABCE2345", "law").unwrap(),
            voter_hash(&secret(1), "123456789", "ABCD2345", "law2").unwrap(),
        ];
        for variant in variants {
            assert_ne!(base, variant);
        }
    }

    #[test]
    fn length_prefixes_keep_field_boundaries_distinct() {
        let hasher = VoterHasher::new(&secret(1));
        let a = hasher.hash_fields([b"123456789", b"ABCD1", b"law"]);
        let b = hasher.hash_fields([b"123456789", b"ABCD", b"1law"]);
        assert_ne!(a, b);
    }

    #[test]
    fn nas_must_be_nine_ascii_digits() {
        assert_eq!(validate_nas("046454286"), Ok("046454286"));
        for bad in [
            "",
            "12345678",
            "1234567890",
            "12345678a",
            "123 45678",
            "١٢٣٤٥٦٧٨٩",
        ] {
            assert_eq!(validate_nas(bad), Err(InputError::Nas), "{bad:?}");
        }
    }

    #[test]
    fn code_must_be_8_to_32_of_the_mailing_alphabet_and_is_uppercased() {
        assert_eq!(normalize_code("aB3d7hjk").unwrap().as_bytes(), b"AB3D7HJK");
        let longest = "z".repeat(32);
        assert_eq!(
            normalize_code(&longest).unwrap().as_bytes(),
            "Z".repeat(32).as_bytes()
        );
        let ambiguous = ["ABCDEFGI", "ABCDEFGL", "ABCDEFGO", "abcdefgu"];
        for bad in [
            "abc",
            "AB3D7HJ",
            "",
            &"a".repeat(33),
            "ab-cd123",
            "abcé1234",
            "ab cd123",
        ]
        .into_iter()
        .chain(ambiguous)
        {
            assert!(
                matches!(normalize_code(bad), Err(InputError::Code)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn law_id_must_be_1_to_64_of_the_allowed_characters() {
        assert_eq!(validate_law_id("Loi_2025-03"), Ok("Loi_2025-03"));
        assert!(validate_law_id(&"x".repeat(64)).is_ok());
        for bad in ["", &"x".repeat(65), "loi 1", "loi/1", "loi.1"] {
            assert_eq!(validate_law_id(bad), Err(InputError::LawId), "{bad:?}");
        }
    }

    #[test]
    fn invalid_fields_are_reported_by_name_without_their_value() {
        let err = voter_hash(&secret(1), "123456789", "ABCD2345", "bad law").unwrap_err();
        assert_eq!(err.field(), "law_id");
        let err = voter_hash(&secret(1), "98765432x", "ABCD2345", "law").unwrap_err();
        assert_eq!(err.field(), "nas");
        assert!(!err.to_string().contains("98765432x"));
        assert_eq!(InputError::Code.field(), "code");
        assert_eq!("maybe".parse::<Choice>().unwrap_err().field(), "vote");
    }

    #[test]
    fn choice_parses_and_serializes_lowercase() {
        assert_eq!("oui".parse::<Choice>(), Ok(Choice::Oui));
        assert_eq!("non".parse::<Choice>(), Ok(Choice::Non));
        assert_eq!("OUI".parse::<Choice>(), Err(InputError::Vote));
        assert_eq!(serde_json::to_string(&Choice::Non).unwrap(), "\"non\"");
        assert_eq!(
            serde_json::from_str::<Choice>("\"oui\"").unwrap(),
            Choice::Oui
        );
        assert!(serde_json::from_str::<Choice>("\"yes\"").is_err());
        assert_eq!(Choice::Oui.to_string(), "oui");
    }

    #[test]
    fn voter_hash_hex_round_trips_in_lowercase() {
        let hash = VoterHash::from_bytes([0xab; 32]);
        let hex = hash.to_hex();
        assert_eq!(hex, "ab".repeat(32));
        assert_eq!(hash.to_string(), hex);
        assert_eq!(VoterHash::from_hex(&hex), Ok(hash));
        assert_eq!(VoterHash::from_hex(&hex.to_uppercase()), Ok(hash));
        assert_eq!(hex.parse::<VoterHash>(), Ok(hash));
    }

    #[test]
    fn voter_hash_rejects_malformed_hex() {
        assert_eq!(VoterHash::from_hex(&"a".repeat(63)), Err(HexError));
        assert_eq!(VoterHash::from_hex(&"a".repeat(66)), Err(HexError));
        assert_eq!(VoterHash::from_hex(&"g".repeat(64)), Err(HexError));
        assert_eq!(VoterHash::from_hex(&"é".repeat(32)), Err(HexError));
    }

    #[test]
    fn voter_hash_serializes_as_a_hex_string() {
        let hash = VoterHash::from_bytes([0x01; 32]);
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(json, format!("\"{}\"", "01".repeat(32)));
        assert_eq!(serde_json::from_str::<VoterHash>(&json).unwrap(), hash);
        assert!(serde_json::from_str::<VoterHash>("\"01\"").is_err());
    }

    #[test]
    fn secret_round_trips_through_hex_and_is_redacted_in_debug() {
        let original = ElectionSecret::generate().unwrap();
        let hex = original.to_hex();
        assert_eq!(hex.len(), 64);
        let parsed = ElectionSecret::from_hex(&hex).unwrap();
        assert_eq!(parsed.0, original.0);
        assert_eq!(format!("{parsed:?}"), "ElectionSecret(<redacted>)");
        assert!(ElectionSecret::from_hex("00").is_err());
    }

    #[test]
    fn generated_secrets_differ() {
        let a = ElectionSecret::generate().unwrap();
        let b = ElectionSecret::generate().unwrap();
        assert_ne!(a.0, b.0);
    }
}
