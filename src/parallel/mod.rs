//! Sharing the int8 engine's work between threads, without `std` or an allocator in the engine.
//!
//! The engine cuts each step of the layer into [`Job`]s and hands them to a [`Parallel`]:
//!
//! - a linear layer over a tile of tokens: one job per range of tokens (or, for short sequences, of weight rows);
//! - the attention rows, the FFN activation and LayerNorm: one job per range of tokens.
//!
//! Each job writes only its own outputs and reads only data that nobody writes meanwhile. So the results are the
//! same bits however the jobs run: one after another, on several threads, in any order. [`Sequential`] runs them on the calling thread (what [`crate::model::classify`] uses);
//! with `std`, [`Threads`] runs them on its own threads and the caller's.

use crate::kernels::{self, GemmInput};

#[cfg(feature = "std")]
mod threads;
#[cfg(feature = "std")]
pub use threads::Threads;

/// Most jobs one step of the engine is cut into: more threads than this are not used.
pub const MAX_JOBS: usize = 16;

/// Something that runs the engine's [`Job`]s, perhaps several at a time.
///
/// Implementations only decide where and when each job runs: [`Job::run`] does the work, and a job that an
/// implementation leaves out is run afterwards on the calling thread, so no implementation can change the results.
pub trait Parallel: Sync {
    /// How many jobs are worth running at once (the threads available, the caller's included); 1 or less makes
    /// the engine run everything itself, without jobs.
    fn threads(&self) -> usize;

    /// Calls [`Job::run`] on each of `jobs`, in any order, on any threads, and returns when those calls have
    /// returned.
    fn run(&self, jobs: &mut [Job<'_>]);
}

/// Every job on the calling thread, in order: the engine without threads.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sequential;

impl Parallel for Sequential {
    fn threads(&self) -> usize {
        1
    }

    fn run(&self, jobs: &mut [Job<'_>]) {
        jobs.iter_mut().for_each(Job::run);
    }
}

/// A piece of the engine's work, for [`Parallel::run`]. Running it twice does the work once.
pub struct Job<'a> {
    work: Work<'a>,
}

enum Work<'a> {
    /// Nothing (a free slot, or a job that has run).
    None,
    /// [`crate::model`]'s block-scaled linear layer for some of a GEMM input's tokens.
    Linear(Linear<'a>),
    /// Per-token work for a range of tokens.
    Tokens(&'a dyn TokenWork, Rows<'a>),
}

/// Work done token by token (LayerNorm, GELU, an attention row...), on the rows of a range of tokens.
pub(crate) trait TokenWork: Sync {
    /// Does the work for the tokens whose rows `rows` holds.
    fn run(&self, rows: Rows<'_>);
}

/// The rows of a range of tokens in up to three per-token buffers, and scratch for the job.
pub(crate) struct Rows<'a> {
    pub f: &'a mut [f32],
    pub q: &'a mut [i8],
    pub s: &'a mut [f32],
    /// The job's own scratch (empty when the work needs none).
    pub scratch: &'a mut [f32],
}

/// `out[t][r] = (w[r] . x[first + t]) * w_scales[r] + bias[r]` for the tokens `out` holds.
pub(crate) struct Linear<'a> {
    pub w: &'a [i8],
    pub w_scales: &'a [f32],
    pub bias: &'a [f32],
    pub rows: usize,
    pub sums: &'a [i32],
    pub input: &'a GemmInput<'a>,
    pub first: usize,
    pub out: &'a mut [f32],
}

impl Linear<'_> {
    pub(crate) fn run(&mut self) {
        let y = &mut *self.out;
        y.iter_mut().for_each(|y| *y = 0.0);
        kernels::gemm_i8_blocks_from(self.w, self.rows, self.sums, self.input, self.first, y);
        for yt in y.chunks_exact_mut(self.rows.max(1)) {
            for ((y, &s), &b) in yt.iter_mut().zip(self.w_scales).zip(self.bias) {
                *y = *y * s + b;
            }
        }
    }
}

impl<'a> Job<'a> {
    const NONE: Job<'static> = Job { work: Work::None };

    /// Does the job's work (once: the job is empty afterwards).
    pub fn run(&mut self) {
        match core::mem::replace(&mut self.work, Work::None) {
            Work::None => {}
            Work::Linear(mut l) => l.run(),
            Work::Tokens(work, rows) => work.run(rows),
        }
    }
}

