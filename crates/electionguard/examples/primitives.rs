//! Times the group primitives: `cargo run --release -p electionguard --example primitives`.
use electionguard::fixed_base::FixedBase;
use electionguard::group::{g_pow_p, ElementModP, ElementModQ};
use std::time::Instant;

fn time(name: &str, n: u32, mut f: impl FnMut()) {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    println!(
        "{name:<40} {:>10.1} µs",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}

fn main() {
    let x = g_pow_p(&ElementModQ::random());
    let y = g_pow_p(&ElementModQ::random());
    let e = ElementModQ::random();
    time("mul (normal form)", 2000, || {
        let _ = x.mul(&y);
    });
    time("pow 256-bit", 200, || {
        let _ = x.pow(&e);
    });
    time("pow_secret 256-bit", 200, || {
        let _ = x.pow_secret(&e);
    });
    time("g_pow_p (table)", 500, || {
        let _ = g_pow_p(&e);
    });
    let t = FixedBase::new(&x);
    time("fixed base k=8", 500, || {
        let _ = t.pow(&e);
    });
    time("is_valid_residue", 100, || {
        let _ = x.is_valid_residue();
    });
    time("jacobi", 500, || {
        let _ = x.is_quadratic_residue();
    });
    time("to_hex", 2000, || {
        let _ = x.to_hex();
    });
    time("from_hex", 2000, || {
        let _ = ElementModP::from_hex(&x.to_hex());
    });
}
