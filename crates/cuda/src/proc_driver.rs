//! The text files the NVIDIA kernel module writes under `/proc/driver/nvidia`: `version`
//! (the kernel module's version) and `gpus/<pci bus id>/information` (one GPU's minor
//! number, UUID and model). The host tools (`gpubox cdi generate`, `gpubox doctor`) and
//! `gpubox-init` read them through this one parser. The text is untrusted (a damaged file,
//! a fake driver tree), so reading it never panics: what is not there is `None`.

use crate::DriverVersion;

/// The kernel module's version and its spelling, from the `NVRM version:` line of
/// `/proc/driver/nvidia/version`: the first token that is a dotted number. The
/// proprietary module writes `NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14
/// Thu Feb 22 ...`, the open one `... Open Kernel Module for x86_64  550.54.14  Release
/// Build ...` (`x86_64` and `aarch64` have no dot). The spelling names the firmware folder
/// (`/lib/firmware/nvidia/550.54.14`).
///
/// ```
/// let text = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n";
/// let (version, spelled) = gpubox_cuda::kernel_module_version(text).unwrap();
/// assert_eq!((version.to_string().as_str(), spelled), ("550.54.14", "550.54.14"));
/// ```
pub fn kernel_module_version(text: &str) -> Option<(DriverVersion, &str)> {
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("NVRM version:"))?;
    line.split_whitespace()
        .filter(|token| token.contains('.'))
        .find_map(|token| Some((token.parse().ok()?, token)))
}

/// What `/proc/driver/nvidia/gpus/<pci bus id>/information` says about one GPU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuInformation {
    /// `Device Minor`: the N of `/dev/nvidiaN`.
    pub minor: Option<u32>,
    /// `GPU UUID`, when it is a `GPU-…` identifier (the driver writes a placeholder
    /// on some virtual GPUs).
    pub uuid: Option<String>,
    /// `Model`, when not empty.
    pub model: Option<String>,
}

impl GpuInformation {
    /// Reads the `Key: value` lines of one GPU's `information` file.
    pub fn parse(text: &str) -> GpuInformation {
        let field = |key: &str| {
            text.lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim() == key)
                .map(|(_, value)| value.trim().to_owned())
        };
        GpuInformation {
            minor: field("Device Minor").and_then(|minor| minor.parse().ok()),
            uuid: field("GPU UUID").filter(|uuid| uuid.starts_with("GPU-")),
            model: field("Model").filter(|model| !model.is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_of_both_kernel_modules() {
        let proprietary = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n";
        let open = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  560.35.03  Release Build  (dvs-builder@U16-I3-B03-4-3)  Fri Aug 16 21:42:42 UTC 2024\n";
        let read = |text| kernel_module_version(text).map(|(v, s)| (v.to_string(), s));
        assert_eq!(read(proprietary), Some(("550.54.14".into(), "550.54.14")));
        assert_eq!(read(open), Some(("560.35.03".into(), "560.35.03")));
        // Grace Hopper hosts run the open module, built for aarch64.
        let aarch64 = "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  550.54.14  Release Build  (dvs-builder@U16-I3-B03-4-3)  Thu Feb 22 01:44:30 UTC 2024\n";
        assert_eq!(read(aarch64), Some(("550.54.14".into(), "550.54.14")));
        assert_eq!(read("GCC version: 12.2.0\n"), None);
        assert_eq!(
            read("NVRM version: NVIDIA UNIX x86_64 Kernel Module 1.x 2..3\n"),
            None
        );
    }

    #[test]
    fn reads_one_gpus_information() {
        let text = "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 0\nGPU UUID: \t\t GPU-6c1d6b0e-87c4-5dd3-0c52-f2b4a2e2c8a1\nVideo BIOS: \t 96.00.99.00.01\nBus Type: \t PCIe\nDevice Minor: \t 3\n";
        assert_eq!(
            GpuInformation::parse(text),
            GpuInformation {
                minor: Some(3),
                uuid: Some("GPU-6c1d6b0e-87c4-5dd3-0c52-f2b4a2e2c8a1".to_owned()),
                model: Some("NVIDIA H100 80GB HBM3".to_owned()),
            }
        );
        let placeholder = "Model: \nGPU UUID: \t ??\nDevice Minor: \t -1\n";
        assert_eq!(
            GpuInformation::parse(placeholder),
            GpuInformation::default()
        );
    }
}
