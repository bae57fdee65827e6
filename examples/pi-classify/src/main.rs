//! Classify sentences on a Raspberry Pi (or any Linux machine) with an albert-edge model blob.
//!
//! ```text
//! pi-classify MODEL.blob [TEXT]...        one classification per TEXT; with none, one per line of stdin
//! pi-classify MODEL.blob --ids [IDS]...   token ids ("2 10975 3") instead of text (blobs without a tokenizer)
//! ```
//!
//! Build it for a Pi with one command, e.g. `cargo build --release -p pi-classify --target
//! aarch64-unknown-linux-gnu` (docs/raspberry-pi.md lists the flags for each model). Everything the model needs
//! is allocated once, up front: the blob, one scratch arena sized by `scratch_size`, and the tokenizer workspace.

use std::error::Error;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use albert_edge::format::AlignedBlob;
use albert_edge::model::{classify_parallel, is_int8, scratch_size_for_speed, Inputs, Precision};
use albert_edge::parallel::{Parallel, Threads};
use albert_edge::Model;

const USAGE: &str = "\
usage: pi-classify MODEL.blob [OPTIONS] [INPUT]...

Classifies each INPUT (or, with none, each line of stdin) and prints the label, the probability and logit of
every label, the logits' exact bit patterns, and the latency.

options:
  --ids          inputs are token ids (\"2 10975 3\", spaces or commas), including [CLS] and [SEP]; needed
                 for blobs without a tokenizer section
  --max-len N    truncate text to N tokens, [CLS] and [SEP] included (default: the model's maximum)
  --fp32         run the f32 reference instead of the int8 engine
  --repeat N     run the model N times per input and report the fastest and the mean (default 1)
  --threads N    share the int8 engine's work between N threads (default 1; 0: one per CPU);
                 the logits are the same bits for every N
  -q, --quiet    print only the label and logits lines
";

/// Command-line options.
struct Options {
    blob: String,
    inputs: Vec<String>,
    ids: bool,
    max_len: Option<usize>,
    fp32: bool,
    repeat: usize,
    threads: usize,
    quiet: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        blob: String::new(),
        inputs: Vec::new(),
        ids: false,
        max_len: None,
        fp32: false,
        repeat: 1,
        threads: 1,
        quiet: false,
    };
    let number = |args: &mut dyn Iterator<Item = String>, flag: &str| -> Result<usize, String> {
        let v = args.next().ok_or(format!("{flag} needs a number"))?;
        v.parse::<usize>()
            .map_err(|_| format!("{flag}: {v:?} is not a non-negative integer"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--ids" => o.ids = true,
            "--fp32" => o.fp32 = true,
            "-q" | "--quiet" => o.quiet = true,
            "--max-len" => o.max_len = Some(number(&mut args, "--max-len")?),
            "--repeat" => o.repeat = number(&mut args, "--repeat")?.max(1),
            "--threads" => o.threads = number(&mut args, "--threads")?,
            "--" => o.inputs.extend(&mut args),
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            _ if o.blob.is_empty() => o.blob = a,
            _ => o.inputs.push(a),
        }
    }
    if o.blob.is_empty() {
        return Err("missing MODEL.blob".into());
    }
    Ok(o)
}

/// Which int8 kernels albert-edge runs here (fixed at build time on ARM, detected once on x86-64).
fn kernel() -> &'static str {
    use albert_edge::kernels::simd::{isa, Isa};
    match isa() {
        Isa::NeonDot => "NEON sdot (aarch64 + dotprod)",
        Isa::Neon if cfg!(target_arch = "aarch64") => "NEON smull/sadalp (aarch64)",
        Isa::Neon => "NEON vmull/vpadal (armv7)",
        Isa::Avx512Vnni => "AVX-512 VNNI (x86-64)",
        Isa::Avx512 | Isa::Avx2 => "AVX2 (x86-64)",
        Isa::Dsp => "Cortex-M DSP",
        Isa::Helium => "Helium",
        Isa::Reference => "reference (portable Rust)",
    }
}

/// Parses space- or comma-separated token ids into `ids`; returns how many.
fn parse_ids(text: &str, ids: &mut [u32]) -> Result<usize, String> {
    let (mut n, max) = (0, ids.len());
    for s in text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
    {
        let id = s
            .parse::<u32>()
            .map_err(|_| format!("{s:?} is not a token id"))?;
        *ids.get_mut(n)
            .ok_or(format!("more than {max} token ids (the model's maximum)"))? = id;
        n += 1;
    }
    if n == 0 {
        return Err("no token ids on this input".into());
    }
    Ok(n)
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l)) as f64;
    let e: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

