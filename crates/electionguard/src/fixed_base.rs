//! Fixed-base exponentiation with precomputed tables ("PowRadix").
//!
//! For a base b and window k, `table[i][j−1] = b^(j·2^(k·i))` in Montgomery form, so
//! b^e for a 256-bit e is the product of one entry per k-bit digit of e: ⌈256/k⌉ − 1
//! Montgomery multiplications instead of ~300 for square-and-multiply. The encryptor knows
//! every exponent of a ballot's encryption and proofs, so all of its exponentiations go
//! through the tables for g and for the joint key K.

use openssl::bn::{BigNum, BigNumRef};

use crate::group::{p_mont, ElementModP, ElementModQ};

const EXPONENT_BITS: usize = 256;

/// A precomputed table for exponentiations of one fixed base.
pub struct FixedBase {
    window_bits: usize,
    table: Vec<BigNum>,
}

impl FixedBase {
    /// 8-bit windows: 32 rows of 255 entries (4.2 MiB), 31 multiplications per exponentiation.
    pub fn new(base: &ElementModP) -> FixedBase {
        FixedBase::with_window(base, 8)
    }

    /// 13-bit windows: 19 rows of 8,191 entries and one of 511 (~81 MB, ~1.5 s to build), 19 multiplications
    /// per exponentiation. For encryptors, which spend nearly all their time here.
    pub fn wide(base: &ElementModP) -> FixedBase {
        FixedBase::with_window(base, 13)
    }

    fn with_window(base: &ElementModP, window_bits: usize) -> FixedBase {
        let m = p_mont();
        let rows = EXPONENT_BITS.div_ceil(window_bits);
        let mut table = Vec::with_capacity(rows * entries_per_row(window_bits));
        let mut row_base = BigNum::new().unwrap();
        m.to_mont(&mut row_base, base.bignum());
        for row in 0..rows {
            // The top row only needs the digits left of a 256-bit exponent; being last,
            // its being shorter leaves every row's start at `row * entries_per_row`.
            let row_bits = window_bits.min(EXPONENT_BITS - row * window_bits);
            let mut entry = row_base.to_owned().unwrap();
            for _ in 0..entries_per_row(row_bits) {
                let mut next = BigNum::new().unwrap();
                m.mul(&mut next, &entry, &row_base);
                table.push(entry);
                entry = next;
            }
            // `entry` is now row_base^(2^k): the next row's base (unused after the top row).
            row_base = entry;
        }
        FixedBase { window_bits, table }
    }

    /// base^e mod p.
    pub fn pow(&self, e: &ElementModQ) -> ElementModP {
        let mut acc = Accumulator::default();
        self.multiply_into(&mut acc, e);
        acc.finish()
    }

    /// base^e · other^f mod p, in one run of Montgomery multiplications.
    pub fn pow_times(&self, e: &ElementModQ, other: &FixedBase, f: &ElementModQ) -> ElementModP {
        let mut acc = Accumulator::default();
        self.multiply_into(&mut acc, e);
        other.multiply_into(&mut acc, f);
        acc.finish()
    }

    fn multiply_into(&self, acc: &mut Accumulator, e: &ElementModQ) {
        let entries = entries_per_row(self.window_bits);
        for (row, digit) in digits(e, self.window_bits).enumerate() {
            if digit != 0 {
                acc.multiply(&self.table[row * entries + digit - 1]);
            }
        }
    }
}

/// One entry per nonzero digit value of a row.
fn entries_per_row(window_bits: usize) -> usize {
    (1 << window_bits) - 1
}

/// The little-endian `bits`-wide digits of a 256-bit exponent.
fn digits(e: &ElementModQ, bits: usize) -> impl Iterator<Item = usize> {
    let bytes = e
        .bignum()
        .to_vec_padded(32)
        .expect("exponent below q fits 32 bytes");
    let mut limbs = [0u64; 4];
    for (i, chunk) in bytes.rchunks(8).enumerate() {
        limbs[i] = u64::from_be_bytes(chunk.try_into().expect("8-byte chunk"));
    }
    let mask = (1u64 << bits) - 1;
    (0..EXPONENT_BITS.div_ceil(bits)).map(move |row| {
        let (limb, shift) = ((row * bits) / 64, (row * bits) % 64);
        let mut digit = limbs[limb] >> shift;
        if shift + bits > 64 && limb + 1 < 4 {
            digit |= limbs[limb + 1] << (64 - shift);
        }
        (digit & mask) as usize
    })
}

/// A running product in Montgomery form; empty means 1.
#[derive(Default)]
struct Accumulator {
    product: Option<BigNum>,
    scratch: Option<BigNum>,
}

impl Accumulator {
    fn multiply(&mut self, entry: &BigNumRef) {
        match self.product.as_mut() {
            None => self.product = Some(entry.to_owned().unwrap()),
            Some(product) => {
                let scratch = self.scratch.get_or_insert_with(|| BigNum::new().unwrap());
                p_mont().mul_assign(product, entry, scratch);
            }
        }
    }

    fn finish(self) -> ElementModP {
        match self.product {
            None => ElementModP::one(),
            Some(product) => {
                let mut out = BigNum::new().unwrap();
                p_mont().leave_mont(&mut out, &product);
                ElementModP::from_reduced(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exponents() -> [ElementModQ; 5] {
        [
            ElementModQ::zero(),
            ElementModQ::one(),
            ElementModQ::random(),
            ElementModQ::random(),
            ElementModQ::from_i64(-1),
        ]
    }

    #[test]
    fn narrow_and_wide_tables_match_plain_exponentiation() {
        let base = ElementModP::generator().pow(&ElementModQ::random());
        for table in [FixedBase::new(&base), FixedBase::wide(&base)] {
            for e in exponents() {
                assert_eq!(table.pow(&e), base.pow(&e));
            }
        }
    }

    #[test]
    fn product_of_two_tables_matches_plain_exponentiation() {
        let (a, b) = (
            ElementModP::generator().pow(&ElementModQ::random()),
            ElementModP::generator(),
        );
        let (ta, tb) = (FixedBase::wide(&a), FixedBase::new(&b));
        for (e, f) in exponents().iter().zip(exponents().iter().rev()) {
            assert_eq!(ta.pow_times(e, &tb, f), a.pow(e).mul(&b.pow(f)));
        }
    }
}
