//! The Rust side of `benches/peers.sh`: times the albert-edge int8 engine on a converted blob and tract (fp32) on
//! the same checkpoint's ONNX export, one thread, batch 1, in one process; merges ONNX Runtime's timings (from
//! `benches/peers.py time`) when given; prints the table (median ms and ratios) and optionally writes JSON.
//!
//! ```text
//! cargo run --release -p albert-edge-benches --example peers -- --blob model.blob [--onnx model.onnx]
//!     [--ort ort.json] [--seqs 32,128] [--threads 1,2,4] [--reps 11] [--json out.json]
//! ```
//!
//! `--threads` times albert-edge once per count: 1 is the plain engine, `n > 1` shares its linear layers between
//! `n` threads (`classify_parallel` with `parallel::Threads::new(n)`; rows `albert-edge-int8-<n>t`). The peers always run on one thread.
//!
//! Without `--blob`, the int8 engine runs on a random ALBERT-base-shaped blob (`synthetic::random_model`).

use std::path::PathBuf;
use std::time::Instant;

use albert_edge::format::AlignedBlob;
use albert_edge::model::{classify_parallel, scratch_size_for_speed, Inputs, Precision};
use albert_edge::parallel::{Parallel, Sequential, Threads};
use albert_edge::Model;
use albert_edge_cli::blob::write_blob;
use albert_edge_cli::synthetic::{albert_base_config, random_model};
use serde_json::{json, Value};
use tract_onnx::prelude::*;

/// `[CLS] t_1 .. t_{seq-2} [SEP]`, ordinary ids spread over the vocabulary (the same formula as `peers.py`).
fn peer_ids(seq: usize, vocab: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..seq)
        .map(|t| (5 + (t * 7919) % (vocab - 5)) as u32)
        .collect();
    ids[0] = 2;
    ids[seq - 1] = 3;
    ids
}

