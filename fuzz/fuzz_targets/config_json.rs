//! `config.json` parsing (`checkpoint::parse_config`) on arbitrary text: a one-line error or a config that
//! validates, with one label name per label, never a panic or an allocation sized by an unchecked count.
#![no_main]

use albert_edge_cli::checkpoint::parse_config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_config(text) {
        Ok(c) => {
            assert!(c.config.validate().is_ok(), "{c:?}");
            assert_eq!(c.labels.len(), c.config.num_labels);
        }
        Err(e) => assert!(!format!("{e:#}").contains('\n'), "{e:#}"),
    }
});
