//! `albert-edge-panel-logits BLOB IDS_FILE`: the engine's logits for every row of `IDS_FILE` (space-separated
//! token ids, `[CLS]` and `[SEP]` included, one row per line, token types all 0), on standard output as one
//! line per row: `int8 logits<TAB>fp32 logits`, each space-separated, shortest round-trip decimals.
//!
//! `fp32` is the core's `Precision::F32` on the same (int8) blob: f32 activations over the dequantised int8
//! weights, what `albert-edge classify --precision fp32` prints. For an fp32 blob the int8 column is `-`.
//! The same calls as `albert-edge classify --ids ... --json`, without a process per row.

use albert_edge::model::{classify, is_int8, scratch_size, Inputs, Precision};
use albert_edge::Model;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [blob, ids_path] = args.as_slice() else {
        return Err("usage: albert-edge-panel-logits BLOB IDS_FILE".into());
    };
    let bytes = std::fs::read(blob).map_err(|e| format!("cannot read {blob}: {e}"))?;
    // The blob is read in place and wants 16-byte alignment: copy it into u128 words.
    let mut words = vec![0u128; bytes.len().div_ceil(16)];
    bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    let aligned = &bytemuck::cast_slice::<u128, u8>(&words)[..bytes.len()];
    let model = Model::from_bytes(aligned).map_err(|e| format!("{blob}: {e}"))?;
    let config = model.config();
    let int8 = is_int8(&model);
    let text =
        std::fs::read_to_string(ids_path).map_err(|e| format!("cannot read {ids_path}: {e}"))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut logits = vec![0f32; config.num_labels];
    for (n, line) in text.lines().enumerate() {
        let ids: Vec<u32> = line
            .split_whitespace()
            .map(|s| {
                s.parse::<u32>()
                    .map_err(|_| format!("{ids_path}:{}: bad id {s:?}", n + 1))
            })
            .collect::<Result<_, _>>()?;
        let inputs = Inputs::ids(&ids);
        let mut row = String::new();
        for precision in [Precision::Int8, Precision::F32] {
            if precision == Precision::Int8 && !int8 {
                row.push('-');
            } else {
                let mut arena = vec![0u8; scratch_size(config, ids.len(), precision)];
                classify(&model, precision, &inputs, &mut arena, &mut logits)
                    .map_err(|e| format!("{ids_path}:{}: {e}", n + 1))?;
                let cells: Vec<String> = logits.iter().map(|l| format!("{l:?}")).collect();
                row.push_str(&cells.join(" "));
            }
            row.push(if precision == Precision::Int8 {
                '\t'
            } else {
                '\n'
            });
        }
        out.write_all(row.as_bytes()).map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}