/// This process's CPU time (user + system), in seconds.
fn cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; CLOCK_PROCESS_CPUTIME_ID exists on every Unix this runs on.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians of `reps` calls of `f` after `warmup` untimed ones: (wall ms, process CPU ms, min wall ms, max wall ms).
/// On a shared machine the CPU time is the steadier figure: it leaves out the time other processes held the core.
fn time_ms(warmup: usize, reps: usize, mut f: impl FnMut()) -> [f64; 4] {
    for _ in 0..warmup {
        f();
    }
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..reps.max(1) {
        let (t, c) = (Instant::now(), cpu_seconds());
        f();
        cpu.push((cpu_seconds() - c) * 1e3);
        wall.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (min, max) = (
        wall.iter().copied().fold(f64::INFINITY, f64::min),
        wall.iter().copied().fold(0.0, f64::max),
    );
    [median(wall), median(cpu), min, max]
}

struct Args {
    blob: Option<PathBuf>,
    onnx: Option<PathBuf>,
    ort: Option<PathBuf>,
    json: Option<PathBuf>,
    seqs: Vec<usize>,
    threads: Vec<usize>,
    reps: usize,
    warmup: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        blob: None,
        onnx: None,
        ort: None,
        json: None,
        seqs: vec![32, 128],
        threads: vec![1],
        reps: 11,
        warmup: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--blob" => a.blob = Some(value()?.into()),
            "--onnx" => a.onnx = Some(value()?.into()),
            "--ort" => a.ort = Some(value()?.into()),
            "--json" => a.json = Some(value()?.into()),
            "--seqs" => {
                a.seqs = value()?
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|_| format!("bad --seqs {s:?}")))
                    .collect::<Result<_, _>>()?
            }
            "--threads" => {
                a.threads = value()?
                    .split(',')
                    .map(|s| match s.trim().parse() {
                        Ok(n) if n > 0 => Ok(n),
                        _ => Err(format!("bad --threads {s:?}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--reps" => a.reps = value()?.parse().map_err(|_| "bad --reps")?,
            "--warmup" => a.warmup = value()?.parse().map_err(|_| "bad --warmup")?,
            _ => {
                return Err(format!(
                    "unknown argument {flag:?} (see the doc comment of benches/examples/peers.rs)"
                ))
            }
        }
    }
    Ok(a)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    // {engine, seq, median_ms (wall), median_cpu_ms, min_ms, max_ms, runs}
    let mut rows: Vec<Value> = Vec::new();
    let mut push = |engine: &str, seq: usize, [wall, cpu, min, max]: [f64; 4], runs: usize| {
        eprintln!("  {engine:<16} seq {seq:>3}: median {wall:8.2} ms wall, {cpu:8.2} ms CPU");
        rows.push(
            json!({"engine": engine, "seq": seq, "median_ms": wall, "median_cpu_ms": cpu,
                         "min_ms": min, "max_ms": max, "runs": runs}),
        );
    };

    // ---- albert-edge int8: classify with Precision::Int8 in a scratch arena, as an application would
    let blob = match &args.blob {
        Some(path) => AlignedBlob::read(path)?,
        None => AlignedBlob::new(&write_blob(&random_model(&albert_base_config(2), 7, true))?),
    };
    let model = Model::from_bytes(blob.bytes()).map_err(|e| format!("blob: {e}"))?;
    let c = model.config();
    for &threads in &args.threads {
        let pool = Threads::new(threads);
        let par: &dyn Parallel = if threads == 1 { &Sequential } else { &pool };
        let engine = match threads {
            1 => "albert-edge-int8".to_string(),
            n => format!("albert-edge-int8-{n}t"),
        };
        for &seq in &args.seqs {
            let ids = peer_ids(seq, c.vocab_size);
            let mut arena = vec![0u8; scratch_size_for_speed(c, seq, Precision::Int8)];
            let mut logits = vec![0f32; c.num_labels];
            let t = time_ms(args.warmup, args.reps, || {
                classify_parallel(
                    &model,
                    Precision::Int8,
                    &Inputs::ids(&ids),
                    &mut arena,
                    &mut logits,
                    par,
                )
                .unwrap()
            });
            push(&engine, seq, t, args.reps);
        }
    }

    // ---- tract fp32 on the ONNX export, input shapes fixed per sequence length
    if let Some(onnx) = &args.onnx {
        for &seq in &args.seqs {
            let mut m = tract_onnx::onnx().model_for_path(onnx)?;
            for input in 0..3 {
                m = m.with_input_fact(input, i64::fact([1, seq]).into())?;
            }
            let plan = m.into_optimized()?.into_runnable()?;
            let ids: Vec<i64> = peer_ids(seq, c.vocab_size)
                .iter()
                .map(|&x| x as i64)
                .collect();
            let input = |v: Vec<i64>| -> TValue {
                tract_ndarray::Array2::from_shape_vec((1, seq), v)
                    .unwrap()
                    .into_tensor()
                    .into()
            };
            let t = time_ms(args.warmup, args.reps, || {
                plan.run(tvec!(
                    input(ids.clone()),
                    input(vec![1; seq]),
                    input(vec![0; seq])
                ))
                .unwrap();
            });
            push("tract-fp32", seq, t, args.reps);
        }
    }

    // ---- ONNX Runtime, measured by peers.py just before
    let mut ort_version = Value::Null;
    if let Some(path) = &args.ort {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        ort_version = v["onnxruntime"].clone();
        rows.extend(v["results"].as_array().cloned().unwrap_or_default());
    }

    print_table(&rows, &args.seqs);
    if let Some(path) = &args.json {
        let out = json!({"onnxruntime": ort_version, "results": rows});
        std::fs::write(path, serde_json::to_string_pretty(&out)? + "\n")?;
    }
    Ok(())
}

fn print_table(rows: &[Value], seqs: &[usize]) {
    let get = |engine: &str, seq: usize, key: &str| {
        rows.iter()
            .find(|r| r["engine"] == engine && r["seq"] == seq)
            .and_then(|r| r[key].as_f64())
    };
    let engines = ["albert-edge-int8", "ort-int8", "tract-fp32", "ort-fp32"];
    print!("\n| engine (1 thread, batch 1) |");
    seqs.iter()
        .for_each(|s| print!(" seq {s}: CPU ms | wall ms | albert-edge speed-up |"));
    print!("\n|---|");
    seqs.iter().for_each(|_| print!("---:|---:|---:|"));
    println!();
    for e in engines {
        if seqs.iter().all(|&s| get(e, s, "median_ms").is_none()) {
            continue;
        }
        print!("| {e} |");
        for &s in seqs {
            let (cpu, wall) = (get(e, s, "median_cpu_ms"), get(e, s, "median_ms"));
            let ours = get("albert-edge-int8", s, "median_cpu_ms");
            let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
            let ratio = match (cpu, ours) {
                (Some(c), Some(o)) if e != "albert-edge-int8" => format!("{:.2}x", c / o),
                _ => String::new(),
            };
            print!(" {} | {} | {ratio} |", fmt(cpu), fmt(wall));
        }
        println!();
    }
    println!(
        "\nMedians. speed-up = the engine's CPU ms / albert-edge int8's CPU ms (> 1: albert-edge is faster)."
    );
}
