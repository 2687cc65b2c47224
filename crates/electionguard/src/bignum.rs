//! Big-number FFI: the only module of this crate with `unsafe`.
//!
//! The `openssl` crate wraps `BIGNUM` but not its Montgomery multiplication, which is
//! about 2.5× faster than any pure-Rust backend measured here (see `../shared/ANCHORS.md`).
//! This module declares the few `libcrypto` functions it needs and wraps each in a safe
//! function. Safety argument, once for all: every pointer passed comes from a live
//! `BigNum`/`BigNumContext`/[`Montgomery`] borrowed for the duration of the call, the
//! result `BIGNUM` is borrowed mutably, and a `BN_MONT_CTX` is never written after
//! `BN_MONT_CTX_set`, so sharing it between threads is sound (OpenSSL documents it as
//! read-only during multiplication).
//!
//! The Jacobi symbol comes from GMP (`mpz_jacobi`, about 25× faster than OpenSSL's
//! `BN_kronecker` on 4096-bit numbers here); its `mpz_t` values live only inside [`jacobi`].
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::os::raw::c_int;
use std::ptr::NonNull;

use foreign_types::ForeignTypeRef;
use openssl::bn::{BigNum, BigNumContext, BigNumContextRef, BigNumRef};
use openssl_sys::{BIGNUM, BN_CTX, BN_MONT_CTX};

extern "C" {
    fn BN_MONT_CTX_new() -> *mut BN_MONT_CTX;
    fn BN_MONT_CTX_free(mont: *mut BN_MONT_CTX);
    fn BN_MONT_CTX_set(mont: *mut BN_MONT_CTX, m: *const BIGNUM, ctx: *mut BN_CTX) -> c_int;
    fn BN_mod_mul_montgomery(
        r: *mut BIGNUM,
        a: *const BIGNUM,
        b: *const BIGNUM,
        mont: *mut BN_MONT_CTX,
        ctx: *mut BN_CTX,
    ) -> c_int;
    fn BN_to_montgomery(
        r: *mut BIGNUM,
        a: *const BIGNUM,
        mont: *mut BN_MONT_CTX,
        ctx: *mut BN_CTX,
    ) -> c_int;
    fn BN_from_montgomery(
        r: *mut BIGNUM,
        a: *const BIGNUM,
        mont: *mut BN_MONT_CTX,
        ctx: *mut BN_CTX,
    ) -> c_int;
    fn BN_mod_exp_mont(
        r: *mut BIGNUM,
        a: *const BIGNUM,
        p: *const BIGNUM,
        m: *const BIGNUM,
        ctx: *mut BN_CTX,
        mont: *mut BN_MONT_CTX,
    ) -> c_int;
    fn BN_mod_exp_mont_consttime(
        r: *mut BIGNUM,
        a: *const BIGNUM,
        p: *const BIGNUM,
        m: *const BIGNUM,
        ctx: *mut BN_CTX,
        mont: *mut BN_MONT_CTX,
    ) -> c_int;
}

/// GMP's `__mpz_struct`.
#[repr(C)]
struct Mpz {
    alloc: c_int,
    size: c_int,
    limbs: *mut u64,
}

#[link(name = "gmp")]
extern "C" {
    fn __gmpz_init(x: *mut Mpz);
    fn __gmpz_clear(x: *mut Mpz);
    fn __gmpz_import(
        rop: *mut Mpz,
        count: usize,
        order: c_int,
        size: usize,
        endian: c_int,
        nails: usize,
        op: *const u8,
    );
    fn __gmpz_jacobi(a: *const Mpz, b: *const Mpz) -> c_int;
}

/// An initialised GMP integer, cleared on drop.
struct GmpInt(Mpz);

impl GmpInt {
    fn from_be_bytes(bytes: &[u8]) -> GmpInt {
        let mut x = GmpInt(Mpz {
            alloc: 0,
            size: 0,
            limbs: std::ptr::null_mut(),
        });
        // SAFETY: init before use; import reads exactly `bytes.len()` bytes (order 1, size 1: big-endian bytes).
        unsafe {
            __gmpz_init(&mut x.0);
            __gmpz_import(&mut x.0, bytes.len(), 1, 1, 1, 0, bytes.as_ptr());
        }
        x
    }
}

impl Drop for GmpInt {
    fn drop(&mut self) {
        // SAFETY: initialised in `from_be_bytes`, cleared once.
        unsafe { __gmpz_clear(&mut self.0) }
    }
}

thread_local! {
    static CONTEXT: RefCell<BigNumContext> =
        RefCell::new(BigNumContext::new().expect("OpenSSL could not allocate a BN_CTX"));
}

/// Runs `f` with this thread's scratch `BN_CTX`. Not reentrant: `f` must not call back here.
pub(crate) fn with_ctx<T>(f: impl FnOnce(&mut BigNumContextRef) -> T) -> T {
    CONTEXT.with(|ctx| f(&mut ctx.borrow_mut()))
}

