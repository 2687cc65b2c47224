//! `hash_elems`: the reference library's hash, reproduced to the character.
//!
//! SHA-256 over `"|"` followed by each element's text and `"|"`, reduced mod q. The text
//! of an element is: hex (as written in records) for group elements, the string itself,
//! decimal for integers, `"null"` for `None` and empty lists, the hex of the nested hash
//! for a non-empty list, and the hex of `crypto_hash()` for manifest objects.

use std::borrow::Cow;

use openssl::bn::BigNum;
use sha2::{Digest, Sha256};

use crate::group::{ElementModP, ElementModQ};

/// Anything that can appear as an argument of `hash_elems`.
pub trait HashElem {
    /// The exact text that `hash_elems` feeds to SHA-256 for this element.
    fn hash_text(&self) -> Cow<'_, str>;
}

/// H(a₁, …, aₙ) as the reference library computes it.
pub fn hash_elems(items: &[&dyn HashElem]) -> ElementModQ {
    let mut h = Sha256::new();
    h.update(b"|");
    for item in items {
        h.update(item.hash_text().as_bytes());
        h.update(b"|");
    }
    ElementModQ::reduce(&BigNum::from_slice(&h.finalize()).unwrap())
}

/// `hash!(a, b, c)` is `hash_elems(&[&a, &b, &c])`.
#[macro_export]
macro_rules! hash {
    ($($item:expr),* $(,)?) => {
        $crate::hash::hash_elems(&[$(&$item as &dyn $crate::hash::HashElem),*])
    };
}

impl HashElem for ElementModP {
    fn hash_text(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_hex())
    }
}

impl HashElem for ElementModQ {
    fn hash_text(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_hex())
    }
}

impl HashElem for str {
    fn hash_text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl HashElem for String {
    fn hash_text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

macro_rules! int_hash_elem {
    ($($t:ty),*) => {$(
        impl HashElem for $t {
            fn hash_text(&self) -> Cow<'_, str> {
                Cow::Owned(self.to_string())
            }
        }
    )*};
}
int_hash_elem!(u32, u64, i32, i64, usize);

impl<T: HashElem> HashElem for Option<T> {
    fn hash_text(&self) -> Cow<'_, str> {
        match self {
            Some(x) => x.hash_text(),
            None => Cow::Borrowed("null"),
        }
    }
}

impl<T: HashElem> HashElem for [T] {
    fn hash_text(&self) -> Cow<'_, str> {
        if self.is_empty() {
            return Cow::Borrowed("null");
        }
        let items: Vec<&dyn HashElem> = self.iter().map(|x| x as &dyn HashElem).collect();
        Cow::Owned(hash_elems(&items).to_hex())
    }
}

impl<T: HashElem> HashElem for Vec<T> {
    fn hash_text(&self) -> Cow<'_, str> {
        self.as_slice().hash_text()
    }
}

impl<T: HashElem + ?Sized> HashElem for &T {
    fn hash_text(&self) -> Cow<'_, str> {
        (**self).hash_text()
    }
}

/// The reference's `Nonces`: a deterministic sequence of values mod q from a seed.
pub struct Nonces {
    seed: ElementModQ,
}

impl Nonces {
    /// `Nonces(seed, *headers)`: with headers the sequence seed is H(seed, headers…).
    pub fn new(seed: &ElementModQ, headers: &[&dyn HashElem]) -> Nonces {
        if headers.is_empty() {
            return Nonces { seed: seed.clone() };
        }
        let mut items: Vec<&dyn HashElem> = vec![seed];
        items.extend_from_slice(headers);
        Nonces {
            seed: hash_elems(&items),
        }
    }

    /// The i-th nonce: H(seed, i).
    pub fn get(&self, index: u64) -> ElementModQ {
        hash!(self.seed, index)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_reference_encoding() {
        // hashlib.sha256(b"|null|") reduced mod q, and the same through an empty list.
        let empty: Vec<String> = vec![];
        let none: Option<String> = None;
        assert_eq!(hash!(none), hash!(empty));
        // Values from Python: int.from_bytes(sha256(b"|null|").digest(), "big") % q.
        assert_eq!(
            hash!(none).to_hex(),
            "4B9729549DA6FBF91219C4D2D4878F0D9F443F92D013C6C768F96BA81C7CCAEE"
        );
        assert_eq!(
            hash!("a", "b").to_hex(),
            "5860AFE649ADB70DBD4E82ED611EEB539FC9E786F85A2A4444847C0DD97BB359"
        );
        // A nested list hashes to the hex of the inner hash.
        let inner = hash!("a", "b");
        assert_eq!(hash!(vec!["a", "b"]), hash!(inner));
        assert_eq!(hash!(5u64), hash!("5"));
    }
}