/// Fewest weight rows per job when a GEMM is split by rows (the multi-token kernel's rows per step).
const MIN_ROWS: usize = 8;

/// How [`run_linear`] cuts a GEMM into jobs.
#[derive(Clone, Copy)]
enum Split {
    /// `per` tokens each (a multiple of the input's token step).
    Tokens { per: usize },
    /// `per` weight rows each, through the staging buffer.
    Rows { per: usize },
}

/// Runs `linear` (all of `linear.input`'s tokens from `linear.first` that `linear.out` holds) as up to
/// `par.threads()` jobs, each computing some of the outputs:
///
/// * by tokens, ranges that start on the input's [`GemmInput::token_step`], where there are enough of them;
/// * otherwise (short sequences) by weight rows, each job writing its rows for every token to its own part of
///   `stage` (`tokens * rows` values), copied to `out` afterwards; without that room, by tokens anyway.
pub(crate) fn run_linear(par: &dyn Parallel, mut linear: Linear<'_>, stage: &mut [f32]) {
    let rows = linear.rows.max(1);
    let tokens = linear.out.len() / rows;
    let threads = par.threads().clamp(1, MAX_JOBS);
    let step = linear.input.token_step();
    let steps = tokens.div_ceil(step);
    let split = if threads <= 1 || tokens == 0 {
        return linear.run();
    } else if steps < threads && stage.len() >= tokens * rows && rows >= 2 * MIN_ROWS {
        Split::Rows {
            per: rows.div_ceil(threads).next_multiple_of(MIN_ROWS),
        }
    } else if steps > 1 {
        Split::Tokens {
            per: steps.div_ceil(threads) * step,
        }
    } else {
        return linear.run();
    };
    let stage = match split {
        Split::Rows { .. } => &mut stage[..tokens * rows],
        Split::Tokens { .. } => &mut [],
    };
    run_linear_jobs(par, linear, tokens, stage, split);
}

/// [`run_linear`] as jobs: a function of its own so that the jobs take stack only where they are made (firmware,
/// which runs [`Sequential`], never makes them). `linear.out` holds `tokens` tokens; for [`Split::Rows`], `stage`
/// holds as many values.
#[inline(never)]
fn run_linear_jobs(
    par: &dyn Parallel,
    linear: Linear<'_>,
    tokens: usize,
    stage: &mut [f32],
    split: Split,
) {
    let Linear {
        w,
        w_scales,
        bias,
        rows,
        sums,
        input,
        first,
        out,
    } = linear;
    let rows = rows.max(1);
    let mut jobs: [Job; MAX_JOBS] = [Job::NONE; MAX_JOBS];
    let mut n = 0;
    match split {
        Split::Rows { per } => {
            let (cols, nb) = (input.cols(), input.blocks());
            for (k, stage) in stage.chunks_mut(per * tokens).enumerate() {
                let r0 = k * per;
                jobs[k] = Job::from(Linear {
                    w: w.get(r0 * cols..).unwrap_or(&[]),
                    w_scales: w_scales.get(r0..).unwrap_or(&[]),
                    bias: bias.get(r0..).unwrap_or(&[]),
                    rows: stage.len() / tokens,
                    sums: sums.get(r0 * nb..).unwrap_or(&[]),
                    input,
                    first,
                    out: stage,
                });
                n = k + 1;
            }
        }
        Split::Tokens { per } => {
            for (k, out) in out[..tokens * rows].chunks_mut(per * rows).enumerate() {
                jobs[k] = Job::from(Linear {
                    w,
                    w_scales,
                    bias,
                    rows,
                    sums,
                    input,
                    first: first + k * per,
                    out,
                });
                n = k + 1;
            }
        }
    }
    dispatch(par, &mut jobs[..n]);
    if let Split::Rows { per } = split {
        for (k, stage) in stage.chunks(per * tokens).enumerate() {
            let (r0, rn) = (k * per, stage.len() / tokens);
            for (t, part) in stage.chunks_exact(rn).enumerate() {
                out[t * rows + r0..t * rows + r0 + rn].copy_from_slice(part);
            }
        }
    }
}

