//! The firmware's main program, its instruction meter and stack gauge, and its report (plain semihosting text,
//! or defmt frames with the `defmt` feature). Device targets only.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use albert_edge::model::{classify, Inputs, Precision};
use albert_edge::Error;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;

use crate::{Scratch, ARENA_BYTES, BLOB, BLOB_BYTES, CONFIG, MAX_SEQ, TOKENIZER_WORKSPACE_BYTES};

/// What a board crate tells the common firmware about itself.
#[derive(Debug, Clone, Copy)]
pub struct Board {
    /// The QEMU machine (or board) name.
    pub name: &'static str,
    /// The CPU.
    pub cpu: &'static str,
}

/// Sequence lengths the firmware measures one inference at (those up to [`MAX_SEQ`]).
pub const BENCH_SEQ: [usize; 2] = [32, 64];

/// Runs everything and exits through semihosting: 0 when every check passed, 1 otherwise. Call it from the
/// board's `#[entry]`.
pub fn run(board: &Board) -> ! {
    let mut core = match cortex_m::Peripherals::take() {
        Some(p) => p,
        None => exit(1),
    };
    meter::start(&mut core.SYST);
    let code = match main(board) {
        Ok(()) => 0,
        Err(e) => {
            report::error(e);
            1
        }
    };
    exit(code)
}

fn main(board: &Board) -> Result<(), Error> {
    report::start(board, meter::calibrate());
    let scratch = take_scratch();

    // 1. The kernels against the reference, in the arena before the model uses it.
    match crate::selfcheck::run(&mut scratch.arena) {
        Ok(summary) => report::selfcheck_ok(&summary),
        Err(m) => {
            report::selfcheck_failed(&m);
            exit(1);
        }
    }

    // 2. The blob, validated in place, and its tokenizer.
    let t0 = meter::now();
    let model = crate::load_model()?;
    let tokenizer = crate::load_tokenizer(&model, &scratch.workspace)?;
    report::model(
        BLOB.0.as_ptr() as usize,
        meter::instructions(meter::now() - t0),
    );

    // 3. Tokenize and classify the sentences.
    crate::classify_sentences(
        &model,
        tokenizer,
        &mut scratch.arena,
        &mut scratch.workspace,
        report::result,
    )?;

    // 4. Instructions per inference (and per tokenization) at fixed lengths.
    let mut ids = [0u32; MAX_SEQ];
    let mut types = [0u32; MAX_SEQ];
    let mut logits = [0f32; albert_edge::config::MAX_LABELS];
    for seq in BENCH_SEQ.into_iter().filter(|&n| n <= MAX_SEQ) {
        let t0 = meter::now();
        let n = tokenizer.encode(
            crate::BENCH_TEXT,
            None,
            seq,
            &mut scratch.workspace,
            &mut ids,
            &mut types,
        )?;
        let t1 = meter::now();
        let inputs = Inputs {
            input_ids: &ids[..n],
            token_type_ids: &types[..n],
            attention_mask: &[],
        };
        classify(
            &model,
            Precision::Int8,
            &inputs,
            &mut scratch.arena,
            &mut logits,
        )?;
        let t2 = meter::now();
        report::bench(
            n,
            meter::instructions(t1 - t0),
            meter::instructions(t2 - t1),
            t2 - t1,
        );
    }

    // 5. Memory.
    report::memory(stack::high_water_mark(), stack::size());
    report::done(meter::instructions(meter::now()));
    Ok(())
}

/// Ends the QEMU run (or the debug session) with `code` as its exit status.
pub fn exit(code: i32) -> ! {
    semihosting::process::exit(code)
}

/// For the board's HardFault handler: reports where and exits with status 1.
pub fn hard_fault(frame: &cortex_m_rt::ExceptionFrame) -> ! {
    report::hard_fault(frame.pc(), frame.lr());
    exit(1)
}

