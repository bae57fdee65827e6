//! A long-lived albert-edge int8 process for interleaved peer timings (`benches/x86-peers.py`): reads one request
//! per line on stdin, runs one classification, answers one line on stdout.
//!
//! ```text
//! cargo run --release -p albert-edge-benches --example serve_ids -- model.blob
//! request:  THREADS ID ID ...        (THREADS 1: `Sequential`; n > 1: a `parallel::Threads` pool of n, kept)
//! answer:   WALL_MS CPU_MS LOGIT ... (the `classify_parallel` call alone; CPU time of the whole process)
//! ```
//!
//! Attention mask all ones, token types all 0. The scratch arena (per sequence length) and the thread pools are
//! made on first use and kept, as an application would keep them; an empty line or end of input ends the process.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::time::Instant;

use albert_edge::format::AlignedBlob;
use albert_edge::model::{classify_parallel, scratch_size_for_speed, Inputs, Precision};
use albert_edge::parallel::{Parallel, Sequential, Threads};
use albert_edge::Model;

/// This process's CPU time (user + system, all threads), in seconds.
fn cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; CLOCK_PROCESS_CPUTIME_ID exists on every Unix this runs on.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: serve_ids MODEL.blob (requests on stdin)")?;
    let blob = AlignedBlob::read(path)?;
    let model = Model::from_bytes(blob.bytes()).map_err(|e| format!("blob: {e}"))?;
    let c = model.config();
    let mut pools: HashMap<usize, Threads> = HashMap::new();
    let mut arenas: HashMap<usize, Vec<u8>> = HashMap::new();
    let mut logits = vec![0f32; c.num_labels];
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        let Some(threads) = words.next() else { break };
        let threads: usize = threads.parse().map_err(|_| "bad thread count")?;
        let ids: Vec<u32> = words
            .map(|w| w.parse().map_err(|_| format!("bad id {w:?}")))
            .collect::<Result<_, _>>()?;
        if threads > 1 && !pools.contains_key(&threads) {
            pools.insert(threads, Threads::new(threads));
        }
        let par: &dyn Parallel = match pools.get(&threads) {
            Some(pool) => pool,
            None => &Sequential,
        };
        let arena = arenas
            .entry(ids.len())
            .or_insert_with(|| vec![0u8; scratch_size_for_speed(c, ids.len(), Precision::Int8)]);
        let (t, cpu) = (Instant::now(), cpu_seconds());
        classify_parallel(
            &model,
            Precision::Int8,
            &Inputs::ids(&ids),
            arena,
            &mut logits,
            par,
        )
        .map_err(|e| format!("classify: {e}"))?;
        let (cpu, wall) = ((cpu_seconds() - cpu) * 1e3, t.elapsed().as_secs_f64() * 1e3);
        write!(out, "{wall:.4} {cpu:.4}")?;
        for l in &logits {
            write!(out, " {l}")?;
        }
        writeln!(out)?;
        out.flush()?;
    }
    Ok(())
}
