//! Sharing the int8 engine's work between threads, without `std` or an allocator in the engine.
//!
//! This module cuts ranges and runs jobs; the arithmetic stays in [`crate::model`], which describes each step of
//! the layer through one of two interfaces and hands it to a [`Parallel`]:
//!
//! - a matrix product over a tile of tokens (`GemmWork`): one job per range of tokens (or, for short sequences, of
//!   weight rows), see `run_gemm`;
//! - work done token by token (`TokenWork` on per-token buffers, `TokenRows`): the attention rows, the FFN
//!   activation, quantisation and LayerNorm, one job per range of tokens, see `run_tokens`.
//!
//! Each job writes only its own outputs and reads only data that nobody writes meanwhile. So the results are the
//! same bits however the jobs run: one after another, on several threads, in any order. [`Sequential`] runs them on
//! the calling thread (what [`crate::model::classify`] uses); with `std`, [`Threads`] runs them on its own threads
//! and the caller's.

use core::ops::Range;

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
    task: Option<&'a mut (dyn Task + Send + 'a)>,
}

impl Job<'_> {
    const NONE: Self = Job { task: None };

    /// Does the job's work (once: the job is empty afterwards).
    pub fn run(&mut self) {
        if let Some(task) = self.task.take() {
            task.run_once();
        }
    }
}

/// What a [`Job`] points at: a piece of work with its own outputs, done at most once.
trait Task {
    fn run_once(&mut self);
}

/// Hands `jobs` to `par`, then runs whatever it left out.
fn dispatch(par: &dyn Parallel, jobs: &mut [Job<'_>]) {
    par.run(jobs);
    jobs.iter_mut().for_each(Job::run);
}

/// Makes a [`Job`] of each task in `tasks` and dispatches them.
fn dispatch_tasks<T: Task + Send>(par: &dyn Parallel, tasks: &mut [T]) {
    let mut jobs: [Job; MAX_JOBS] = [Job::NONE; MAX_JOBS];
    let n = tasks.len().min(MAX_JOBS);
    for (job, task) in jobs.iter_mut().zip(tasks.iter_mut()) {
        job.task = Some(task);
    }
    dispatch(par, &mut jobs[..n]);
}

// ---------------------------------------------------------------------------------------------------------------
// Matrix products: ranges of tokens or of weight rows
// ---------------------------------------------------------------------------------------------------------------

/// A matrix product over a tile of tokens whose outputs can be computed in parts ([`GemmPart`]): some weight rows
/// for some tokens, each part the same bits as the whole product gives those outputs.
pub(crate) trait GemmWork: Sync {
    /// Weight rows, that is outputs per token.
    fn rows(&self) -> usize;

    /// Parts split by tokens start on multiples of this (the kernel's cheap split point; at least 1).
    fn token_step(&self) -> usize;

    /// Computes `part`'s outputs.
    fn run(&self, part: GemmPart<'_>);
}

/// The outputs of weight rows `rows` for the tokens from `first_token` that `out` holds: token `t`'s in
/// `out[t * rows.len()..][..rows.len()]`.
pub(crate) struct GemmPart<'a> {
    pub rows: Range<usize>,
    pub first_token: usize,
    pub out: &'a mut [f32],
}

/// A [`GemmPart`] as a job.
struct GemmTask<'a> {
    work: &'a dyn GemmWork,
    part: Option<GemmPart<'a>>,
}

impl Task for GemmTask<'_> {
    fn run_once(&mut self) {
        if let Some(part) = self.part.take() {
            self.work.run(part);
        }
    }
}

/// Fewest weight rows per job when a GEMM is split by rows (the multi-token kernel's rows per step).
const MIN_ROWS: usize = 8;

/// How [`run_gemm`] cuts a GEMM into jobs.
#[derive(Clone, Copy)]
enum Split {
    /// `per` tokens each (a multiple of the work's token step).
    Tokens { per: usize },
    /// `per` weight rows each, through the staging buffer.
    Rows { per: usize },
}

/// Runs `work` for all the tokens that `out` holds (`work.rows()` outputs each) as up to `par.threads()` jobs,
/// each computing some of the outputs:
///
/// * by tokens, ranges that start on the work's [`GemmWork::token_step`], where there are enough of them;
/// * otherwise (short sequences) by weight rows, each job writing its rows for every token to its own part of
///   `stage` (`tokens * rows` values), copied to `out` afterwards; without that room, by tokens anyway.
pub(crate) fn run_gemm(
    par: &dyn Parallel,
    work: &dyn GemmWork,
    out: &mut [f32],
    stage: &mut [f32],
) {
    let rows = work.rows().max(1);
    let tokens = out.len() / rows;
    let threads = par.threads().clamp(1, MAX_JOBS);
    let step = work.token_step().max(1);
    let steps = tokens.div_ceil(step);
    let whole = |out| {
        work.run(GemmPart {
            rows: 0..work.rows(),
            first_token: 0,
            out,
        })
    };
    let split = if threads <= 1 || tokens == 0 {
        return whole(out);
    } else if steps < threads && stage.len() >= tokens * rows && rows >= 2 * MIN_ROWS {
        Split::Rows {
            per: rows.div_ceil(threads).next_multiple_of(MIN_ROWS),
        }
    } else if steps > 1 {
        Split::Tokens {
            per: steps.div_ceil(threads) * step,
        }
    } else {
        return whole(out);
    };
    let stage = match split {
        Split::Rows { .. } => &mut stage[..tokens * rows],
        Split::Tokens { .. } => &mut [],
    };
    run_gemm_jobs(par, work, &mut out[..tokens * rows], stage, split);
}

