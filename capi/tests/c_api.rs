//! The C API from C: builds the programs in tests/c with the system C compiler against the `libalbert_edge.a`
//! that cargo built for this test run, and checks that
//!   - `errors` gets the documented status from every function for every bad argument and damaged blob,
//!   - `classify` gives, for SST-2 dev sentences, the logits of the Rust API bit for bit (tokenized the way the
//!     `albert-edge` CLI does: `[CLS] text [SEP]` truncated to `max_position_embeddings`).
//!
//! scripts/check-capi.sh compares all of the dev set with the CLI itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use albert_edge::model::{classify, scratch_size, Inputs, Precision};
use albert_edge::Model;

/// Rows of the dev set checked here (the whole set takes seconds, but this is a debug build's test).
const ROWS: usize = 24;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The static library, built by cargo for this test's profile (`cargo test` builds a staticlib-only crate's
/// tests, not the library itself): `target/<profile>/libalbert_edge.a`.
fn staticlib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => "dev",
    };
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let status = Command::new(cargo)
        .args([
            "build",
            "-q",
            "-p",
            "albert-edge-capi",
            "--profile",
            profile,
            "--target-dir",
        ])
        .arg(profile_dir.parent().unwrap())
        .current_dir(repo())
        .status()
        .unwrap();
    assert!(status.success(), "cargo build -p albert-edge-capi failed");
    profile_dir.join("libalbert_edge.a")
}

/// Compiles `tests/c/<name>.c` into the test's scratch directory; `None` (test skipped) without a C compiler.
fn build(name: &str) -> Option<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    if Command::new(&cc).arg("--version").output().is_err() {
        eprintln!("skipped: no C compiler ({cc})");
        return None;
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let c = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
        .arg(c.join("include"))
        .arg(c.join("tests/c").join(format!("{name}.c")))
        .arg(staticlib())
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "{cc} failed on tests/c/{name}.c");
    Some(out)
}

#[test]
fn every_function_returns_the_documented_status_for_bad_arguments() {
    let Some(errors) = build("errors") else {
        return;
    };
    let out = Command::new(errors)
        .arg(repo().join("models/sst2-albert-pi.blob"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(", 0 failed"), "{stdout}");
}

#[test]
fn c_logits_equal_the_rust_logits_bit_for_bit() {
    let Some(program) = build("classify") else {
        return;
    };
    let blob_path = repo().join("models/sst2-albert-pi.blob");
    let tsv = repo().join("tests/data/sst2/dev.tsv");
    let out = Command::new(program)
        .arg(&blob_path)
        .arg(&tsv)
        .arg(ROWS.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c_lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();

    // The same sentences through the Rust API, as the CLI's `classify TEXT` runs them.
    let bytes = std::fs::read(&blob_path).unwrap();
    let mut words = vec![0u32; bytes.len().div_ceil(4)];
    let aligned: &mut [u8] = &mut bytemuck_bytes(&mut words)[..bytes.len()];
    aligned.copy_from_slice(&bytes);
    let model = Model::from_bytes(aligned).unwrap();
    let c = model.config();
    let tokenizer = model.tokenizer().unwrap();
    let mut expected = Vec::new();
    for (row, line) in std::fs::read_to_string(&tsv)
        .unwrap()
        .lines()
        .skip(1)
        .take(ROWS)
        .enumerate()
    {
        let text = line
            .split('\t')
            .next()
            .unwrap()
            .trim_end_matches([' ', '\t']);
        let mut ws = vec![0u8; tokenizer.workspace_size(text.len())];
        let (mut ids, mut types) = (
            vec![0u32; c.max_position_embeddings],
            vec![0u32; c.max_position_embeddings],
        );
        let n = tokenizer
            .encode(
                text,
                None,
                c.max_position_embeddings,
                &mut ws,
                &mut ids,
                &mut types,
            )
            .unwrap();
        let inputs = Inputs {
            input_ids: &ids[..n],
            token_type_ids: &types[..n],
            attention_mask: &[],
        };
        let mut arena = vec![0u8; scratch_size(c, n, Precision::Int8)];
        let mut logits = vec![0f32; c.num_labels];
        classify(&model, Precision::Int8, &inputs, &mut arena, &mut logits).unwrap();
        let best = if logits[1] > logits[0] { 1 } else { 0 };
        let bits: Vec<String> = logits
            .iter()
            .map(|l| format!("{:08x}", l.to_bits()))
            .collect();
        expected.push(format!(
            "{} {} {}",
            row + 1,
            model.label(best),
            bits.join(",")
        ));
    }
    let got: Vec<String> = c_lines
        .iter()
        .map(|l| l.rsplit_once(' ').unwrap().0.to_owned()) // drop the %a column
        .collect();
    assert_eq!(got, expected);
}

/// `words` as bytes.
fn bytemuck_bytes(words: &mut [u32]) -> &mut [u8] {
    // SAFETY: `u32` has no padding and every byte pattern is a valid `u8`; the slice covers exactly the words.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 4) }
}
