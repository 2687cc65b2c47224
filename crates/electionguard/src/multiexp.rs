//! Multi-exponentiation Π bᵢ^eᵢ mod p by interleaved sliding windows (Straus): the
//! squarings are shared by all bases, and each base costs one multiplication per window
//! of its own exponent. This is what makes batch verification cheap.

use openssl::bn::{BigNum, BigNumRef};

use crate::group::{p_mont, ElementModP};

/// Window width for an exponent of `bits` bits: wider windows pay off for longer exponents.
fn window_for(bits: usize) -> usize {
    match bits {
        0..=24 => 1,
        25..=80 => 3,
        81..=160 => 4,
        _ => 5,
    }
}

/// Bit `i` (0 = least significant) of a big-endian byte string.
fn bit(bytes: &[u8], i: usize) -> bool {
    let byte = bytes.len() - 1 - i / 8;
    bytes[byte] >> (i % 8) & 1 == 1
}

/// Sliding-window digits of an exponent: (bit position, odd digit), most significant first.
fn recode(bytes: &[u8], bits: usize, window: usize) -> Vec<(usize, usize)> {
    let mut digits = Vec::with_capacity(bits / window + 1);
    let mut i = bits as isize - 1;
    while i >= 0 {
        if !bit(bytes, i as usize) {
            i -= 1;
            continue;
        }
        let mut low = (i - window as isize + 1).max(0);
        while !bit(bytes, low as usize) {
            low += 1;
        }
        let value = (low..=i)
            .rev()
            .fold(0usize, |acc, j| acc << 1 | bit(bytes, j as usize) as usize);
        digits.push((low as usize, value));
        i = low - 1;
    }
    digits
}

/// Π bases[i]^exponents[i] mod p, for non-negative integer exponents of any size.
pub(crate) fn multi_exp(terms: &[(&ElementModP, &BigNumRef)]) -> ElementModP {
    let m = p_mont();
    let mut scratch = BigNum::new().unwrap();
    let mut tables: Vec<Vec<BigNum>> = Vec::with_capacity(terms.len());
    let mut by_position: Vec<Vec<(usize, usize)>> = Vec::new();
    for (index, (base, exponent)) in terms.iter().enumerate() {
        let bits = exponent.num_bits() as usize;
        if bits == 0 {
            tables.push(Vec::new());
            continue;
        }
        let window = window_for(bits);
        tables.push(odd_powers(base, window));
        if by_position.len() < bits {
            by_position.resize(bits, Vec::new());
        }
        for (position, digit) in recode(&exponent.to_vec(), bits, window) {
            by_position[position].push((index, digit / 2));
        }
    }
    let mut acc: Option<BigNum> = None;
    for entries in by_position.iter().rev() {
        if let Some(a) = acc.as_mut() {
            m.mul(&mut scratch, a, a);
            std::mem::swap(a, &mut scratch);
        }
        for &(index, slot) in entries {
            let factor = &tables[index][slot];
            match acc.as_mut() {
                None => acc = Some(BigNumRef::to_owned(factor).unwrap()),
                Some(a) => m.mul_assign(a, factor, &mut scratch),
            }
        }
    }
    match acc {
        None => ElementModP::one(),
        Some(a) => {
            let mut out = BigNum::new().unwrap();
            m.leave_mont(&mut out, &a);
            ElementModP::from_reduced(out)
        }
    }
}

/// b, b³, b⁵, … b^(2^w − 1) in Montgomery form.
fn odd_powers(base: &ElementModP, window: usize) -> Vec<BigNum> {
    let m = p_mont();
    let mut b = BigNum::new().unwrap();
    m.to_mont(&mut b, base.bignum());
    let count = 1 << (window - 1);
    let mut table = Vec::with_capacity(count);
    if count > 1 {
        let mut square = BigNum::new().unwrap();
        m.mul(&mut square, &b, &b);
        table.push(b);
        for i in 1..count {
            let mut next = BigNum::new().unwrap();
            m.mul(&mut next, &table[i - 1], &square);
            table.push(next);
        }
    } else {
        table.push(b);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{g_pow_p, ElementModQ};

    #[test]
    fn matches_separate_exponentiations() {
        let bases: Vec<ElementModP> = (0..5).map(|_| g_pow_p(&ElementModQ::random())).collect();
        let mut exponents: Vec<BigNum> = (0..5)
            .map(|_| BigNum::from_slice(&ElementModQ::random().to_bytes_be()).unwrap())
            .collect();
        exponents[1] = BigNum::from_u32(0xdead_beef).unwrap();
        exponents[2] = BigNum::from_u32(1).unwrap();
        exponents[3] = BigNum::new().unwrap();
        let terms: Vec<(&ElementModP, &BigNumRef)> = bases
            .iter()
            .zip(&exponents)
            .map(|(b, e)| (b, e.as_ref()))
            .collect();
        let expected = bases
            .iter()
            .zip(&exponents)
            .fold(ElementModP::one(), |acc, (b, e)| {
                acc.mul(&b.pow(&ElementModQ::from_bytes_be(&e.to_vec()).unwrap()))
            });
        assert_eq!(multi_exp(&terms), expected);
        assert_eq!(multi_exp(&[]), ElementModP::one());
    }
}