/// [`run_gemm`] as jobs: a function of its own so that the jobs take stack only where they are made (firmware,
/// which runs [`Sequential`], never makes them). `out` holds whole tokens; for [`Split::Rows`], `stage` holds as
/// many values.
#[inline(never)]
fn run_gemm_jobs(
    par: &dyn Parallel,
    work: &dyn GemmWork,
    out: &mut [f32],
    stage: &mut [f32],
    split: Split,
) {
    let rows = work.rows().max(1);
    let tokens = out.len() / rows;
    let mut tasks: [GemmTask; MAX_JOBS] = core::array::from_fn(|_| GemmTask { work, part: None });
    let mut n = 0;
    match split {
        Split::Rows { per } => {
            for (k, stage) in stage.chunks_mut(per * tokens).enumerate() {
                let r0 = k * per;
                tasks[k].part = Some(GemmPart {
                    rows: r0..r0 + stage.len() / tokens,
                    first_token: 0,
                    out: stage,
                });
                n = k + 1;
            }
        }
        Split::Tokens { per } => {
            for (k, out) in out.chunks_mut(per * rows).enumerate() {
                tasks[k].part = Some(GemmPart {
                    rows: 0..work.rows(),
                    first_token: k * per,
                    out,
                });
                n = k + 1;
            }
        }
    }
    dispatch_tasks(par, &mut tasks[..n]);
    if let Split::Rows { per } = split {
        for (k, stage) in stage.chunks(per * tokens).enumerate() {
            let (r0, rn) = (k * per, stage.len() / tokens);
            for (t, part) in stage.chunks_exact(rn).enumerate() {
                out[t * rows + r0..t * rows + r0 + rn].copy_from_slice(part);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Token-by-token work: ranges of tokens
// ---------------------------------------------------------------------------------------------------------------

/// Per-token buffers holding the rows of a range of tokens (and perhaps scratch for the work), which
/// [`run_tokens`] cuts between tokens so that each job gets rows of its own.
pub(crate) trait TokenRows: Send + Sized {
    /// Cuts off the rows of the first `tokens` tokens (what is left, where fewer are), with scratch for one job;
    /// `self` keeps the rest.
    fn split_front(&mut self, tokens: usize) -> Self;

    /// Most jobs whose scratch these buffers hold ([`MAX_JOBS`] where the work needs none).
    fn max_jobs(&self) -> usize {
        MAX_JOBS
    }
}

/// Work done token by token (LayerNorm, GELU, an attention row...) on the rows `R` of a range of tokens.
pub(crate) trait TokenWork<R>: Sync {
    /// Does the work for the tokens whose rows `rows` holds.
    fn run(&self, rows: R);
}

/// Cuts off the first `tokens` rows of `width` values each from the front of `buf` (all of `buf`, where it holds
/// fewer): a helper for [`TokenRows::split_front`].
pub(crate) fn split_rows<'a, T>(buf: &mut &'a mut [T], tokens: usize, width: usize) -> &'a mut [T] {
    let at = tokens.saturating_mul(width).min(buf.len());
    let (front, back) = core::mem::take(buf).split_at_mut(at);
    *buf = back;
    front
}

/// Rows of a range of tokens as a job.
struct TokenTask<'a, R> {
    work: &'a dyn TokenWork<R>,
    rows: Option<R>,
}

impl<R> Task for TokenTask<'_, R> {
    fn run_once(&mut self) {
        if let Some(rows) = self.rows.take() {
            self.work.run(rows);
        }
    }
}

/// Runs `work` on the `tokens` tokens whose rows `rows` holds, as up to `par.threads()` jobs over ranges of at
/// least `min_per_job` tokens (and no more jobs than `rows` has scratch for; with room for one or none, the work
/// runs on this thread with `rows` as they are).
pub(crate) fn run_tokens<R: TokenRows>(
    par: &dyn Parallel,
    tokens: usize,
    min_per_job: usize,
    rows: R,
    work: &dyn TokenWork<R>,
) {
    let jobs = par
        .threads()
        .min(MAX_JOBS)
        .min(rows.max_jobs())
        .min(tokens / min_per_job.max(1))
        .max(1);
    if jobs <= 1 {
        return work.run(rows);
    }
    run_tokens_jobs(par, tokens, jobs, rows, work);
}

/// [`run_tokens`] as jobs (a frame of its own, like [`run_gemm_jobs`]).
#[inline(never)]
fn run_tokens_jobs<R: TokenRows>(
    par: &dyn Parallel,
    tokens: usize,
    jobs: usize,
    mut rows: R,
    work: &dyn TokenWork<R>,
) {
    let each = tokens.div_ceil(jobs);
    let mut tasks: [TokenTask<R>; MAX_JOBS] =
        core::array::from_fn(|_| TokenTask { work, rows: None });
    let mut n = 0;
    for (k, task) in tasks.iter_mut().enumerate() {
        if k * each >= tokens {
            break;
        }
        task.rows = Some(rows.split_front(each.min(tokens - k * each)));
        n = k + 1;
    }
    dispatch_tasks(par, &mut tasks[..n]);
}

#[cfg(test)]
mod tests;
