//! The ElectionGuard group: integers mod p (4096-bit) and exponents mod q = 2^256 − 189.
//!
//! [`ElementModP`] and [`ElementModQ`] cannot hold out-of-range values: every constructor
//! checks the bound, and deserialization rejects non-hex text and values ≥ p (≥ q).
//! Integers are written as the reference library writes them: uppercase big-endian hex of
//! minimal even length (`"00"` for zero).

use std::fmt;
use std::sync::OnceLock;

use openssl::bn::{BigNum, BigNumRef};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bignum::{jacobi, with_ctx, Montgomery};
use crate::fixed_base::FixedBase;

/// p, q, r and g of ElectionGuard 1.0, exactly as `constants.json` gives them.
pub mod constants {
    pub const P_HEX: &str = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF93C467E37DB0C7A4D1BE3F810152CB56A1CECC3AF65CC0190C03DF34709AFFBD8E4B59FA03A9F0EED0649CCB621057D11056AE9132135A08E43B4673D74BAFEA58DEB878CC86D733DBE7BF38154B36CF8A96D1567899AAAE0C09D4C8B6B7B86FD2A1EA1DE62FF8643EC7C271827977225E6AC2F0BD61C746961542A3CE3BEA5DB54FE70E63E6D09F8FC28658E80567A47CFDE60EE741E5D85A7BD46931CED8220365594964B839896FCAABCCC9B31959C083F22AD3EE591C32FAB2C7448F2A057DB2DB49EE52E0182741E53865F004CC8E704B7C5C40BF304C4D8C4F13EDF6047C555302D2238D8CE11DF2424F1B66C2C5D238D0744DB679AF2890487031F9C0AEA1C4BB6FE9554EE528FDF1B05E5B256223B2F09215F3719F9C7CCC69DDF172D0D6234217FCC0037F18B93EF5389130B7A661E5C26E54214068BBCAFEA32A67818BD3075AD1F5C7E9CC3D1737FB28171BAF84DBB6612B7881C1A48E439CD03A92BF52225A2B38E6542E9F722BCE15A381B5753EA842763381CCAE83512B30511B32E5E8D80362149AD030AABA5F3A5798BB22AA7EC1B6D0F17903F4E22D840734AA85973F79A93FFB82A75C47C03D43D2F9CA02D03199BACEDDD4533A52566AFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF";
    pub const Q_HEX: &str = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF43";
}

struct Group {
    p: Montgomery,
    q: Montgomery,
    r: BigNum,
    g: BigNum,
}

fn group() -> &'static Group {
    static GROUP: OnceLock<Group> = OnceLock::new();
    GROUP.get_or_init(|| {
        let p = BigNum::from_hex_str(constants::P_HEX).unwrap();
        let q = BigNum::from_hex_str(constants::Q_HEX).unwrap();
        let mut p_minus_one = p.to_owned().unwrap();
        p_minus_one.sub_word(1).unwrap();
        let mut r = BigNum::new().unwrap();
        with_ctx(|ctx| r.checked_div(&p_minus_one, &q, ctx).unwrap());
        let two = BigNum::from_u32(2).unwrap();
        let p_mont = Montgomery::new(&p);
        let g = p_mont.pow(&two, &r);
        Group {
            p: p_mont,
            q: Montgomery::new(&q),
            r,
            g,
        }
    })
}

pub(crate) fn p_mont() -> &'static Montgomery {
    &group().p
}

/// The fixed-base table for the generator g, built on first use.
pub(crate) fn g_table() -> &'static FixedBase {
    static TABLE: OnceLock<FixedBase> = OnceLock::new();
    TABLE.get_or_init(|| FixedBase::new(&ElementModP::generator()))
}

/// The wide (13-bit) table for g, built only in processes that encrypt many ballots.
pub(crate) fn g_table_wide() -> &'static FixedBase {
    static TABLE: OnceLock<FixedBase> = OnceLock::new();
    TABLE.get_or_init(|| FixedBase::wide(&ElementModP::generator()))
}

struct BytesVisitor;

impl<'de> serde::de::Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("big-endian bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
}

/// A value that failed a group check while being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("not a hexadecimal integer: {0:?}")]
    NotHex(String),
    #[error("value is not below p")]
    NotBelowP,
    #[error("value is not below q")]
    NotBelowQ,
}

