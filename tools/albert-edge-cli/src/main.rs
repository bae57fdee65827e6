//! `albert-edge`: convert Hugging Face ALBERT checkpoints to model blobs, inspect blobs, classify on the host.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use albert_edge::format::DType;
use albert_edge::Model;
use albert_edge_cli::builtin;
use albert_edge_cli::classify::{self, PrecisionArg};
use albert_edge_cli::common;
use albert_edge_cli::console::{self, escape_control, StdoutError};
use albert_edge_cli::convert::{self, ConvertOptions, Rounding, WeightsMode};
use albert_edge_cli::eval;
use albert_edge_cli::gptq::{ClipSearch, GptqOptions, GptqOrder};
use albert_edge_cli::inspect;
use albert_edge_cli::textfile;
use anyhow::{anyhow, bail, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "albert-edge",
    version,
    about = "int8 ALBERT sentence classifiers for Raspberry Pi and Cortex-M"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--gptq-order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum GptqOrderArg {
    Natural,
    Act,
}

/// `--clip-search`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ClipArg {
    Off,
    Diag,
    Gptq,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a Hugging Face AlbertForSequenceClassification directory to a model blob.
    Convert {
        /// Checkpoint directory: config.json, model.safetensors (or pytorch_model.bin) and spiece.model.
        hf_dir: PathBuf,
        /// The blob to write (atomically: it appears complete or not at all).
        #[arg(short, long)]
        output: PathBuf,
        /// How weight matrices are stored.
        #[arg(long, value_enum, default_value_t = WeightsMode::Int8)]
        weights: WeightsMode,
        /// Calibration sentences for GPTQ rounding: a TSV with a `sentence` column (header line) or plain text,
        /// one sentence per line. Default: 256 built-in SST-2 train sentences.
        #[arg(long, value_name = "FILE", conflicts_with = "no_calibrate")]
        calibrate: Option<PathBuf>,
        /// Most calibration tokens to run, whole sentences in order (0: all). Default: a compute budget that
        /// runs the whole built-in set for small models and about 700 tokens for ALBERT-base.
        #[arg(long, value_name = "N")]
        calibration_tokens: Option<usize>,
        /// Round int8 weights to nearest, without calibration (same as --rounding nearest).
        #[arg(long)]
        no_calibrate: bool,
        /// How int8 weight matrices are rounded.
        #[arg(long, value_enum, default_value_t = Rounding::Gptq)]
        rounding: Rounding,
        /// GPTQ's damping: this fraction of the mean diagonal of each layer's input Gram matrix is added to its
        /// diagonal (QUANTIZATION.md section 3).
        #[arg(long, value_name = "F", default_value_t = GptqOptions::default().damp)]
        gptq_damp: f64,
        /// The order in which GPTQ rounds each matrix's columns: input order, or decreasing calibrated energy
        /// (act-order).
        #[arg(long, value_enum, default_value_t = GptqOrderArg::Natural)]
        gptq_order: GptqOrderArg,
        /// How each weight row's scale is chosen: max-abs (off), the diag(H)-weighted round-to-nearest error
        /// over clipped candidates (diag), or GPTQ's own output error over clipped candidates (gptq).
        #[arg(long, value_enum, default_value_t = ClipArg::Off)]
        clip_search: ClipArg,
        /// Side columns absorb GPTQ's error feedback: rounded last, kept f32, against the full XᵀX (false: they
        /// keep the checkpoint's values and are decoupled from the rounding).
        #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
        side_feedback: bool,
        /// Leave the NORMAL pieces' strings out of the tokenizer section (about 370 KB less for ALBERT's 30k
        /// vocabulary; for microcontrollers). Encoding is identical; only id-to-piece lookups are lost.
        #[arg(long)]
        compact_tokenizer: bool,
        /// Outlier channels: a linear layer's input channel whose largest value on the calibration sentences
        /// exceeds R times the median channel's keeps its weights in f32 (a "side column"), out of the int8
        /// arithmetic; at most an eighth of the inputs, 16 per matrix. 0 turns it off; needs calibration (GPTQ).
        #[arg(long, value_name = "R", default_value_t = convert::DEFAULT_OUTLIER_RATIO)]
        outlier_ratio: f32,
    },
    /// Print a blob's config, labels, tensors, section sizes and scratch memory.
    Inspect {
        /// The model blob.
        blob: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Classify one input (text, or token ids with --ids) and print the label, probabilities and time taken.
    ///
    /// `classify "text"` without a blob uses the built-in model (models/sst2-albert-pi.blob, embedded at build
    /// time when it exists). The first positional argument is the blob if it names an existing file or ends
    /// with `.blob`; otherwise it is the text.
    Classify {
        /// [BLOB] TEXT: the model blob (optional: the built-in model) and the sentence to classify (needs a blob
        /// with a tokenizer section). With --ids: just [BLOB].
        #[arg(value_name = "[BLOB] TEXT", num_args = 0..=2)]
        positional: Vec<String>,
        /// Second sentence of a pair.
        #[arg(long, conflicts_with = "ids")]
        pair: Option<String>,
        /// Token ids including [CLS] and [SEP], space-separated: "2 10975 3".
        #[arg(long)]
        ids: Option<String>,
        /// Token type ids for --ids (default all 0), space-separated.
        #[arg(long, requires = "ids")]
        type_ids: Option<String>,
        /// Arithmetic (default: int8 for an int8 blob, else fp32).
        #[arg(long, value_enum)]
        precision: Option<PrecisionArg>,
        /// One JSON object {"label", "probabilities", "logits"} instead of text (no timing).
        #[arg(long)]
        json: bool,
        /// Share the int8 engine's work between N threads (0: one per CPU). The logits are the same for any N.
        /// Pays off for large models such as ALBERT-base; on small ones (the built-in model) the hand-offs can
        /// cost more than they save.
        #[arg(long, value_name = "N", default_value_t = 1)]
        threads: usize,
    },
    /// Accuracy on a labelled TSV: the int8 engine and the fp32 reference on every sentence, their argmax
    /// agreement and mean |logit difference|, and int8 throughput.
    ///
    /// For an int8 blob the fp32 reference runs f32 activations over the dequantised int8 weights (the same
    /// weights, so the figures isolate activation quantisation). For an fp32 blob only the fp32 reference runs
    /// and the int8 figures are null. Throughput times tokenization + the int8 forward pass only.
    Eval {
        /// The model blob (with a tokenizer section).
        blob: PathBuf,
        /// TSV with a header and `sentence` and `label` (integer id) columns, e.g. SST-2's dev.tsv.
        tsv: PathBuf,
        /// Evaluate only the first N rows.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// One JSON object {"n", "accuracy", "accuracy_fp32", "agreement", "mean_abs_logit_delta",
        /// "sentences_per_second", "timed", "threads"} instead of text.
        #[arg(long)]
        json: bool,
        /// Share the int8 engine's work on each sentence between N threads (0: one per CPU). The logits, and so
        /// the accuracy figures, are the same for any N. Pays off for large models such as ALBERT-base.
        #[arg(long, value_name = "N", default_value_t = 1)]
        threads: usize,
    },
    /// Print the token ids of each input, one line each, space-separated, [CLS] and [SEP] included.
    ///
    /// Uses the blob's own tokenizer, truncating to max_position_embeddings (longest first for pairs).
    Tokenize {
        /// The model blob (with a tokenizer section).
        blob: PathBuf,
        /// Texts to tokenize, one output line each.
        texts: Vec<String>,
        /// Also read texts from FILE, one per line ("-" for standard input).
        #[arg(long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// Second sentence of a pair, used with every text.
        #[arg(long)]
        pair: Option<String>,
    },
}

fn parse_model<'a>(bytes: &'a [u8], path: &std::path::Path) -> Result<Model<'a>> {
    Model::from_bytes(bytes).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// `classify`'s positionals: `[BLOB] TEXT` (or `[BLOB]` with `--ids`). A first argument that is an existing file
