//! [`Threads`]: a small pool of threads that spin between the engine's steps (`std` only).

use super::{Job, Parallel, MAX_JOBS};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use std::vec::Vec;

/// How long an idle worker spins for the next jobs before it sleeps. The engine hands out jobs every few tens of
/// microseconds during a classification; waking a sleeping thread costs about as much again.
const SPIN: Duration = Duration::from_micros(500);

/// Runs the engine's jobs on `n - 1` threads of its own and the calling thread.
///
/// Between jobs its threads spin for a while (half a millisecond) before they sleep: the engine hands
/// out a few jobs per linear layer, hundreds per classification, and waking a sleeping thread each time would
/// cost more than the work. Idle between classifications, they sleep. One [`Parallel::run`] at a time: callers on
/// other threads wait their turn.
///
/// ```
/// use albert_edge::parallel::{Parallel, Threads};
///
/// let threads = Threads::new(4);
/// assert_eq!(threads.threads(), 4);
/// ```
pub struct Threads {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    turn: Mutex<()>,
}

/// What a dispatch publishes to the workers.
struct Shared {
    /// The dispatch: its number (bits 40..64), its job count (bits 24..40) and the next job to claim (bits
    /// 0..24). A claim is one `fetch_add(1)`, so it reads the job count of the same dispatch it claims from.
    claim: AtomicU64,
    /// The dispatch's jobs (`Job<'a>` for the dispatch's `'a`), stored before `claim` publishes it.
    jobs: AtomicPtr<Job<'static>>,
    /// Jobs of the dispatch that have returned.
    done: AtomicUsize,
    /// A job panicked on a worker.
    panicked: AtomicBool,
    stop: AtomicBool,
}

const INDEX_BITS: u32 = 24;
const COUNT_BITS: u32 = 16;

fn split(claim: u64) -> (u64, usize, usize) {
    let index = (claim & ((1 << INDEX_BITS) - 1)) as usize;
    let count = ((claim >> INDEX_BITS) & ((1 << COUNT_BITS) - 1)) as usize;
    (claim >> (INDEX_BITS + COUNT_BITS), count, index)
}

impl Shared {
    /// Claims and runs jobs of the current dispatch until none is left; returns its number.
    fn work(&self) -> u64 {
        loop {
            let (dispatch, count, index) = split(self.claim.fetch_add(1, Ordering::AcqRel));
            if index >= count {
                return dispatch;
            }
            // SAFETY: `index < count` claims job `index` of dispatch `dispatch` for this thread alone: the claim
            // word changes only by this `fetch_add` and by `run` publishing the next dispatch (with index 0),
            // which it does only after all `count` jobs of this one have returned, so no other thread gets this
            // index, and `jobs` (stored before the claim word that this `AcqRel` read) still points at `count`
            // live jobs: `run` does not return, ending their borrow, before `done` reaches `count`.
            let job = unsafe { &mut *self.jobs.load(Ordering::Relaxed).add(index) };
            if panic::catch_unwind(AssertUnwindSafe(|| job.run())).is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

impl Threads {
    /// A pool for `n` threads in all: `n - 1` workers and the caller of [`Parallel::run`] (`n` of 0 or 1: no
    /// workers; more than [`MAX_JOBS`]: [`MAX_JOBS`]; fewer where the system refuses to start more).
    pub fn new(n: usize) -> Self {
        let shared = Arc::new(Shared {
            claim: AtomicU64::new(0),
            jobs: AtomicPtr::new(core::ptr::null_mut()),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        // A thread the system refuses is one fewer: `threads` reports what there is.
        let workers = (1..n.clamp(1, MAX_JOBS))
            .map_while(|i| {
                let shared = Arc::clone(&shared);
                thread::Builder::new()
                    .name(std::format!("albert-edge-{i}"))
                    .spawn(move || worker(&shared))
                    .ok()
            })
            .collect();
        Threads {
            shared,
            workers,
            turn: Mutex::new(()),
        }
    }

    /// A pool with a thread per CPU the system gives this process ([`std::thread::available_parallelism`]).
    pub fn available() -> Self {
        Self::new(thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

fn worker(shared: &Shared) {
    let mut seen = 0;
    loop {
        let mut since = Instant::now();
        let mut spins = 0u32;
        loop {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            let (dispatch, _, _) = split(shared.claim.load(Ordering::Acquire));
            if dispatch != seen {
                break;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && since.elapsed() > SPIN {
                // `run` unparks every worker after publishing, so a dispatch published before this park makes it
                // return at once.
                thread::park();
                since = Instant::now();
            } else {
                core::hint::spin_loop();
            }
        }
        seen = shared.work();
    }
}

impl Parallel for Threads {
    fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    fn run(&self, jobs: &mut [Job<'_>]) {
        if self.workers.is_empty() || jobs.len() <= 1 {
            return jobs.iter_mut().for_each(Job::run);
        }
        // More jobs than a dispatch counts: the rest on this thread afterwards (the engine makes at most
        // `MAX_JOBS`).
        let count = jobs.len().min(MAX_JOBS);
        let _turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        s.jobs.store(jobs.as_mut_ptr().cast(), Ordering::Relaxed);
        s.done.store(0, Ordering::Relaxed);
        let (previous, _, _) = split(s.claim.load(Ordering::Relaxed));
        let dispatch = (previous + 1) & ((1 << (64 - INDEX_BITS - COUNT_BITS)) - 1);
        let word = (dispatch << (INDEX_BITS + COUNT_BITS)) | ((count as u64) << INDEX_BITS);
        s.claim.store(word, Ordering::Release);
        for w in &self.workers {
            w.thread().unpark();
        }
        s.work();
        let since = Instant::now();
        while s.done.load(Ordering::Acquire) < count {
            if since.elapsed() > SPIN {
                thread::yield_now();
            } else {
                core::hint::spin_loop();
            }
        }
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("an albert-edge job panicked on a worker thread");
        }
        jobs[count..].iter_mut().for_each(Job::run);
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for w in &self.workers {
            w.thread().unpark();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl core::fmt::Debug for Threads {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Threads")
            .field("threads", &self.threads())
            .finish()
    }
}

// `Threads` hands `&mut Job` to other threads.
const _: () = {
    const fn send<T: Send>() {}
    send::<Job<'static>>();
};
