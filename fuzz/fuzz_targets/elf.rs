//! An ELF file as `hostBinaries` and `cdi generate` read it: class, machine, interpreter
//! and the dynamic segment's strings.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(file) = gpubox_fuzz::scratch_file("elf", data) {
        let _ = gpubox_hostbin::soname(&file);
    }
});