/// For the board's default exception handler: an unexpected exception or interrupt is a failure.
pub fn unexpected_exception(irqn: i16) -> ! {
    report::unexpected(irqn);
    exit(1)
}

/// The one static working memory (in `.bss`). The flag lets one caller have it, once.
fn take_scratch() -> &'static mut Scratch {
    struct Static(UnsafeCell<Scratch>);
    // SAFETY: the cell is only reached through `take_scratch`, which hands out at most one reference, ever.
    unsafe impl Sync for Static {}
    static SCRATCH: Static = Static(UnsafeCell::new(Scratch::ZERO));
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::Relaxed) {
        exit(1);
    }
    // SAFETY: `TAKEN` lets exactly one call get this far, so this is the only reference to the cell's contents
    // ever created, and no interrupt handler touches it.
    unsafe { &mut *SCRATCH.0.get() }
}

// ---------------------------------------------------------------------------------------------------------------
// The instruction meter: SysTick under `qemu-system-arm -icount shift=0`
// ---------------------------------------------------------------------------------------------------------------

/// SysTick counting down from 2^24 on the core clock, wraps counted by the board's `SysTick` handler
/// ([`meter::on_wrap`]). Under `-icount shift=0` QEMU's clock advances exactly 1 ns per instruction, so ticks
/// become instructions through the board's clock rate; without `-icount` the figures are meaningless.
pub mod meter {
    use super::*;

    const RELOAD: u32 = 0x00FF_FFFF;
    static WRAPS: AtomicU32 = AtomicU32::new(0);

    /// Starts the free-running counter with its wrap interrupt.
    pub fn start(syst: &mut SYST) {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
    }

    /// Call from the board's `#[exception] fn SysTick()`.
    pub fn on_wrap() {
        WRAPS.fetch_add(1, Ordering::Relaxed);
    }

    /// Iterations of the calibration loop: two instructions each.
    const CALIBRATION_ITERATIONS: u32 = 1 << 21;

    /// Instructions per tick, times 2^16; set by [`calibrate`].
    static SCALE: AtomicU32 = AtomicU32::new(0);

    /// Measures instructions per SysTick tick with a loop of known length (2^22 instructions: `subs` + `bne`) and
    /// returns it times 2^16. Under `-icount` QEMU's SysTick runs at the board's clock rate on a clock that
    /// advances 1 ns per instruction, so this is exact to about 1 in 10^5 (one tick in 2^22 instructions); on real
    /// hardware ticks are cycles, and the figures below count cycles of a loop, not instructions.
    pub fn calibrate() -> u32 {
        let t0 = now();
        let mut n = CALIBRATION_ITERATIONS;
        // SAFETY: a register-only countdown loop: no memory, no stack; it clobbers the flags (not preserved).
        unsafe {
            core::arch::asm!("2:", "subs {n}, #1", "bne 2b", n = inout(reg) n, options(nomem, nostack))
        };
        let ticks = now() - t0;
        debug_assert_eq!(n, 0);
        let scale = (((2 * u64::from(CALIBRATION_ITERATIONS)) << 16) / ticks.max(1)) as u32;
        SCALE.store(scale, Ordering::Relaxed);
        scale
    }

    /// Instructions in `ticks` SysTick ticks (see [`calibrate`]).
    pub fn instructions(ticks: u64) -> u64 {
        (ticks * u64::from(SCALE.load(Ordering::Relaxed))) >> 16
    }

