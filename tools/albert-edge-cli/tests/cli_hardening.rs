//! The CLI's inputs and outputs under hostile or unlucky conditions: an output that is one of the inputs, a
//! missing output directory, signals during a conversion, standard output that closes early or is full,
//! non-finite logits, label names with control characters, malformed TSVs and invalid UTF-8 in text files.

mod convert_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use albert_edge::format::TensorKind;
use albert_edge_cli::blob::{write_blob, Payload};
use albert_edge_cli::synthetic::random_model;
use albert_edge_cli::tokenizer_section::{build_from_file, SectionOptions};
use convert_support::*;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a failure with exactly one stderr line, `error: ...` containing `needle`.
fn fails_with(out: &Output, needle: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "expected failure; stderr: {err}");
    assert_eq!(err.lines().count(), 1, "stderr must be one line: {err:?}");
    assert!(
        err.starts_with("error: ") && err.contains(needle),
        "{err:?} lacks {needle:?}"
    );
}

fn temporary_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".albert-edge-"))
        .collect()
}

/// A synthetic checkpoint in `ckpt/` and an empty `out/`.
fn checkpoint() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (tmp, ckpt, out, _) = synthetic_checkpoint();
    (tmp, ckpt, out)
}

// ---------------------------------------------------------------------------------------------------------------
// convert: where the output goes
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn convert_refuses_an_output_that_is_one_of_its_inputs() {
    let (_tmp, ckpt, out) = checkpoint();
    fs::write(ckpt.join("tokenizer_config.json"), "{}").unwrap();
    let calibration = out.join("sentences.txt");
    fs::write(&calibration, "a fine film .\n").unwrap();
    let link = out.join("link.blob");
    #[cfg(unix)]
    std::os::unix::fs::symlink(ckpt.join("config.json"), &link).unwrap();
    let mut cases = vec![
        (
            ckpt.join("model.safetensors"),
            "the checkpoint's weights file",
        ),
        (ckpt.join("config.json"), "the checkpoint's config.json"),
        (ckpt.join("spiece.model"), "the checkpoint's spiece.model"),
        (
            ckpt.join("tokenizer_config.json"),
            "the checkpoint's tokenizer_config.json",
        ),
        (calibration.clone(), "the calibration file"),
    ];
    if cfg!(unix) {
        cases.push((link, "the checkpoint's config.json"));
    }
    for (target, what) in cases {
        let before = fs::read(&target).unwrap();
        let calibrate = calibration.to_str().unwrap();
        let res = convert(&ckpt, &target, &["--calibrate", calibrate]);
        fails_with(&res, &format!("is {what}, an input of this command"));
        assert_eq!(
            fs::read(&target).unwrap(),
            before,
            "{} was changed",
            target.display()
        );
        assert!(temporary_files(target.parent().unwrap()).is_empty());
    }
    // The refusal compares files, not spellings: the same weights file through `..`.
    let roundabout = ckpt.join("../ckpt/model.safetensors");
    fails_with(
        &convert(&ckpt, &roundabout, &[]),
        "an input of this command",
    );
}

#[test]
fn convert_reports_output_problems_before_reading_the_checkpoint() {
    let (_tmp, ckpt, out) = checkpoint();
    // A checkpoint that would fail much later (a tensor missing) still fails on the output first.
    fs::remove_file(ckpt.join("model.safetensors")).unwrap();
    write_safetensors(&ckpt, &[]);
    let missing = out.join("no/such/dir/model.blob");
    fails_with(&convert(&ckpt, &missing, &[]), "the output directory");
    let err = stderr(&convert(&ckpt, &missing, &[]));
    assert!(
        err.contains("no/such/dir does not exist; create it first"),
        "{err}"
    );
    #[cfg(unix)]
    {
        let link = out.join("null.blob");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        fails_with(
            &convert(&ckpt, &link, &[]),
            "is a symbolic link to /dev/null, a character device, not a regular file",
        );
    }
}

