//! The instruction set the kernels run with, decided in this one place, and [`vectorized`], which runs code
//! compiled for it.
//!
//! On a microcontroller or a Raspberry Pi the instruction set is fixed when the crate is built (`target_arch`,
//! `target_feature` and the `arm-*` features), so [`isa`] is a constant. On x86-64 with the `std` feature it is
//! detected at run time, once (CPUID through `is_x86_feature_detected!`, then cached), so one binary takes AVX2
//! or AVX-512 VNNI where the CPU has them; without `std` it is fixed at build time there too
//! (`-C target-feature=+avx2`, `-C target-cpu=native`).
//!
//! Setting the environment variable `ALBERT_EDGE_X86=avx2` (read once, with the `std` feature) keeps the AVX-512
//! VNNI kernels off on a CPU that has them, so the AVX2 paths (what an AVX2-only CPU such as AMD Zen 3 runs) can
//! be measured and tested there.

/// An instruction-set level the kernels can run at. The x86-64 levels are cumulative: each has the one before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Plain loops only: the reference kernels.
    Reference,
    /// x86-64 with AVX2.
    Avx2,
    /// x86-64 with AVX2 and AVX-512F, where the AVX-512 VNNI kernels do not run (the CPU lacks VNNI, or
    /// `ALBERT_EDGE_X86=avx2`): element-wise loops 16 lanes wide, the AVX2 int8 kernels.
    Avx512,
    /// x86-64 with AVX2 and AVX-512 F, VL and VNNI (Intel Ice Lake and later, AMD Zen 4 and later).
    Avx512Vnni,
    /// AArch64 NEON without the dot product (`smull` / `sadalp`), or 32-bit ARM NEON (`arm-neon`).
    Neon,
    /// AArch64 NEON with `dotprod` (`sdot`).
    NeonDot,
    /// Cortex-M with the DSP extension (`arm-dsp`: `SMLAD`).
    Dsp,
    /// Cortex-M with Helium (`arm-helium`: MVE).
    Helium,
}

impl Isa {
    /// Whether this level has AVX2 (x86-64).
    #[inline]
    pub const fn avx2(self) -> bool {
        matches!(self, Isa::Avx2 | Isa::Avx512 | Isa::Avx512Vnni)
    }

    /// Whether this level has AVX-512F (x86-64).
    #[inline]
    pub const fn avx512(self) -> bool {
        matches!(self, Isa::Avx512 | Isa::Avx512Vnni)
    }

    /// Whether the AVX-512 VNNI kernels run at this level (x86-64).
    #[inline]
    pub const fn avx512_vnni(self) -> bool {
        matches!(self, Isa::Avx512Vnni)
    }

    /// The level this build was compiled for (`target_arch`, `target_feature` and the `arm-*` features). On
    /// 32-bit ARM with several of those features, the first of Helium, NEON and DSP.
    pub const COMPILED: Isa = compiled();
}

/// [`Isa::COMPILED`].
const fn compiled() -> Isa {
    if cfg!(target_arch = "x86_64") {
        if cfg!(all(
            target_feature = "avx2",
            target_feature = "avx512f",
            target_feature = "avx512vl",
            target_feature = "avx512vnni"
        )) {
            Isa::Avx512Vnni
        } else if cfg!(all(target_feature = "avx2", target_feature = "avx512f")) {
            Isa::Avx512
        } else if cfg!(target_feature = "avx2") {
            Isa::Avx2
        } else {
            Isa::Reference
        }
    } else if cfg!(target_arch = "aarch64") {
        if cfg!(target_feature = "dotprod") {
            Isa::NeonDot
        } else {
            Isa::Neon
        }
    } else if cfg!(all(target_arch = "arm", feature = "arm-helium")) {
        Isa::Helium
    } else if cfg!(all(target_arch = "arm", feature = "arm-neon")) {
        Isa::Neon
    } else if cfg!(all(target_arch = "arm", feature = "arm-dsp")) {
        Isa::Dsp
    } else {
        Isa::Reference
    }
}

/// The level the kernels run at: detected once on x86-64 with `std` (every later call is one relaxed load),
/// [`Isa::COMPILED`] everywhere else. Stable for the life of the process.
#[inline]
pub fn isa() -> Isa {
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    {
        detected::get()
    }
    #[cfg(not(all(target_arch = "x86_64", feature = "std")))]
    {
        Isa::COMPILED
    }
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
mod detected {
    use super::Isa;
    use core::sync::atomic::{AtomicU8, Ordering};

    /// The x86-64 levels in order, indexed by what [`LEVEL`] holds.
    const LEVELS: [Isa; 4] = [Isa::Reference, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni];

    /// Index into [`LEVELS`], or `u8::MAX` before the first [`get`]. Detection gives the same answer on every
    /// thread, so a race only detects twice.
    static LEVEL: AtomicU8 = AtomicU8::new(u8::MAX);

    #[inline]
    pub(super) fn get() -> Isa {
        match LEVELS.get(LEVEL.load(Ordering::Relaxed) as usize) {
            Some(&isa) => isa,
            None => detect(),
        }
    }

    #[cold]
    fn detect() -> Isa {
        let avx2 = std::is_x86_feature_detected!("avx2");
        let avx512 = avx2 && std::is_x86_feature_detected!("avx512f");
        let vnni = avx512
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni")
            && std::env::var_os("ALBERT_EDGE_X86").is_none_or(|v| v != "avx2");
        let level = avx2 as u8 + avx512 as u8 + vnni as u8;
        LEVEL.store(level, Ordering::Relaxed);
        LEVELS[level as usize]
    }
}

/// Runs `f` compiled for the widest vectors [`isa`] has: on x86-64 with `std`, AVX-512F (16 `f32` lanes) or
/// AVX2 (8) where the CPU has them, so that the compiler vectorises `f`'s loops that wide; elsewhere `f` as built
/// (the instruction set is fixed at build time there).
///
/// **Mark the closure `#[inline(always)]`** (`vectorized(#[inline(always)] || ...)`), and the functions it calls
/// that should be compiled with it too: the closure is then compiled into each variant with its instruction set.
/// Without the attribute the compiler may keep one copy of the closure, compiled for the baseline, and every
/// variant calls that.
///
/// Same results, bit for bit, in every variant: the compiler only widens the same IEEE operations, in the same
/// order per element (Rust never fuses or reassociates floating-point arithmetic).
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    {
        let isa = isa();
        if isa.avx512() {
            // SAFETY: the CPU has AVX-512F and AVX2 (`isa` detected them).
            return unsafe { x86_avx512(f) };
        }
        if isa.avx2() {
            // SAFETY: the CPU has AVX2 (`isa` detected it).
            return unsafe { x86_avx2(f) };
        }
    }
    f()
}

/// [`vectorized`] with vectors at most 256 bits wide: AVX2 on x86-64 (where AVX-512 is present too), for code
/// that runs no faster 512 bits wide.
#[inline(always)]
pub fn vectorized_256<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    if isa().avx2() {
        // SAFETY: the CPU has AVX2 (`isa` detected it).
        return unsafe { x86_avx2(f) };
    }
    f()
}

/// `f` compiled with AVX-512F and AVX2. Safety: the CPU must have both.
#[cfg(all(target_arch = "x86_64", feature = "std"))]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn x86_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `f` compiled with AVX2. Safety: the CPU must have AVX2.
#[cfg(all(target_arch = "x86_64", feature = "std"))]
#[target_feature(enable = "avx2")]
unsafe fn x86_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
