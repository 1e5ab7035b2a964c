//! A layer tar from any registry: every entry listed and its content hashed, and the
//! layer summarised as `inspect` and `diff` do.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut entries = gpubox_oci::tar::read_entries(Cursor::new(data));
    while let Some(Ok(_)) = entries.next_with_digest() {}
    let _ = gpubox_oci::source::summarize_layer(Cursor::new(data));
});
