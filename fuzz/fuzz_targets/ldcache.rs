//! glibc's binary `/etc/ld.so.cache`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gpubox_hostbin::ldcache::parse(data);
});