fn run(o: Options) -> Result<(), Box<dyn Error>> {
    let blob = AlignedBlob::read(&o.blob).map_err(|e| format!("cannot read {}: {e}", o.blob))?;
    let model = Model::from_bytes(blob.bytes()).map_err(|e| format!("{}: {e}", o.blob))?;
    let c = *model.config();
    let precision = if o.fp32 {
        Precision::F32
    } else if is_int8(&model) {
        Precision::Int8
    } else {
        eprintln!(
            "note: {} holds fp32 weights; running the f32 reference",
            o.blob
        );
        Precision::F32
    };
    let tokenizer = match (o.ids, model.tokenizer()) {
        (true, _) => None,
        (false, Some(tokenizer)) => Some(tokenizer),
        (false, None) => {
            return Err(format!(
                "{} carries no tokenizer; pass token ids with --ids \"2 10975 3\"",
                o.blob
            )
            .into())
        }
    };
    let max_len = o
        .max_len
        .unwrap_or(c.max_position_embeddings)
        .min(c.max_position_embeddings);

    // Everything the model needs, allocated once.
    let mut arena = vec![0u8; scratch_size_for_speed(&c, max_len, precision)];
    let mut ids = vec![0u32; max_len]; // (max_len)
    let mut type_ids = vec![0u32; max_len]; // (max_len), stays 0 for --ids
    let mut logits = vec![0f32; c.num_labels];
    let mut workspace = Vec::new();
    // One thread: no workers; the pool then runs every job on this thread, as `Sequential` would.
    let threads = match o.threads {
        0 => Threads::available(),
        n => Threads::new(n),
    };
    let par: &dyn Parallel = &threads;

    if !o.quiet {
        eprintln!(
            "model: {} (hidden {}, {} layers, {} labels), {:?}, kernel: {}, arena {} bytes, {} thread{}",
            o.blob,
            c.hidden_size,
            c.num_hidden_layers,
            c.num_labels,
            precision,
            kernel(),
            arena.len(),
            par.threads(),
            if par.threads() == 1 { "" } else { "s" },
        );
    }

    let inputs: Box<dyn Iterator<Item = std::io::Result<String>>> = if o.inputs.is_empty() {
        Box::new(std::io::stdin().lock().lines())
    } else {
        Box::new(o.inputs.iter().cloned().map(Ok))
    };
    let mut out = std::io::stdout().lock();
    for line in inputs {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let t0 = Instant::now();
        let n = match &tokenizer {
            None => parse_ids(&line, &mut ids)?,
            Some(tok) => {
                let need = tok.workspace_size(line.len());
                if workspace.len() < need {
                    workspace.resize(need, 0); // grows only for a longer line than any before
                }
                tok.encode(
                    &line,
                    None,
                    max_len,
                    &mut workspace,
                    &mut ids,
                    &mut type_ids,
                )
                .map_err(|e| format!("tokenizer: {e}"))?
            }
        };
        let tokenize = t0.elapsed();
        let inputs = Inputs {
            input_ids: &ids[..n],
            token_type_ids: &type_ids[..n],
            attention_mask: &[],
        };
        let mut best = Duration::MAX;
        let mut total = Duration::ZERO;
        for _ in 0..o.repeat {
            let t = Instant::now();
            classify_parallel(&model, precision, &inputs, &mut arena, &mut logits, par)?;
            let dt = t.elapsed();
            best = best.min(dt);
            total += dt;
        }

        let p = softmax(&logits);
        let top = (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b });
        if !o.quiet {
            writeln!(out, "input: {line} ({n} tokens)")?;
        }
        writeln!(out, "label: {}", model.label(top))?;
        if !o.quiet {
            let width = (0..p.len())
                .map(|i| model.label(i).len())
                .max()
                .unwrap_or(0);
            for (i, (&pi, &l)) in p.iter().zip(&logits).enumerate() {
                writeln!(out, "  {:width$}  p={pi:.6}  logit={l:?}", model.label(i))?;
            }
        }
        // `{:?}` prints the shortest text that reads back as the same f32; the hex is the exact bits.
        let bits: Vec<String> = logits
            .iter()
            .map(|l| format!("{:08x}", l.to_bits()))
            .collect();
        writeln!(out, "logits: {logits:?} bits: [{}]", bits.join(", "))?;
        if !o.quiet {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let mean = total / o.repeat as u32;
            write!(out, "latency: model {:.3} ms", ms(best))?;
            if o.repeat > 1 {
                write!(out, " (fastest of {}; mean {:.3} ms)", o.repeat, ms(mean))?;
            }
            match tokenizer {
                Some(_) => writeln!(out, ", tokenizer {:.3} ms", ms(tokenize))?,
                None => writeln!(out)?,
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}\n");
            }
            eprint!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    match run(o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
