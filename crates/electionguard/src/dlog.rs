//! Discrete logarithm base g for small exponents (vote counts), by baby-step giant-step.
//!
//! A table of g^0 … g^(m−1) (m = 2^12) is built once; a count n is found after
//! ⌊n/m⌋ giant steps of one multiplication each, so even 10^8 votes on one selection
//! take about 25,000 multiplications instead of a linear scan from 1.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::group::{ElementModP, ElementModQ};

const BABY_STEPS: u64 = 1 << 12;
/// The largest count searched: far above any electorate.
pub const MAX_COUNT: u64 = 1 << 32;

struct Table {
    baby: HashMap<Vec<u8>, u64>,
    /// g^(−m): one giant step.
    giant: ElementModP,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let g = ElementModP::generator();
        let mut baby = HashMap::with_capacity(BABY_STEPS as usize);
        let mut x = ElementModP::one();
        for j in 0..BABY_STEPS {
            baby.insert(x.to_bytes_be(), j);
            x = x.mul(&g);
        }
        let giant = g.pow(&ElementModQ::from_i64(-(BABY_STEPS as i64)));
        Table { baby, giant }
    })
}

/// The n ≤ [`MAX_COUNT`] with g^n = value, if there is one.
pub fn discrete_log(value: &ElementModP) -> Option<u64> {
    let t = table();
    let mut y = value.clone();
    let mut i = 0;
    while i * BABY_STEPS <= MAX_COUNT {
        if let Some(j) = t.baby.get(&y.to_bytes_be()) {
            return Some(i * BABY_STEPS + j);
        }
        y = y.mul(&t.giant);
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::g_pow_p;

    #[test]
    fn finds_small_and_large_counts() {
        for n in [0u64, 1, 2, 4095, 4096, 123_457, 8_000_000] {
            assert_eq!(
                discrete_log(&g_pow_p(&ElementModQ::from_u64(n).unwrap())),
                Some(n)
            );
        }
    }
}