/// SIGINT and SIGTERM during a conversion remove the temporary file and end the process as the signal would.
/// The calibration file is a named pipe nobody writes to, so the conversion waits, with its temporary file made,
/// until the signal comes.
#[cfg(unix)]
#[test]
fn convert_removes_its_temporary_file_when_interrupted() {
    use std::os::unix::process::ExitStatusExt;
    for (signal, name) in [(2, "INT"), (15, "TERM"), (1, "HUP")] {
        let (_tmp, ckpt, out) = checkpoint();
        let fifo = out.join("sentences.fifo");
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let blob = out.join("model.blob");
        let mut child = Command::new(env!("CARGO_BIN_EXE_albert-edge"))
            .args([
                "convert".as_ref(),
                ckpt.as_os_str(),
                "-o".as_ref(),
                blob.as_os_str(),
            ])
            .args(["--calibrate".as_ref(), fifo.as_os_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while temporary_files(&out).is_empty() {
            assert!(
                start.elapsed().as_secs() < 120,
                "no temporary file appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap()
            .success());
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(signal), "SIG{name}: {status:?}");
        assert!(
            temporary_files(&out).is_empty(),
            "SIG{name} left {:?}",
            temporary_files(&out)
        );
        assert!(!blob.exists());
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Standard output
// ---------------------------------------------------------------------------------------------------------------

fn fixture_blob() -> PathBuf {
    converted_fixture("tiny-gelu-new-2", "int8")
}

/// `tokenize ... | head -1`: the reader goes away after one line; the command ends quietly with status 0.
#[test]
fn a_closed_stdout_ends_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("lines.txt");
    fs::write(
        &input,
        "a gorgeous , witty , seductive movie .\n".repeat(20_000),
    )
    .unwrap();
    let blob = fixture_blob();
    let mut child = Command::new(env!("CARGO_BIN_EXE_albert-edge"))
        .args([
            "tokenize".as_ref(),
            blob.as_os_str(),
            "--input".as_ref(),
            input.as_os_str(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert!(first.starts_with(b"2 "), "{first:?}");
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(&out));
    assert_eq!(stderr(&out), "");
}

/// Every command's output to a full device is one `error:` line and a failure, not a panic.
#[cfg(target_os = "linux")]
#[test]
fn a_full_stdout_is_one_error_line() {
    let blob = fixture_blob();
    let tsv = repo_root().join("tests/data/sst2/dev.tsv");
    let b = blob.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["inspect", b],
        vec!["inspect", b, "--json"],
        vec!["classify", b, "a fine film"],
        vec!["classify", b, "a fine film", "--json"],
        vec!["tokenize", b, "a fine film"],
        vec!["eval", b, tsv.to_str().unwrap(), "--limit", "2"],
    ];
    for args in commands {
        let full = fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_albert-edge"))
            .args(&args)
            .stdout(full)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        fails_with(
            &out,
            "cannot write to standard output: No space left on device",
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Non-finite logits and label names
// ---------------------------------------------------------------------------------------------------------------

/// A random model whose classifier scales are so large that the logits overflow to infinity (every value in
/// the blob is finite and valid; only their products are not), with a tokenizer and `labels`.
fn write_overflowing_blob(path: &Path, labels: [&str; 2]) {
    let c = tiny_config();
    let mut contents = random_model(&c, 5, true);
    for (kind, payload) in &mut contents.tensors {
        if let (TensorKind::ClassifierWeight, Payload::I8 { scales, .. }) = (kind, payload) {
            scales.iter_mut().for_each(|s| *s = f32::MAX);
        }
    }
    contents.labels = labels.iter().map(|l| l.to_string()).collect();
    let options = SectionOptions {
        compact: true,
        ..SectionOptions::default()
    };
    contents.tokenizer = build_from_file(&spiece_model(), &options).unwrap();
    fs::write(path, write_blob(&contents).unwrap()).unwrap();
}

#[test]
fn non_finite_logits_are_an_error_not_a_label() {
    let tmp = tempfile::tempdir().unwrap();
    let blob = tmp.path().join("overflow.blob");
    write_overflowing_blob(&blob, ["negative", "positive"]);
    let tsv = tmp.path().join("d.tsv");
    fs::write(&tsv, "sentence\tlabel\nfine\t1\n").unwrap();
    let b = blob.to_str().unwrap();
    for args in [
        vec!["classify", b, "a fine film"],
        vec!["classify", b, "a fine film", "--json"],
        vec!["classify", b, "a fine film", "--precision", "fp32"],
        vec!["classify", b, "--ids", "2 100 3"],
    ] {
        let out = albert_edge(&args);
        fails_with(&out, "non-finite logit");
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    fails_with(
        &albert_edge(["eval", b, tsv.to_str().unwrap()]),
        "the sentence on line 2: the model computed a non-finite logit",
    );
}

#[test]
fn label_names_are_printed_with_control_characters_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let blob = tmp.path().join("labels.blob");
    let forged = "neg\nlabel: positive\u{1b}[2J";
    let c = tiny_config();
    let mut contents = random_model(&c, 7, true);
    contents.labels = vec![forged.to_string(), "tab\there".to_string()];
    contents.tokenizer = build_from_file(
        &spiece_model(),
        &SectionOptions {
            compact: true,
            ..SectionOptions::default()
        },
    )
    .unwrap();
    fs::write(&blob, write_blob(&contents).unwrap()).unwrap();
    let b = blob.to_str().unwrap();
    for args in [vec!["classify", b, "a fine film"], vec!["inspect", b]] {
        let text = ok(&albert_edge(&args));
        assert!(
            !text.contains('\u{1b}') && !text.contains('\t'),
            "{args:?}: {text:?}"
        );
        assert!(
            text.contains("neg\\nlabel: positive\\u{1b}[2J"),
            "{args:?}: {text}"
        );
        assert!(text.contains("tab\\there"), "{args:?}: {text}");
        assert_eq!(
            text.lines().filter(|l| l.starts_with("label:")).count(),
            usize::from(args[0] == "classify")
        );
    }
    // JSON output escapes them as JSON does, and parses back to the raw names.
    let json: serde_json::Value =
        serde_json::from_str(&ok(&albert_edge(["inspect", b, "--json"]))).unwrap();
    assert_eq!(json["labels"][0], forged);
}

// ---------------------------------------------------------------------------------------------------------------
// TSVs and text files
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn eval_names_the_tsv_line_of_every_bad_row() {
    let tmp = tempfile::tempdir().unwrap();
    let tsv = tmp.path().join("d.tsv");
    let blob = fixture_blob();
    let run = |content: &[u8]| {
        fs::write(&tsv, content).unwrap();
        albert_edge(["eval".as_ref(), blob.as_os_str(), tsv.as_os_str()])
    };
    let t = tsv.display().to_string();
    fails_with(
        &run(b"sentence\tlabel\nfine\t1\na\ttab inside\t0\n"),
        &format!("{t}:3: 3 tab-separated fields where the header has 2"),
    );
    fails_with(
        &run(b"sentence\tlabel\nfine\t1\nno label\n"),
        &format!("{t}:3: 1 tab-separated fields"),
    );
    fails_with(
        &run(b"sentence\tlabel\nfine\t1\n\nbad\t7\n"),
        &format!("{t}:4: label 7 is not a label id of this model"),
    );
    fails_with(
        &run(b"sentence\tlabel\nfine\t1\nbad \xFF bytes\t0\n"),
        &format!("{t}:3: invalid UTF-8 at byte 5 of the line"),
    );
    // A byte-order mark before the header is accepted.
    let text = ok(&run(b"\xEF\xBB\xBFsentence\tlabel\na fine film\t1\n"));
    assert!(text.starts_with("n: 1\n"), "{text}");
}

#[test]
fn convert_names_the_line_of_invalid_utf8_in_a_calibration_file() {
    let (_tmp, ckpt, out) = checkpoint();
    let calibration = out.join("c.txt");
    fs::write(&calibration, b"one fine line\nanother\n\xC3(\n").unwrap();
    let blob = out.join("m.blob");
    let res = convert(
        &ckpt,
        &blob,
        &["--calibrate", calibration.to_str().unwrap()],
    );
    let needle = format!(
        "cannot read calibration file: {}:3: invalid UTF-8 at byte 1",
        calibration.display()
    );
    assert_clean_failure(&res, &blob, &needle);
}

#[test]
fn convert_accepts_a_byte_order_mark_in_config_json() {
    let (_tmp, ckpt, out) = checkpoint();
    let config = ckpt.join("config.json");
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(fs::read(&config).unwrap());
    fs::write(&config, bytes).unwrap();
    ok(&convert(&ckpt, &out.join("m.blob"), &["--no-calibrate"]));
}

/// `tokenize --input` decodes each line on its own: a line of invalid UTF-8 is tokenized with U+FFFD (the byte
/// API's rule) and named in a warning; the other lines are untouched and the output keeps one line per input.
#[test]
fn tokenize_input_keeps_the_valid_lines_of_a_file_with_invalid_utf8() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    fs::write(&input, b"a fine film\nbad \xFF line\nthe end\n").unwrap();
    let blob = fixture_blob();
    let out = albert_edge([
        "tokenize".as_ref(),
        blob.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
    ]);
    let text = ok(&out);
    let lines: Vec<&str> = text.lines().collect();
    let one = |t: &str| {
        ok(&albert_edge([
            "tokenize".as_ref(),
            blob.as_os_str(),
            t.as_ref(),
        ]))
    };
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], one("a fine film").trim_end());
    assert_eq!(lines[1], one("bad \u{FFFD} line").trim_end());
    assert_eq!(lines[2], one("the end").trim_end());
    assert_eq!(
        stderr(&out),
        format!(
            "warning: {}:2: invalid UTF-8, replaced by U+FFFD\n",
            input.display()
        )
    );
}

/// A checkpoint file that is a link to a device (or a dangling link) is named as what it is: never read (a link
/// to /dev/zero would never end) and never reported as missing.
#[cfg(unix)]
#[test]
fn convert_names_checkpoint_files_that_are_not_regular_files() {
    for (name, target, needle) in [
        ("config.json", "/dev/zero", "config.json is a symbolic link to /dev/zero, a character device; it must be a regular file"),
        ("model.safetensors", "/dev/urandom", "model.safetensors is a symbolic link to /dev/urandom, a character device"),
        ("spiece.model", "/nonexistent/spiece.model", "spiece.model is a symbolic link to /nonexistent/spiece.model, which does not exist"),
    ] {
        let (_tmp, ckpt, out) = checkpoint();
        fs::remove_file(ckpt.join(name)).unwrap();
        std::os::unix::fs::symlink(target, ckpt.join(name)).unwrap();
        let blob = out.join("m.blob");
        assert_clean_failure(&convert(&ckpt, &blob, &[]), &blob, needle);
    }
}