macro_rules! element {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        pub struct $name(BigNum);

        impl Clone for $name {
            fn clone(&self) -> Self {
                $name(self.0.to_owned().expect("BN_dup"))
            }
        }
        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0 == other.0
            }
        }
        impl Eq for $name {}
        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.0.to_vec().hash(state)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let hex = self.to_hex();
                if hex.len() > 16 {
                    write!(f, "{}({}…)", stringify!($name), &hex[..16])
                } else {
                    write!(f, "{}({})", stringify!($name), hex)
                }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        /// Hex text in human-readable formats (the reference JSON); big-endian bytes in
        /// binary ones, so a stored ballot takes half the space and no hex parsing.
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    s.serialize_bytes(&self.to_bytes_be())
                }
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let text = std::borrow::Cow::<str>::deserialize(d)?;
                    $name::from_hex(&text).map_err(serde::de::Error::custom)
                } else {
                    d.deserialize_bytes(BytesVisitor)
                        .and_then(|b| $name::from_bytes_be(&b).map_err(serde::de::Error::custom))
                }
            }
        }
        impl $name {
            /// Reads hex the way the reference library does (an odd-length string may carry one leading `0`).
            pub fn from_hex(text: &str) -> Result<Self, GroupError> {
                Self::from_bignum(parse_hex(text)?)
            }

            /// Uppercase big-endian hex of minimal even length, as the reference writes it.
            pub fn to_hex(&self) -> String {
                to_hex(&self.0)
            }

            /// Big-endian bytes of minimal length (empty for zero), as the reference's `to_hex_bytes`.
            pub fn to_bytes_be(&self) -> Vec<u8> {
                let bytes = self.0.to_vec();
                if bytes.is_empty() {
                    vec![0]
                } else {
                    bytes
                }
            }

            pub fn from_u64(value: u64) -> Result<Self, GroupError> {
                Self::from_bignum(BigNum::from_slice(&value.to_be_bytes()).unwrap())
            }

            pub fn from_bytes_be(bytes: &[u8]) -> Result<Self, GroupError> {
                Self::from_bignum(BigNum::from_slice(bytes).unwrap())
            }

            pub fn is_zero(&self) -> bool {
                self.0.num_bits() == 0
            }

            pub(crate) fn bignum(&self) -> &BigNumRef {
                &self.0
            }
        }
    };
}

element!(ElementModP, "An integer in [0, p).");
element!(ElementModQ, "An integer in [0, q).");

/// a⁻¹ mod m for a prime m; `None` for zero.
fn mod_inverse(a: &BigNumRef, m: &BigNumRef) -> Option<BigNum> {
    if a.num_bits() == 0 {
        return None;
    }
    with_ctx(|ctx| {
        let mut r = BigNum::new().unwrap();
        r.mod_inverse(a, m, ctx).ok().map(|_| r)
    })
}

fn parse_hex(text: &str) -> Result<BigNum, GroupError> {
    let digits = if text.len() % 2 == 1 && text.starts_with('0') {
        &text[1..]
    } else {
        text
    };
    if digits.is_empty() || digits.len() % 2 == 1 || !digits.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(GroupError::NotHex(text.chars().take(80).collect()));
    }
    BigNum::from_hex_str(digits).map_err(|_| GroupError::NotHex(text.chars().take(80).collect()))
}

pub(crate) fn to_hex(n: &BigNumRef) -> String {
    hex_of_bytes(&n.to_vec())
}

