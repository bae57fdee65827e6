//! Writes the synthetic int8 model the instruction counts in docs/raspberry-pi.md use: ALBERT-base's shape except
//! hidden 256, 4 heads, intermediate 1024 (`albert_edge_cli::synthetic::random_model`, seed 7), and prints the
//! 32-token input those counts use.
//!
//! ```sh
//! cargo run --release -p albert-edge-benches --example synthetic_blob -- synthetic.blob
//! ```

use albert_edge_cli::blob::write_blob;
use albert_edge_cli::synthetic::{albert_base_config, random_model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: synthetic_blob OUT.blob")?;
    let mut c = albert_base_config(2);
    c.hidden_size = 256;
    c.num_attention_heads = 4;
    c.intermediate_size = 1024;
    std::fs::write(&out, write_blob(&random_model(&c, 7, true))?)?;
    // [CLS], 30 ids from the LCG x = (1103515245 x + 12345) mod 2^31 starting at 12345, [SEP].
    let mut x: u64 = 12345;
    let mut ids = vec![2u64];
    for _ in 0..30 {
        x = (1_103_515_245 * x + 12_345) % (1 << 31);
        ids.push(5 + x % 29_990);
    }
    ids.push(3);
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    println!("wrote {out}; input ids: {}", ids.join(" "));
    Ok(())
}
