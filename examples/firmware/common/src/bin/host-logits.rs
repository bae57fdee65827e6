//! The results the firmware must reproduce: the same sentence loop and the same output lines, computed on the
//! host from the same embedded blob. `scripts/check-firmware.sh` compares the lines with the device's.

use albert_firmware::{
    classify_sentences, load_model, load_tokenizer, ARENA_BYTES, TOKENIZER_WORKSPACE_BYTES,
};

fn main() -> std::process::ExitCode {
    let mut arena = vec![0u8; ARENA_BYTES];
    let mut workspace = vec![0u8; TOKENIZER_WORKSPACE_BYTES];
    let mut run = || -> Result<(), albert_edge::Error> {
        let model = load_model()?;
        let tokenizer = load_tokenizer(&model, &workspace)?;
        classify_sentences(&model, tokenizer, &mut arena, &mut workspace, |r| {
            println!("{r}")
        })
    };
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
