//! The static `gpubox-init` executables this `gpubox` carries, one per image
//! architecture (issue 14: linux/amd64 and linux/arm64 images).
//!
//! `build.rs` always builds the init for the architecture `gpubox` itself is built
//! for, and the other one of the pair x86_64 / aarch64 when the toolchain has its Rust
//! target and a cross linker (`scripts/install-test-deps` installs both). An image for
//! an architecture whose init is missing cannot be built: [`missing_help`] says what
//! to install.
//!
//! Architectures are named as OCI names them (`amd64`, `arm64`).

#[cfg(gpubox_init_x86_64)]
static X86_64: &[u8] = include_bytes!(env!("GPUBOX_INIT_X86_64"));
#[cfg(gpubox_init_aarch64)]
static AARCH64: &[u8] = include_bytes!(env!("GPUBOX_INIT_AARCH64"));

/// The architectures (OCI's names) whose init is embedded in this build.
pub const ARCHITECTURES: &[&str] = &[
    #[cfg(gpubox_init_x86_64)]
    "amd64",
    #[cfg(gpubox_init_aarch64)]
    "arm64",
];

/// The static `gpubox-init` for images of `oci_architecture` (`amd64`, `arm64`), or
/// `None` when this build has none for it (see [`missing_help`]).
pub fn for_architecture(oci_architecture: &str) -> Option<&'static [u8]> {
    match oci_architecture {
        #[cfg(gpubox_init_x86_64)]
        "amd64" => Some(X86_64),
        #[cfg(gpubox_init_aarch64)]
        "arm64" => Some(AARCH64),
        _ => None,
    }
}

/// Why there is no init for `oci_architecture`, and what to install and rebuild to
/// get one.
pub fn missing_help(oci_architecture: &str) -> String {
    let (triple, packages) = match oci_architecture {
        "amd64" => (
            "x86_64-unknown-linux-gnu",
            "gcc-x86-64-linux-gnu libc6-dev-amd64-cross",
        ),
        "arm64" => (
            "aarch64-unknown-linux-gnu",
            "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
        ),
        other => {
            return format!(
                "gpubox-init is built for linux/amd64 and linux/arm64 only, not for \
                 architecture `{other}`"
            )
        }
    };
    format!(
        "this gpubox was built without a gpubox-init for linux/{oci_architecture}: its build \
         found no Rust target {triple} or no cross linker for it. Install them with \
         `rustup target add {triple}` and `apt-get install {packages}` (or, as root, \
         `./scripts/install-test-deps`), then rebuild gpubox (`cargo build --release`); the \
         build warns when it still cannot build this init"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EM_X86_64: u16 = 62;
    const EM_AARCH64: u16 = 183;
    const PT_INTERP: u32 = 3;

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    fn u64_at(bytes: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    /// The `e_machine` of a 64-bit little-endian ELF executable, and the types of its
    /// program headers.
    fn elf_facts(elf: &[u8]) -> (u16, Vec<u32>) {
        assert!(
            elf.len() > 64,
            "too short for an ELF header: {} bytes",
            elf.len()
        );
        assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
        assert_eq!(elf[4], 2, "not a 64-bit ELF (EI_CLASS)");
        assert_eq!(elf[5], 1, "not little-endian (EI_DATA)");
        let e_type = u16_at(elf, 16);
        // ET_EXEC, or ET_DYN for a static position-independent executable.
        assert!(
            e_type == 2 || e_type == 3,
            "not an executable: e_type {e_type}"
        );
        let machine = u16_at(elf, 18);
        let phoff = usize::try_from(u64_at(elf, 32)).unwrap();
        let phentsize = usize::from(u16_at(elf, 54));
        let phnum = usize::from(u16_at(elf, 56));
        assert_eq!(phentsize, 56, "64-bit program headers are 56 bytes");
        assert!(phnum > 0, "no program headers");
        assert!(
            phoff + phnum * phentsize <= elf.len(),
            "the program headers run past the end of the file"
        );
        let types = (0..phnum)
            .map(|index| u32_at(elf, phoff + index * phentsize))
            .collect();
        (machine, types)
    }

    fn expected_machine(oci_architecture: &str) -> u16 {
        match oci_architecture {
            "amd64" => EM_X86_64,
            "arm64" => EM_AARCH64,
            other => panic!("no ELF machine known for {other}"),
        }
    }

    #[test]
    fn each_embedded_init_is_a_static_executable_for_its_architecture() {
        assert!(!ARCHITECTURES.is_empty());
        for &architecture in ARCHITECTURES {
            let init = for_architecture(architecture)
                .unwrap_or_else(|| panic!("{architecture} is listed but has no init"));
            let (machine, program_headers) = elf_facts(init);
            assert_eq!(
                machine,
                expected_machine(architecture),
                "the {architecture} init is built for the wrong machine"
            );
            assert!(
                !program_headers.contains(&PT_INTERP),
                "the {architecture} init asks for a dynamic loader (PT_INTERP): not static"
            );
        }
    }

    #[test]
    fn the_init_for_the_build_machine_is_always_embedded() {
        let own = if cfg!(target_arch = "x86_64") {
            "amd64"
        } else if cfg!(target_arch = "aarch64") {
            "arm64"
        } else {
            return;
        };
        assert!(ARCHITECTURES.contains(&own), "{ARCHITECTURES:?}");
        assert!(for_architecture(own).is_some());
    }

    #[test]
    fn the_init_for_the_build_machine_is_the_one_named_gpubox_init_binary() {
        let own = if cfg!(target_arch = "x86_64") {
            "amd64"
        } else {
            "arm64"
        };
        if let Some(init) = for_architecture(own) {
            assert_eq!(
                init,
                std::fs::read(env!("GPUBOX_INIT_BINARY"))
                    .unwrap()
                    .as_slice()
            );
        }
    }

    #[test]
    fn architectures_without_an_init_are_refused_with_what_to_install() {
        for architecture in ["amd64", "arm64"] {
            assert_eq!(
                for_architecture(architecture).is_some(),
                ARCHITECTURES.contains(&architecture)
            );
        }
        assert_eq!(for_architecture("riscv64"), None);
        assert_eq!(for_architecture("aarch64"), None, "OCI names it arm64");
        let help = missing_help("arm64");
        assert!(
            help.contains("rustup target add aarch64-unknown-linux-gnu"),
            "{help}"
        );
        assert!(
            help.contains("apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross"),
            "{help}"
        );
        assert!(help.contains("./scripts/install-test-deps"), "{help}");
        let help = missing_help("amd64");
        assert!(
            help.contains("rustup target add x86_64-unknown-linux-gnu"),
            "{help}"
        );
        assert!(missing_help("s390x").contains("`s390x`"));
    }

    #[test]
    fn the_elf_reader_tells_machines_and_loaders_apart() {
        // A minimal 64-bit header for aarch64 with two program headers: PT_LOAD and
        // PT_INTERP, as a dynamically linked program has.
        let mut elf = vec![0u8; 64 + 2 * 56];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[16..18].copy_from_slice(&2u16.to_le_bytes());
        elf[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&2u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes());
        elf[120..124].copy_from_slice(&PT_INTERP.to_le_bytes());
        let (machine, types) = elf_facts(&elf);
        assert_eq!(machine, EM_AARCH64);
        assert_eq!(types, vec![1, PT_INTERP]);
    }
}
