//! Every way the module cuts work into jobs, run by every kind of [`Parallel`]: each output once, in its place.

extern crate std;

use super::*;
use std::vec::Vec;

/// Every `Parallel` the tests try: on this thread, a scrambling one, and (with `std`) pools of threads.
fn parallels(pools: &[impl Parallel]) -> Vec<&dyn Parallel> {
    let mut all: Vec<&dyn Parallel> = std::vec![&Sequential, &ReverseHalf];
    all.extend(pools.iter().map(|p| p as &dyn Parallel));
    all
}

#[cfg(feature = "std")]
fn pools() -> Vec<Threads> {
    std::vec![Threads::new(2), Threads::new(4)]
}

#[cfg(not(feature = "std"))]
fn pools() -> Vec<Sequential> {
    Vec::new()
}

/// Output `r` of token `t` is `t * 1000 + r`, wherever the part puts it; tokens start on multiples of `step`.
struct Numbered {
    rows: usize,
    step: usize,
}

impl GemmWork for Numbered {
    fn rows(&self) -> usize {
        self.rows
    }

    fn token_step(&self) -> usize {
        self.step
    }

    fn run(&self, part: GemmPart<'_>) {
        assert_eq!(part.first_token % self.step, 0);
        let rn = part.rows.len().max(1);
        for (t, out) in part.out.chunks_exact_mut(rn).enumerate() {
            for (o, r) in out.iter_mut().zip(part.rows.clone()) {
                assert!(o.is_nan(), "an output computed twice");
                *o = ((part.first_token + t) * 1000 + r) as f32;
            }
        }
    }
}

/// Every split `run_gemm` makes, by every kind of `Parallel`, computes each output once, in its place.
#[test]
fn run_gemm_computes_every_output_once_in_place() {
    let pools = pools();
    for par in parallels(&pools) {
        for (rows, step) in [(40, 1), (40, 4), (7, 2), (16, 1)] {
            for tokens in [0, 1, 2, 5, 9, 33] {
                // With room to stage rows (splits by rows) and without (splits by tokens).
                for stage in [0, tokens * rows] {
                    let mut out = std::vec![f32::NAN; tokens * rows];
                    let mut stage = std::vec![f32::NAN; stage];
                    run_gemm(par, &Numbered { rows, step }, &mut out, &mut stage);
                    let expected: Vec<f32> = (0..tokens * rows)
                        .map(|i| ((i / rows) * 1000 + i % rows) as f32)
                        .collect();
                    assert_eq!(out, expected, "{tokens} tokens, {} threads", par.threads());
                }
            }
        }
    }
}

/// Two rows per token (`pair`), one per token (`index`), and three values of scratch per job.
struct StampRows<'a> {
    pair: &'a mut [f32],
    index: &'a mut [i8],
    scratch: &'a mut [f32],
}

const SCRATCH_PER_JOB: usize = 3;

impl TokenRows for StampRows<'_> {
    fn split_front(&mut self, tokens: usize) -> Self {
        StampRows {
            pair: split_rows(&mut self.pair, tokens, 2),
            index: split_rows(&mut self.index, tokens, 1),
            scratch: split_rows(&mut self.scratch, 1, SCRATCH_PER_JOB),
        }
    }

    fn max_jobs(&self) -> usize {
        self.scratch.len() / SCRATCH_PER_JOB
    }
}

/// Adds 1 to every value of its rows, after checking that each token's rows hold that token's index (as the
/// test fills them), and counts its use of scratch.
struct Stamp;

impl TokenWork<StampRows<'_>> for Stamp {
    fn run(&self, r: StampRows<'_>) {
        // One job's share, or (run on the caller) the whole buffer.
        assert!(
            r.scratch.len() >= SCRATCH_PER_JOB,
            "scratch {}",
            r.scratch.len()
        );
        r.scratch[..SCRATCH_PER_JOB]
            .iter_mut()
            .for_each(|v| *v += 1.0);
        for (pair, index) in r.pair.chunks_exact_mut(2).zip(r.index.iter_mut()) {
            assert!(pair.iter().all(|&v| v == *index as f32));
            pair.iter_mut().for_each(|v| *v += 1.0);
            *index += 1;
        }
    }
}

/// Every token's rows are visited exactly once, with the right index, each job with scratch of its own.
#[test]
fn run_tokens_visits_every_token_once() {
    let pools = pools();
    for par in parallels(&pools) {
        for tokens in [0, 1, 2, 7, 16] {
            for (min, scratch_jobs) in [(1, 8), (2, 8), (1, 1), (3, 2)] {
                let mut pair: Vec<f32> = (0..tokens * 2).map(|i| (i / 2) as f32).collect();
                let mut index: Vec<i8> = (0..tokens).map(|t| t as i8).collect();
                let mut scratch = std::vec![0f32; SCRATCH_PER_JOB * scratch_jobs];
                let rows = StampRows {
                    pair: &mut pair,
                    index: &mut index,
                    scratch: &mut scratch,
                };
                run_tokens(par, tokens, min, rows, &Stamp);
                for t in 0..tokens {
                    assert_eq!(pair[t * 2..t * 2 + 2], [t as f32 + 1.0; 2]);
                    assert_eq!(index[t], t as i8 + 1);
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
