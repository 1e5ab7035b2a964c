//! CUDA knowledge shared by the build (`gpubox build`), the runtime (`gpubox-init`) and
//! the host tools (`gpubox doctor`, `gpubox run`): version numbers, finding the CUDA
//! release a closure carries, the NVIDIA environment and labels an image gets, the
//! `NVIDIA_REQUIRE_*` language that libnvidia-container reads, NVIDIA's table of
//! the minimum driver for each CUDA release, the driver's own
//! `/proc/driver/nvidia` files, and the names of the architectures gpubox knows
//! ([`Architecture`]: amd64 and arm64, with their multiarch library folders).
//!
//! This crate is pure logic over paths and strings: it reads folder listings but never
//! writes, never runs programs, never prints, and never touches the driver or the GPU.
//! It is linked into the static `gpubox-init`, so it depends on `thiserror` and `serde`
//! only.

mod arch;
mod detect;
mod driver_table;
mod env;
mod proc_driver;
mod require;
mod version;

pub use arch::Architecture;
pub use detect::{detect, resolve_version, CudaPackage};
pub use driver_table::{
    compatibility, cuda_supported_by, minimum_driver, minor_compat_minimum, Compatibility,
};
pub use env::{driver_library_dirs, image_env, image_labels};
pub use proc_driver::{kernel_module_version, GpuInformation};
pub use require::{
    disable_require, image_cuda, parse, requirements_from_env, Evaluation, HostFacts, RequireError,
    Requirement,
};
pub use version::{CudaVersion, DriverVersion};

use std::path::PathBuf;

/// Errors about CUDA versions found in or declared for an image.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// The closure holds more than one CUDA major.minor release.
    #[error("the image would hold more than one CUDA release: {}; set cuda.allowMixedVersions = true if this is intended, or keep one CUDA release in systemPackages", describe_mixed(.versions))]
    MixedVersions {
        /// Each release found, with the store paths (or files) that carry it.
        versions: Vec<(CudaVersion, Vec<PathBuf>)>,
    },
    /// A version string that is not made of dot-separated numbers.
    #[error("`{text}` is not a {what} version: write {expected}")]
    BadVersion {
        /// What kind of version was expected: "CUDA" or "driver".
        what: &'static str,
        /// The text as given.
        text: String,
        /// The expected shape, with an example.
        expected: &'static str,
    },
}

fn describe_mixed(versions: &[(CudaVersion, Vec<PathBuf>)]) -> String {
    versions
        .iter()
        .map(|(version, paths)| {
            let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            format!("CUDA {version} from {}", paths.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}