/// or ends with `.blob` is the blob; no blob means the built-in model.
fn split_classify_args(
    mut positional: Vec<String>,
    with_ids: bool,
) -> Result<(Option<PathBuf>, Option<String>)> {
    let is_blob = |s: &str| s.ends_with(".blob") || Path::new(s).is_file();
    match (positional.len(), with_ids) {
        (0, true) => Ok((None, None)),
        (0, false) => bail!("give a TEXT to classify (and optionally a BLOB before it), or --ids"),
        (1, true) if is_blob(&positional[0]) => Ok((Some(positional.remove(0).into()), None)),
        (1, true) => bail!(
            "{:?} is not a blob file; with --ids give only the BLOB (or nothing for the built-in model)",
            positional[0]
        ),
        (1, false) if is_blob(&positional[0]) => bail!(
            "give the TEXT to classify after the blob {}, or --ids",
            positional[0]
        ),
        (1, false) => Ok((None, positional.pop())),
        (_, true) => bail!("--ids takes no TEXT; give only the BLOB (or nothing for the built-in model)"),
        _ => {
            let text = positional.pop();
            Ok((Some(positional.remove(0).into()), text))
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Convert {
            hf_dir,
            output,
            weights,
            calibrate,
            calibration_tokens,
            no_calibrate,
            rounding,
            compact_tokenizer,
            outlier_ratio,
            gptq_damp,
            gptq_order,
            clip_search,
            side_feedback,
        } => {
            if !(gptq_damp >= 0.0 && gptq_damp.is_finite()) {
                bail!("--gptq-damp {gptq_damp}: must be a finite number, 0 or more");
            }
            if calibrate.is_some() && rounding == Rounding::Nearest {
                bail!("--calibrate has no effect with --rounding nearest; drop one of them");
            }
            let report = convert::convert(
                &hf_dir,
                &output,
                ConvertOptions {
                    weights,
                    progress: true,
                    rounding: if no_calibrate {
                        Rounding::Nearest
                    } else {
                        rounding
                    },
                    calibration: calibrate,
                    calibration_tokens,
                    compact_tokenizer,
                    outlier_ratio,
                    gptq: GptqOptions {
                        damp: gptq_damp,
                        order: match gptq_order {
                            GptqOrderArg::Natural => GptqOrder::Natural,
                            GptqOrderArg::Act => GptqOrder::Act,
                        },
                        clip: match clip_search {
                            ClipArg::Off => ClipSearch::Off,
                            ClipArg::Diag => ClipSearch::Diag,
                            ClipArg::Gptq => ClipSearch::Gptq,
                        },
                    },
                    side_feedback,
                    ..ConvertOptions::default()
                },
            )?;
            let labels: Vec<_> = report.labels.iter().map(|l| escape_control(l)).collect();
            let mut text = format!(
                "read {} ({} labels: {})\n",
                report.weights_file,
                report.labels.len(),
                labels.join(", ")
            );
            if let Some(c) = &report.calibration {
                text.push_str(&format!(
                    "calibrated GPTQ rounding on {} of {} sentences ({} tokens, {})\n",
                    c.sequences, c.available, c.tokens, c.source
                ));
            }
            for t in report.tensors.iter().filter(|t| t.dtype == DType::I8) {
                text.push_str(&format!(
                    "  {:<42} int8  max |err| {:.3e}\n",
                    t.kind.name(),
                    t.quant_error
                ));
            }
            text.push_str(&format!(
                "wrote {} ({} bytes)\n",
                output.display(),
                report.blob_len
            ));
            console::print(&text)?;
        }
        Command::Inspect { blob, json } => {
            let bytes = common::read_blob(&blob)?;
            let model = parse_model(bytes.bytes(), &blob)?;
            let report = inspect::report(&model);
            if json {
                console::println(&serde_json::to_string_pretty(&report)?)?;
            } else {
                console::print(&inspect::render_text(&report))?;
            }
        }
        Command::Classify {
            positional,
            pair,
            ids,
            type_ids,
            precision,
            json,
            threads,
        } => {
            let (blob, text) = split_classify_args(positional, ids.is_some())?;
            // Started before the clock: a long-lived program makes its pool once.
            let pool = common::thread_pool(threads);
            let file;
            let (bytes, source) = match &blob {
                Some(path) => {
                    file = common::read_blob(path)?;
                    (file.bytes(), path.display().to_string())
                }
                None => (
                    builtin::require_builtin_model()?,
                    format!("built-in model ({})", builtin::BUILTIN_MODEL_PATH),
                ),
            };
            let model = Model::from_bytes(bytes).map_err(|e| anyhow!("{source}: {e}"))?;
            let start = Instant::now();
            let (ids, type_ids) = match (ids, text) {
                (Some(ids), _) => {
                    let type_ids = match type_ids {
                        Some(t) => classify::parse_ids(&t, "--type-ids")?,
                        None => Vec::new(),
                    };
                    (classify::parse_ids(&ids, "--ids")?, type_ids)
                }
                (None, Some(text)) => common::encode(&model, &text, pair.as_deref())
                    .map_err(|e| anyhow!("{source}: {e:#}"))?,
                (None, None) => bail!("give a TEXT to classify or --ids"),
            };
            let result = classify::run(&model, &ids, &type_ids, precision, &pool)?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            if json {
                // No timing here: the JSON is a deterministic function of the model and the input.
                console::println(&serde_json::to_string(&result)?)?;
            } else {
                let text = classify::render_text(&model, &result);
                console::print(&format!("{text}({ms:.1} ms)\n"))?;
            }
        }
        Command::Eval {
            blob,
            tsv,
            limit,
            json,
            threads,
        } => {
            let bytes = common::read_blob(&blob)?;
            let model = parse_model(bytes.bytes(), &blob)?;
            let examples = eval::read_tsv(&tsv, limit)?;
            eval::check_labels(&examples, model.config().num_labels, &tsv)?;
            let pool = common::thread_pool(threads);
            let bar = common::progress_bar(examples.len(), true, "eval");
            let report = eval::evaluate(&model, &examples, &pool, || bar.inc(1))
                .map_err(|e| anyhow!("{}: {e:#}", blob.display()))?;
            bar.finish_and_clear();
            if json {
                console::println(&serde_json::to_string_pretty(&report)?)?;
            } else {
                console::print(&eval::render_text(&report))?;
            }
        }
        Command::Tokenize {
            blob,
            mut texts,
            input,
            pair,
        } => {
            let bytes = common::read_blob(&blob)?;
            let model = parse_model(bytes.bytes(), &blob)?;
            // Each line of --input is decoded on its own: a line of invalid UTF-8 is tokenized with U+FFFD in
            // place of the bad bytes (as the core's byte API does), with a warning naming it, so the output
            // keeps one line per input line.
            let mut warnings = String::new();
            if let Some(path) = input {
                let (content, origin) = if path.as_os_str() == "-" {
                    let mut bytes = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                        .map_err(|e| anyhow!("cannot read standard input: {e}"))?;
                    (bytes, "<stdin>".to_string())
                } else {
                    let bytes = std::fs::read(&path)
                        .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
                    (bytes, path.display().to_string())
                };
                for line in textfile::lines_lossy(&content) {
                    if !line.valid {
                        warnings.push_str(&format!(
                            "warning: {origin}:{}: invalid UTF-8, replaced by U+FFFD\n",
                            line.number
                        ));
                    }
                    texts.push(line.text.into_owned());
                }
            }
            if texts.is_empty() {
                bail!("give at least one TEXT or --input FILE");
            }
            eprint_quietly(&warnings);
            let mut out = String::new();
            for text in &texts {
                let (ids, _) = common::encode(&model, text, pair.as_deref())
                    .map_err(|e| anyhow!("{}: {e:#}", blob.display()))?;
                let line: Vec<String> = ids.iter().map(u32::to_string).collect();
                out.push_str(&line.join(" "));
                out.push('\n');
            }
            console::print(&out)?;
        }
    }
    Ok(())
}

/// Writes to standard error, ignoring failure: there is nowhere left to report it.
fn eprint_quietly(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`... | head -1`): nothing is wrong with the command.
        Err(e)
            if e.downcast_ref::<StdoutError>()
                .is_some_and(StdoutError::is_broken_pipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            // One line, the whole context chain: "error: outer: inner".
            let msg = format!("{e:#}").replace('\n', " ");
            eprint_quietly(&format!("error: {msg}\n"));
            ExitCode::FAILURE
        }
    }
}
