//! Fixed-base exponentiation with precomputed tables ("PowRadix").
//!
//! For a base b and window k, `table[i][j−1] = b^(j·2^(k·i))` in Montgomery form, so
//! b^e for a 256-bit e is the product of one entry per k-bit digit of e: ⌈256/k⌉ − 1
//! Montgomery multiplications instead of ~300 for square-and-multiply. The encryptor knows
//! every exponent of a ballot's encryption and proofs, so all of its exponentiations go
//! through the tables for g and for the joint key K.

use openssl::bn::BigNum;

use crate::group::{p_mont, ElementModP, ElementModQ};

/// Window width in bits: 8 gives 32 rows of 255 entries (about 4.2 MiB per base).
const WINDOW_BITS: usize = 8;
const ROWS: usize = 256 / WINDOW_BITS;
const ENTRIES: usize = (1 << WINDOW_BITS) - 1;

/// A precomputed table for exponentiations of one fixed base.
pub struct FixedBase {
    table: Vec<BigNum>,
}

impl FixedBase {
    pub fn new(base: &ElementModP) -> FixedBase {
        let m = p_mont();
        let mut table = Vec::with_capacity(ROWS * ENTRIES);
        let mut row_base = BigNum::new().unwrap();
        m.to_mont(&mut row_base, base.bignum());
        for _ in 0..ROWS {
            let mut entry = row_base.to_owned().unwrap();
            for _ in 0..ENTRIES {
                let mut next = BigNum::new().unwrap();
                m.mul(&mut next, &entry, &row_base);
                table.push(entry);
                entry = next;
            }
            // `entry` is now row_base^(2^k): the next row's base.
            row_base = entry;
        }
        FixedBase { table }
    }

    /// base^e mod p.
    pub fn pow(&self, e: &ElementModQ) -> ElementModP {
        let m = p_mont();
        let digits = e
            .bignum()
            .to_vec_padded(32)
            .expect("exponent below q fits 32 bytes");
        let mut acc: Option<BigNum> = None;
        let mut scratch = BigNum::new().unwrap();
        for (row, &digit) in digits.iter().rev().enumerate() {
            if digit == 0 {
                continue;
            }
            let entry = &self.table[row * ENTRIES + digit as usize - 1];
            match acc.as_mut() {
                None => acc = Some(openssl::bn::BigNumRef::to_owned(entry).unwrap()),
                Some(acc) => m.mul_assign(acc, entry, &mut scratch),
            }
        }
        match acc {
            None => ElementModP::one(),
            Some(acc) => {
                let mut out = BigNum::new().unwrap();
                m.leave_mont(&mut out, &acc);
                ElementModP::from_reduced(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_plain_exponentiation() {
        let base = ElementModP::generator().pow(&ElementModQ::random());
        let table = FixedBase::new(&base);
        for e in [
            ElementModQ::zero(),
            ElementModQ::one(),
            ElementModQ::random(),
            ElementModQ::from_i64(-1),
        ] {
            assert_eq!(table.pow(&e), base.pow(&e));
        }
    }
}
