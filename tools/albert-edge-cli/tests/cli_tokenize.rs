//! `albert-edge tokenize` prints the golden ids for SST-2 dev rows, one line per input.

use std::path::Path;
use std::process::Command;

#[test]
fn tokenize_prints_the_golden_ids_of_sst2_dev() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let blob = dir.path().join("m.blob");
    let exe = env!("CARGO_BIN_EXE_albert-edge");
    let fixture = root.join("tests/fixtures/tiny-gelu-new-2");
    let st = Command::new(exe)
        .arg("convert")
        .arg(&fixture)
        .arg("-o")
        .arg(&blob)
        .arg("--no-calibrate")
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );

    let dev = std::fs::read_to_string(root.join("tests/data/sst2/dev.tsv")).unwrap();
    let sentences: Vec<&str> = dev
        .lines()
        .skip(1)
        .take(40)
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    let input = dir.path().join("sentences.txt");
    std::fs::write(&input, sentences.join("\n")).unwrap();
    let out = Command::new(exe)
        .arg("tokenize")
        .arg(&blob)
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let golden =
        std::fs::read_to_string(root.join("tests/data/spiece/sst2_dev.albert_ids.txt")).unwrap();
    let got = String::from_utf8(out.stdout).unwrap();
    let got: Vec<&str> = got.lines().collect();
    let want: Vec<&str> = golden.lines().take(40).collect();
    assert_eq!(got, want);

    // Positional texts and pairs: [CLS] A [SEP] B [SEP].
    let out = Command::new(exe)
        .args(["tokenize"])
        .arg(&blob)
        .args(["hello, my dog is cute", "--pair", "hello"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "2 10975 15 51 1952 25 10901 3 10975 3\n"
    );
}