/// Hands `jobs` to `par`, then runs whatever it left out.
fn dispatch(par: &dyn Parallel, jobs: &mut [Job<'_>]) {
    par.run(jobs);
    jobs.iter_mut().for_each(Job::run);
}

impl<'a> From<Linear<'a>> for Job<'a> {
    fn from(linear: Linear<'a>) -> Self {
        Job {
            work: Work::Linear(linear),
        }
    }
}

/// Runs `work` on `tokens` tokens whose rows are `f` (`per.0` values per token), `q` (`per.1`) and `s` (`per.2`),
/// as up to `par.threads()` jobs over ranges of at least `min` tokens, each with `per.3` values of `scratch` (given
/// `scratch` for that many jobs; otherwise fewer jobs, and with no room for one, the work runs on this thread with
/// `scratch` as it is).
pub(crate) fn run_rows(
    par: &dyn Parallel,
    tokens: usize,
    min: usize,
    (f, q, s, scratch): (&mut [f32], &mut [i8], &mut [f32], &mut [f32]),
    per: (usize, usize, usize, usize),
    work: &dyn TokenWork,
) {
    let room = scratch.len().checked_div(per.3).unwrap_or(MAX_JOBS);
    let jobs = par
        .threads()
        .min(MAX_JOBS)
        .min(room)
        .min(tokens / min.max(1))
        .max(1);
    if jobs <= 1 {
        return work.run(Rows { f, q, s, scratch });
    }
    run_rows_jobs(par, tokens, jobs, (f, q, s, scratch), per, work);
}