    /// SysTick ticks since [`start`].
    pub fn now() -> u64 {
        loop {
            let wraps = WRAPS.load(Ordering::Relaxed);
            let current = SYST::get_current();
            if WRAPS.load(Ordering::Relaxed) == wraps {
                // The counter goes 0 (at start, or wrapped: WRAPS counted it), RELOAD, RELOAD - 1, ..., 1, 0, ...:
                // ticks into the current period are `(RELOAD + 1 - current) mod 2^24`.
                return u64::from(wraps) * u64::from(RELOAD + 1)
                    + u64::from((RELOAD + 1 - current) & RELOAD);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The stack gauge: cortex-m-rt's `paint-stack` fills the free RAM below the stack with 0xCCCCCCCC at reset
// ---------------------------------------------------------------------------------------------------------------

/// Stack use, read off the paint that cortex-m-rt's `paint-stack` feature lays from `_stack_end` (the end of
/// `.bss`) up to `_stack_start` (the top of RAM) before `main`.
pub mod stack {
    const PAINT: u32 = 0xCCCC_CCCC;

    extern "C" {
        static _stack_start: u32;
        static _stack_end: u32;
    }

    fn bounds() -> (usize, usize) {
        // Only the addresses of the linker's symbols are taken (no read), which needs no `unsafe`.
        (
            &raw const _stack_end as usize,
            &raw const _stack_start as usize,
        )
    }

    /// Bytes between the end of static data and the top of RAM: the most the stack can grow.
    pub fn size() -> usize {
        let (end, start) = bounds();
        start - end
    }

    /// The deepest the stack has reached since reset, in bytes: from the top of RAM down to the lowest word no
    /// longer holding the paint.
    pub fn high_water_mark() -> usize {
        let (end, start) = bounds();
        let mut addr = end;
        while addr < start {
            // SAFETY: `addr` is a word-aligned address in RAM between the end of static data and the top of the
            // stack (both 4-aligned by cortex-m-rt's linker script); the words below the stack pointer belong to
            // no Rust object, and the volatile read keeps the compiler from assuming anything about them.
            if unsafe { core::ptr::read_volatile(addr as *const u32) } != PAINT {
                break;
            }
            addr += 4;
        }
        start - addr
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------------------------

#[cfg(not(feature = "defmt"))]
mod report {
    use super::*;
    use crate::selfcheck::{Mismatch, Summary};
    use crate::Classified;
    use semihosting::println;

    pub fn start(board: &super::Board, scale: u32) {
        println!(
            "albert-edge firmware on {} ({}), kernel {}",
            board.name,
            board.cpu,
            crate::KERNEL
        );
        println!(
            "meter: {}.{:03} instructions per SysTick tick",
            scale >> 16,
            (u64::from(scale & 0xFFFF) * 1000) >> 16
        );
    }

    pub fn selfcheck_ok(s: &Summary) {
        println!(
            "self-check: gemv_i8_i32 equals the reference on {} cases x {} kernels ({} skipped for memory), \
             gemv_i8_blocks on {} cases x {} kernels ({} skipped)",
            s.cases, s.kernels, s.skipped, s.block_cases, s.block_kernels, s.block_skipped
        );
    }

    pub fn selfcheck_failed(m: &Mismatch) {
        println!(
            "self-check FAILED: kernel {} differs from the reference: (w.len, cols, x.len, out.len) {:?}, block {}, \
             offsets {:?}, out[{}] = {} instead of {}",
            m.kernel, m.case.shape(), m.case.block, m.case.offsets, m.index, m.got, m.expected
        );
    }

    pub fn model(addr: usize, insns: u64) {
        let c = &CONFIG;
        println!(
            "model {}: {} bytes at {:#010x}, validated in {} instructions; vocab {} E {} H {} heads {} I {} layers {} labels {}",
            crate::BLOB_NAME,
            BLOB_BYTES,
            addr,
            insns,
            c.vocab_size,
            c.embedding_size,
            c.hidden_size,
            c.num_attention_heads,
            c.intermediate_size,
            c.num_hidden_layers,
            c.num_labels
        );
    }

    pub fn result(r: &Classified) {
        println!("{r}");
    }

    pub fn bench(seq: usize, tokenize: u64, classify: u64, ticks: u64) {
        println!("bench seq={seq} tokenize_insns={tokenize} classify_insns={classify} classify_ticks={ticks}");
    }

    pub fn memory(stack_used: usize, stack_size: usize) {
        println!(
            "memory arena={ARENA_BYTES} workspace={TOKENIZER_WORKSPACE_BYTES} max_seq={MAX_SEQ} \
             stack_high_water={stack_used} stack_free_at_reset={stack_size}"
        );
    }

    pub fn done(insns: u64) {
        println!("done: {insns} instructions since the meter started");
    }

    pub fn error(e: Error) {
        println!("error: {e}");
    }

    pub fn hard_fault(pc: u32, lr: u32) {
        println!("HardFault at pc={pc:#010x} lr={lr:#010x}");
    }

    pub fn unexpected(irqn: i16) {
        println!("unexpected exception or interrupt {irqn}");
    }
}

#[cfg(feature = "defmt")]
mod report {
    use super::*;
    use crate::selfcheck::{Mismatch, Summary};
    use crate::Classified;
    use defmt_semihosting as _; // the global logger

    pub fn start(board: &super::Board, scale: u32) {
        defmt::info!(
            "albert-edge firmware on {=str} ({=str}), kernel {=str}",
            board.name,
            board.cpu,
            crate::KERNEL
        );
        defmt::info!(
            "meter: {=f32} instructions per SysTick tick",
            scale as f32 / 65536.0
        );
    }

    pub fn selfcheck_ok(s: &Summary) {
        defmt::info!(
            "self-check: gemv_i8_i32 equals the reference on {} cases x {} kernels ({} skipped), gemv_i8_blocks on {} cases x {} kernels ({} skipped)",
            s.cases,
            s.kernels,
            s.skipped,
            s.block_cases,
            s.block_kernels,
            s.block_skipped
        );
    }

    pub fn selfcheck_failed(m: &Mismatch) {
        defmt::error!(
            "self-check FAILED: kernel {=str} (w.len, cols, x.len, out.len) {}, block {}, offsets {}, out[{}] = {} instead of {}",
            m.kernel,
            m.case.shape(),
            m.case.block,
            m.case.offsets,
            m.index,
            m.got,
            m.expected
        );
    }

    pub fn model(addr: usize, insns: u64) {
        defmt::info!(
            "model {=str}: {} bytes at {=usize:#x}, validated in {} instructions; {}",
            crate::BLOB_NAME,
            BLOB_BYTES,
            addr,
            insns,
            CONFIG
        );
    }

    pub fn result(r: &Classified) {
        defmt::info!(
            "result {} label={=str} logits={} bits={} ids={}",
            r.index,
            r.label,
            r.logits,
            Bits(r.logits),
            r.ids
        );
    }

    /// The logits' bit patterns, printed as hex.
    struct Bits<'a>(&'a [f32]);

    impl defmt::Format for Bits<'_> {
        fn format(&self, f: defmt::Formatter) {
            for l in self.0 {
                defmt::write!(f, "{=u32:08x} ", l.to_bits());
            }
        }
    }

    pub fn bench(seq: usize, tokenize: u64, classify: u64, ticks: u64) {
        defmt::info!(
            "bench seq={} tokenize_insns={} classify_insns={} classify_ticks={}",
            seq,
            tokenize,
            classify,
            ticks
        );
    }

    pub fn memory(stack_used: usize, stack_size: usize) {
        defmt::info!(
            "memory arena={} workspace={} max_seq={} stack_high_water={} stack_free_at_reset={}",
            ARENA_BYTES,
            TOKENIZER_WORKSPACE_BYTES,
            MAX_SEQ,
            stack_used,
            stack_size
        );
    }

    pub fn done(insns: u64) {
        defmt::info!("done: {} instructions since the meter started", insns);
    }

    pub fn error(e: Error) {
        defmt::error!("error: {}", e);
    }

    pub fn hard_fault(pc: u32, lr: u32) {
        defmt::error!("HardFault at pc={=u32:#010x} lr={=u32:#010x}", pc, lr);
    }

    pub fn unexpected(irqn: i16) {
        defmt::error!("unexpected exception or interrupt {}", irqn);
    }
}
