//! A spec as a user (or a generated file) writes it: the first byte picks TOML or JSON,
//! the rest is the text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((format, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let file = if format % 2 == 0 {
        "gpubox.toml"
    } else {
        "gpubox.json"
    };
    let _ = gpubox_spec::parse(text, &Path::new("/nonexistent/fuzz").join(file));
});