/// [`run_rows`] as jobs (a frame of its own, like [`run_linear_jobs`]).
#[inline(never)]
fn run_rows_jobs(
    par: &dyn Parallel,
    tokens: usize,
    jobs: usize,
    (mut f, mut q, mut s, mut scratch): (&mut [f32], &mut [i8], &mut [f32], &mut [f32]),
    per: (usize, usize, usize, usize),
    work: &dyn TokenWork,
) {
    let each = tokens.div_ceil(jobs);
    let mut list: [Job; MAX_JOBS] = [Job::NONE; MAX_JOBS];
    let mut n = 0;
    for (k, job) in list.iter_mut().enumerate() {
        if k * each >= tokens {
            break;
        }
        let count = each.min(tokens - k * each);
        let at = (
            (count * per.0).min(f.len()),
            (count * per.1).min(q.len()),
            (count * per.2).min(s.len()),
            per.3.min(scratch.len()),
        );
        let (f0, f1) = core::mem::take(&mut f).split_at_mut(at.0);
        let (q0, q1) = core::mem::take(&mut q).split_at_mut(at.1);
        let (s0, s1) = core::mem::take(&mut s).split_at_mut(at.2);
        let (c0, c1) = core::mem::take(&mut scratch).split_at_mut(at.3);
        (f, q, s, scratch) = (f1, q1, s1, c1);
        let rows = Rows {
            f: f0,
            q: q0,
            s: s0,
            scratch: c0,
        };
        *job = Job {
            work: Work::Tokens(work, rows),
        };
        n = k + 1;
    }
    dispatch(par, &mut list[..n]);
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    /// A small GEMM split every way `run_linear` splits one, by every kind of `Parallel`, against one job on this
    /// thread: the same bits. Small enough for Miri, which checks `Threads`' claims for data races.
    #[test]
    fn every_split_gives_the_same_bits() {
        let (rows, cols, block) = (40, 12, 4);
        let w: Vec<i8> = (0..rows * cols)
            .map(|i| ((i * 37 % 255) as i32 - 127) as i8) // -127..=127, as the converter quantises weights
            .collect();
        let w_scales: Vec<f32> = (0..rows).map(|r| 0.01 + r as f32 * 1e-3).collect();
        let bias: Vec<f32> = (0..rows).map(|r| r as f32 * 0.5 - 3.0).collect();
        #[cfg(feature = "std")]
        let pools = [Threads::new(2), Threads::new(4)];
        for tokens in [0, 1, 2, 5, 9] {
            let x: Vec<i8> = (0..tokens * cols)
                .map(|i| (i * 91 % 251) as u8 as i8)
                .collect();
            let xs: Vec<f32> = (0..tokens * cols / block)
                .map(|i| 0.1 + i as f32 * 0.01)
                .collect();
            let input = GemmInput::new(&x, cols, block, &xs, tokens, &mut []);
            macro_rules! linear {
                ($out:expr) => {
                    Linear {
                        w: &w,
                        w_scales: &w_scales,
                        bias: &bias,
                        rows,
                        sums: &[],
                        input: &input,
                        first: 0,
                        out: $out,
                    }
                };
            }
            let mut expected = std::vec![0f32; tokens * rows];
            linear!(&mut expected).run(); // one job, on this thread
            #[cfg_attr(not(feature = "std"), allow(unused_mut))]
            let mut parallels: Vec<&dyn Parallel> = std::vec![&Sequential];
            #[cfg(feature = "std")]
            parallels.extend(pools.iter().map(|p| p as &dyn Parallel));
            for par in parallels {
                // With room to stage rows (splits by rows) and without (splits by tokens).
                for stage in [0, tokens * rows] {
                    let mut got = std::vec![f32::NAN; tokens * rows];
                    let mut stage = std::vec![f32::NAN; stage];
                    run_linear(par, linear!(&mut got), &mut stage);
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&got),
                        bits(&expected),
                        "{tokens} tokens, {} threads",
                        par.threads()
                    );
                }
            }
        }
    }

    /// Adds 1 to every value of its rows, after checking that each token's rows hold that token's index (as the
    /// test fills them: `s` holds the index, `f` and `q` repeat it), and counts its use of scratch.
    struct Stamp;

    impl TokenWork for Stamp {
        fn run(&self, r: Rows<'_>) {
            // One job's share, or (run on the caller) the whole buffer.
            assert!(r.scratch.len() >= 3, "scratch {}", r.scratch.len());
            r.scratch[..3].iter_mut().for_each(|v| *v += 1.0);
            let rows = r.f.chunks_exact_mut(2).zip(r.q.chunks_exact_mut(3));
            for ((f, q), s) in rows.zip(r.s.iter_mut()) {
                assert!(f.iter().all(|&v| v == *s) && q.iter().all(|&v| v as f32 == *s));
                f.iter_mut().for_each(|v| *v += 1.0);
                q.iter_mut().for_each(|v| *v += 1);
                *s += 1.0;
            }
        }
    }

    /// Every token's rows are visited exactly once, with the right index, each job with scratch of its own.
    #[test]
    fn run_rows_visits_every_token_once() {
        #[cfg(feature = "std")]
        let pools = [Threads::new(3)];
        let scrambled = ReverseHalf;
        #[cfg_attr(not(feature = "std"), allow(unused_mut))]
        let mut parallels: Vec<&dyn Parallel> = std::vec![&Sequential, &scrambled];
        #[cfg(feature = "std")]
        parallels.extend(pools.iter().map(|p| p as &dyn Parallel));
        for par in parallels {
            for tokens in [0, 1, 2, 7, 16] {
                for (min, scratch_jobs) in [(1, 8), (2, 8), (1, 1), (3, 2)] {
                    let mut f: Vec<f32> = (0..tokens * 2).map(|i| (i / 2) as f32).collect();
                    let mut q: Vec<i8> = (0..tokens * 3).map(|i| (i / 3) as i8).collect();
                    let mut s: Vec<f32> = (0..tokens).map(|t| t as f32).collect();
                    let mut scratch = std::vec![0f32; 3 * scratch_jobs];
                    let bufs = (&mut f[..], &mut q[..], &mut s[..], &mut scratch[..]);
                    run_rows(par, tokens, min, bufs, (2, 3, 1, 3), &Stamp);
                    // Every token's rows seen once, in their place.
                    for t in 0..tokens {
                        assert_eq!(f[t * 2..t * 2 + 2], [t as f32 + 1.0; 2]);
                        assert_eq!(q[t * 3..t * 3 + 3], [t as i8 + 1; 3]);
                        assert_eq!(s[t], t as f32 + 1.0);
                    }
                    // No scratch value is shared by two jobs.
                    assert!(scratch.iter().all(|&v| v <= 1.0), "{scratch:?}");
                }
            }
        }
    }

    /// Runs the jobs last first and leaves out every other one (the engine must run those itself).
    struct ReverseHalf;

    impl Parallel for ReverseHalf {
        fn threads(&self) -> usize {
            4
        }

        fn run(&self, jobs: &mut [Job<'_>]) {
            jobs.iter_mut().rev().step_by(2).for_each(Job::run);
        }
    }
}