/// OpenSSL only fails these calls on allocation failure, which we treat like Rust does.
fn check(rc: c_int) {
    assert!(
        rc == 1,
        "OpenSSL big-number operation failed (out of memory)"
    );
}

/// Montgomery arithmetic modulo a fixed odd modulus.
pub(crate) struct Montgomery {
    mont: NonNull<BN_MONT_CTX>,
    modulus: BigNum,
}

// SAFETY: see the module documentation; the context is immutable after construction.
unsafe impl Send for Montgomery {}
unsafe impl Sync for Montgomery {}

impl Drop for Montgomery {
    fn drop(&mut self) {
        // SAFETY: allocated by BN_MONT_CTX_new in `new` and freed once here.
        unsafe { BN_MONT_CTX_free(self.mont.as_ptr()) }
    }
}

impl Montgomery {
    pub(crate) fn new(modulus: &BigNumRef) -> Self {
        // SAFETY: a fresh context, set from a live modulus.
        let mont = unsafe { BN_MONT_CTX_new() };
        let mont = NonNull::new(mont).expect("OpenSSL could not allocate a BN_MONT_CTX");
        with_ctx(|ctx| {
            check(unsafe { BN_MONT_CTX_set(mont.as_ptr(), modulus.as_ptr(), ctx.as_ptr()) })
        });
        Montgomery {
            mont,
            modulus: modulus.to_owned().unwrap(),
        }
    }

    pub(crate) fn modulus(&self) -> &BigNumRef {
        &self.modulus
    }

    /// r = a·b·R⁻¹ mod m, for a and b in Montgomery form.
    pub(crate) fn mul(&self, r: &mut BigNumRef, a: &BigNumRef, b: &BigNumRef) {
        with_ctx(|ctx| {
            // SAFETY: module documentation.
            check(unsafe {
                BN_mod_mul_montgomery(
                    r.as_ptr(),
                    a.as_ptr(),
                    b.as_ptr(),
                    self.mont.as_ptr(),
                    ctx.as_ptr(),
                )
            })
        })
    }

    /// acc = acc·b in Montgomery form, through a scratch value to keep OpenSSL's aliasing rules simple.
    pub(crate) fn mul_assign(&self, acc: &mut BigNum, b: &BigNumRef, scratch: &mut BigNum) {
        self.mul(scratch, acc, b);
        std::mem::swap(acc, scratch);
    }

    pub(crate) fn to_mont(&self, r: &mut BigNumRef, a: &BigNumRef) {
        // SAFETY: module documentation.
        with_ctx(|ctx| {
            check(unsafe {
                BN_to_montgomery(r.as_ptr(), a.as_ptr(), self.mont.as_ptr(), ctx.as_ptr())
            })
        })
    }

    pub(crate) fn leave_mont(&self, r: &mut BigNumRef, a: &BigNumRef) {
        // SAFETY: module documentation.
        with_ctx(|ctx| {
            check(unsafe {
                BN_from_montgomery(r.as_ptr(), a.as_ptr(), self.mont.as_ptr(), ctx.as_ptr())
            })
        })
    }

    /// base^exp mod m, variable time: for public exponents only.
    pub(crate) fn pow(&self, base: &BigNumRef, exp: &BigNumRef) -> BigNum {
        let r = BigNum::new().unwrap();
        with_ctx(|ctx| {
            // SAFETY: module documentation.
            check(unsafe {
                BN_mod_exp_mont(
                    r.as_ptr(),
                    base.as_ptr(),
                    exp.as_ptr(),
                    self.modulus.as_ptr(),
                    ctx.as_ptr(),
                    self.mont.as_ptr(),
                )
            })
        });
        r
    }

    /// base^exp mod m in constant time with respect to `exp`: for secret exponents.
    pub(crate) fn pow_secret(&self, base: &BigNumRef, exp: &BigNumRef) -> BigNum {
        let r = BigNum::new().unwrap();
        let mut exp = exp.to_owned().unwrap();
        exp.set_const_time();
        with_ctx(|ctx| {
            // SAFETY: module documentation.
            check(unsafe {
                BN_mod_exp_mont_consttime(
                    r.as_ptr(),
                    base.as_ptr(),
                    exp.as_ptr(),
                    self.modulus.as_ptr(),
                    ctx.as_ptr(),
                    self.mont.as_ptr(),
                )
            })
        });
        exp.clear();
        r
    }
}

/// The Jacobi symbol (a/m) for odd m: for a prime m, 1 exactly when a is a non-zero quadratic residue.
pub(crate) fn jacobi(a: &BigNumRef, m: &BigNumRef) -> i32 {
    let (a, m) = (
        GmpInt::from_be_bytes(&a.to_vec()),
        GmpInt::from_be_bytes(&m.to_vec()),
    );
    // SAFETY: both are initialised GMP integers, m is odd.
    unsafe { __gmpz_jacobi(&a.0, &m.0) }
}
