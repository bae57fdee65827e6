//! `albert-edge`: convert Hugging Face ALBERT checkpoints to model blobs, inspect blobs, classify on the host.

use std::path::PathBuf;
use std::process::ExitCode;

use albert_edge::format::DType;
use albert_edge::Model;
use albert_edge_cli::classify::{self, PrecisionArg};
use albert_edge_cli::convert::{self, ConvertOptions, Rounding, WeightsMode};
use albert_edge_cli::inspect;
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
        /// Round int8 weights to nearest, without calibration (same as --rounding nearest).
        #[arg(long)]
        no_calibrate: bool,
        /// How int8 weight matrices are rounded.
        #[arg(long, value_enum, default_value_t = Rounding::Gptq)]
        rounding: Rounding,
    },
    /// Print a blob's config, labels, tensors, section sizes and scratch memory.
    Inspect {
        /// The model blob.
        blob: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Classify one input (text, or token ids with --ids).
    Classify {
        /// The model blob.
        blob: PathBuf,
        /// The sentence to classify (needs a blob with a tokenizer section).
        #[arg(required_unless_present = "ids", conflicts_with = "ids")]
        text: Option<String>,
        /// Second sentence of a pair.
        #[arg(long, requires = "text")]
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
        /// One JSON object {"label", "probabilities", "logits"} instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn parse_model<'a>(bytes: &'a [u8], path: &std::path::Path) -> Result<Model<'a>> {
    Model::from_bytes(bytes).map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Convert {
            hf_dir,
            output,
            weights,
            calibrate,
            no_calibrate,
            rounding,
        } => {
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
                    ..ConvertOptions::default()
                },
            )?;
            println!(
                "read {} ({} labels: {})",
                report.weights_file,
                report.labels.len(),
                report.labels.join(", ")
            );
            if let Some(c) = &report.calibration {
                println!(
                    "calibrated GPTQ rounding on {} sentences ({} tokens, {})",
                    c.sequences, c.tokens, c.source
                );
            }
            for t in report.tensors.iter().filter(|t| t.dtype == DType::I8) {
                println!(
                    "  {:<42} int8  max |err| {:.3e}",
                    t.kind.name(),
                    t.quant_error
                );
            }
            println!("wrote {} ({} bytes)", output.display(), report.blob_len);
        }
        Command::Inspect { blob, json } => {
            let bytes = classify::read_blob(&blob)?;
            let model = parse_model(bytes.bytes(), &blob)?;
            let report = inspect::report(&model);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", inspect::render_text(&report));
            }
        }
        Command::Classify {
            blob,
            text,
            pair,
            ids,
            type_ids,
            precision,
            json,
        } => {
            let bytes = classify::read_blob(&blob)?;
            let model = parse_model(bytes.bytes(), &blob)?;
            let (ids, type_ids) = match (ids, text) {
                (Some(ids), _) => {
                    let type_ids = match type_ids {
                        Some(t) => classify::parse_ids(&t, "--type-ids")?,
                        None => Vec::new(),
                    };
                    (classify::parse_ids(&ids, "--ids")?, type_ids)
                }
                (None, Some(text)) => classify::encode(&model, &text, pair.as_deref())
                    .map_err(|e| anyhow!("{}: {e:#}", blob.display()))?,
                (None, None) => bail!("give a TEXT to classify or --ids"),
            };
            let result = classify::run(&model, &ids, &type_ids, precision)?;
            if json {
                println!("{}", serde_json::to_string(&result)?);
            } else {
                print!("{}", classify::render_text(&model, &result));
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, the whole context chain: "error: outer: inner".
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