/// Uppercase hex of big-endian bytes without leading zero bytes; `"00"` for none.
fn hex_of_bytes(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    if bytes.is_empty() {
        return "00".to_string();
    }
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

impl ElementModP {
    /// Hex as the reference writes integers, for byte strings already stripped of leading zeros.
    pub(crate) fn hex_of_bytes(bytes: &[u8]) -> String {
        hex_of_bytes(bytes)
    }

    pub(crate) fn from_bignum(n: BigNum) -> Result<Self, GroupError> {
        if n.is_negative() || n >= *group().p.modulus() {
            return Err(GroupError::NotBelowP);
        }
        Ok(ElementModP(n))
    }

    /// Wraps a value already reduced mod p.
    pub(crate) fn from_reduced(n: BigNum) -> Self {
        debug_assert!(n < *group().p.modulus());
        ElementModP(n)
    }

    pub fn one() -> Self {
        ElementModP(BigNum::from_u32(1).unwrap())
    }

    pub fn generator() -> Self {
        ElementModP(group().g.to_owned().unwrap())
    }

    /// The large prime p itself (only for hashing, as the reference does).
    pub fn p_hex() -> String {
        to_hex(group().p.modulus())
    }

    pub fn g_hex() -> String {
        to_hex(&group().g)
    }

    pub fn cofactor_hex() -> String {
        to_hex(&group().r)
    }

    /// self · other mod p.
    pub fn mul(&self, other: &ElementModP) -> ElementModP {
        let m = &group().p;
        let mut a = BigNum::new().unwrap();
        let mut t = BigNum::new().unwrap();
        m.to_mont(&mut a, &self.0);
        m.mul(&mut t, &a, &other.0); // a·R · b · R⁻¹ = a·b
        ElementModP(t)
    }

    /// self^e mod p, variable time: public exponents only.
    pub fn pow(&self, e: &ElementModQ) -> ElementModP {
        ElementModP(group().p.pow(&self.0, &e.0))
    }

    /// self^e mod p in constant time: for secret exponents (guardian keys, nonces).
    pub fn pow_secret(&self, e: &ElementModQ) -> ElementModP {
        ElementModP(group().p.pow_secret(&self.0, &e.0))
    }

    /// The multiplicative inverse; `None` for zero.
    pub fn inv(&self) -> Option<ElementModP> {
        mod_inverse(&self.0, group().p.modulus()).map(ElementModP)
    }

    /// Membership of the order-q subgroup: 0 < x < p and x^q = 1.
    pub fn is_valid_residue(&self) -> bool {
        !self.is_zero()
            && group().p.pow(&self.0, group().q.modulus()) == *BigNum::from_u32(1).unwrap()
    }

    /// A quadratic residue mod p: rules out the order-2 part of Z_p* cheaply. Since
    /// (p−1)/q = 2·ℓ with ℓ prime, a residue that passes this check lies in the group of
    /// order q·ℓ, which is what makes batched subgroup checks sound.
    pub fn is_quadratic_residue(&self) -> bool {
        jacobi(&self.0, group().p.modulus()) == 1
    }
}

/// A running product that costs one Montgomery multiplication per factor.
///
/// Multiplying a normal-form value by a normal-form factor in Montgomery arithmetic gives
/// x·y·R⁻¹: so after n factors the value carries R⁻ⁿ, removed once by [`Self::finish`].
/// Half the cost of multiplying in normal form, which is what tallies spend their time on.
pub(crate) struct RunningProduct {
    value: BigNum,
    factors: u64,
    scratch: BigNum,
}

impl RunningProduct {
    pub(crate) fn new(start: &ElementModP) -> Self {
        RunningProduct {
            value: start.0.to_owned().unwrap(),
            factors: 0,
            scratch: BigNum::new().unwrap(),
        }
    }

    pub(crate) fn multiply(&mut self, factor: &ElementModP) {
        group()
            .p
            .mul_assign(&mut self.value, &factor.0, &mut self.scratch);
        self.factors += 1;
    }

    pub(crate) fn finish(self) -> ElementModP {
        let m = &group().p;
        let mut r = BigNum::new().unwrap();
        m.to_mont(&mut r, &BigNum::from_u32(1).unwrap());
        let correction =
            ElementModP(r).pow(&ElementModQ::from_u64(self.factors).expect("a count is below q"));
        ElementModP(self.value).mul(&correction)
    }
}

/// g^e mod p through the precomputed table for g. Variable-time in its memory access
/// pattern, like every windowed fixed-base method; see the README's note on side channels.
pub fn g_pow_p(e: &ElementModQ) -> ElementModP {
    g_table().pow(e)
}

impl ElementModQ {
    pub(crate) fn from_bignum(n: BigNum) -> Result<Self, GroupError> {
        if n.is_negative() || n >= *group().q.modulus() {
            return Err(GroupError::NotBelowQ);
        }
        Ok(ElementModQ(n))
    }

    pub fn zero() -> Self {
        ElementModQ(BigNum::new().unwrap())
    }

    pub fn one() -> Self {
        ElementModQ(BigNum::from_u32(1).unwrap())
    }

    pub fn q_hex() -> String {
        to_hex(group().q.modulus())
    }

    /// Reduces any integer mod q (used for hash outputs).
    pub(crate) fn reduce(n: &BigNumRef) -> ElementModQ {
        let mut r = BigNum::new().unwrap();
        // The group is fetched first: its first use builds it, which needs the context too.
        let q = group().q.modulus();
        with_ctx(|ctx| r.nnmod(n, q, ctx).unwrap());
        ElementModQ(r)
    }

    /// Reduces a signed 64-bit integer mod q.
    pub fn from_i64(value: i64) -> ElementModQ {
        let mut n = BigNum::from_slice(&value.unsigned_abs().to_be_bytes()).unwrap();
        n.set_negative(value < 0);
        Self::reduce(&n)
    }

    /// A uniformly random element of [0, q) from OpenSSL's CSPRNG.
    pub fn random() -> ElementModQ {
        let mut r = BigNum::new().unwrap();
        group()
            .q
            .modulus()
            .rand_range(&mut r)
            .expect("OpenSSL RNG failure");
        ElementModQ(r)
    }

    /// A uniformly random element of [2, q), as the reference draws secret keys.
    pub fn random_at_least_two() -> ElementModQ {
        loop {
            let r = Self::random();
            if r.0.num_bits() > 1 {
                return r;
            }
        }
    }

    fn binary(
        &self,
        other: &ElementModQ,
        op: impl FnOnce(
            &mut BigNumRef,
            &BigNumRef,
            &BigNumRef,
            &BigNumRef,
            &mut openssl::bn::BigNumContextRef,
        ) -> Result<(), openssl::error::ErrorStack>,
    ) -> ElementModQ {
        let mut r = BigNum::new().unwrap();
        let q = group().q.modulus();
        with_ctx(|ctx| op(&mut r, &self.0, &other.0, q, ctx).unwrap());
        ElementModQ(r)
    }

    pub fn add(&self, other: &ElementModQ) -> ElementModQ {
        self.binary(other, |r, a, b, m, ctx| r.mod_add(a, b, m, ctx))
    }

    pub fn sub(&self, other: &ElementModQ) -> ElementModQ {
        self.binary(other, |r, a, b, m, ctx| r.mod_sub(a, b, m, ctx))
    }

    pub fn mul(&self, other: &ElementModQ) -> ElementModQ {
        self.binary(other, |r, a, b, m, ctx| r.mod_mul(a, b, m, ctx))
    }

    pub fn neg(&self) -> ElementModQ {
        ElementModQ::zero().sub(self)
    }

    /// a + b·c mod q.
    pub fn a_plus_bc(a: &ElementModQ, b: &ElementModQ, c: &ElementModQ) -> ElementModQ {
        a.add(&b.mul(c))
    }

    /// self^e mod q.
    pub fn pow(&self, e: &ElementModQ) -> ElementModQ {
        ElementModQ(group().q.pow(&self.0, &e.0))
    }

    /// The multiplicative inverse mod q; `None` for zero.
    pub fn inv(&self) -> Option<ElementModQ> {
        mod_inverse(&self.0, group().q.modulus()).map(ElementModQ)
    }

    /// Overwrites the value with zero; used by secret wrappers on drop.
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_the_specification() {
        let q = BigNum::from_hex_str(constants::Q_HEX).unwrap();
        let mut expected = BigNum::new().unwrap();
        expected.set_bit(256).unwrap();
        expected.sub_word(189).unwrap();
        assert_eq!(q, expected);
        assert!(ElementModP::generator().is_valid_residue());
        assert_eq!(ElementModP::cofactor_hex().len(), 962);
    }

    #[test]
    fn hex_follows_the_reference_format() {
        assert_eq!(ElementModQ::zero().to_hex(), "00");
        assert_eq!(ElementModQ::from_u64(1).unwrap().to_hex(), "01");
        assert_eq!(ElementModQ::from_u64(0x1ff).unwrap().to_hex(), "01FF");
        assert!(ElementModQ::from_hex("1ff").is_err());
        assert_eq!(ElementModQ::from_hex("0ff").unwrap().to_hex(), "FF");
        assert!(matches!(
            ElementModQ::from_hex("xyz"),
            Err(GroupError::NotHex(_))
        ));
        assert_eq!(
            ElementModQ::from_hex(constants::Q_HEX),
            Err(GroupError::NotBelowQ)
        );
        assert_eq!(
            ElementModP::from_hex(constants::P_HEX),
            Err(GroupError::NotBelowP)
        );
    }

    #[test]
    fn arithmetic_is_consistent() {
        let a = ElementModQ::random();
        let b = ElementModQ::random();
        let ga = g_pow_p(&a);
        let gb = g_pow_p(&b);
        assert_eq!(ga.mul(&gb), g_pow_p(&a.add(&b)));
        assert_eq!(ElementModP::generator().pow(&a), ga);
        assert_eq!(ElementModP::generator().pow_secret(&a), ga);
        assert_eq!(ga.mul(&ga.inv().unwrap()), ElementModP::one());
        assert_eq!(a.mul(&a.inv().unwrap()), ElementModQ::one());
        assert_eq!(a.sub(&b).add(&b), a);
        assert_eq!(a.neg().add(&a), ElementModQ::zero());
        assert!(ga.is_valid_residue() && ga.is_quadratic_residue());
        let two = ElementModP::from_u64(2).unwrap();
        assert!(!two.is_valid_residue());
    }
}
