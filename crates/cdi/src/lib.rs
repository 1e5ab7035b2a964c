//! Host-side NVIDIA plumbing for `gpubox cdi generate` and `gpubox doctor`: discovers the
//! driver installed on a host (the real one, or a fake tree rooted elsewhere), turns it into
//! a CDI spec of kind `nvidia.com/gpu` (validated with the CNCF `container-device-interface`
//! crate), renders and writes that spec, and inspects the CDI specs already installed.
//!
//! It owns nothing in the image and nothing in the container: the build side lives in
//! `gpubox-cuda`, the in-container driver linking in `gpubox-init`, printing and flags in
//! the `gpubox` CLI. This library never prints and writes files only in [`write_spec`]
//! (and, for tests, in [`fake_host::build_fake_host`]).

mod discover;
pub mod fake_host;
mod installed;
mod spec;

use std::path::PathBuf;

pub use container_device_interface::specs::config::Spec;
pub use discover::{discover, Driver, Gpu, HostRoots};
pub use gpubox_cuda::DriverVersion;
pub use installed::{
    installed_specs, spec_matches_driver, spec_status, InstalledSpec, SpecStatus, SPEC_DIRS,
};
pub use spec::{generate, render, validate, write_spec, SpecFormat, KIND};

/// Everything that can go wrong while discovering a driver or handling CDI specs; each
/// message names the path involved and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CdiError {
    #[error(
        "no NVIDIA driver found: {} is missing and no libcuda.so.<version> under {}; install the NVIDIA driver, or pass --driver-root",
        version_file.display(),
        list(searched)
    )]
    NoDriver {
        version_file: PathBuf,
        searched: Vec<PathBuf>,
    },
    #[error(
        "NVIDIA kernel module {version} is loaded ({}) but no lib*.so.{version} is under {}; the driver's libraries do not match the loaded module: reboot after a driver update, or pass --driver-root where the {version} libraries are",
        version_file.display(),
        list(searched)
    )]
    NoLibraries {
        version: DriverVersion,
        version_file: PathBuf,
        searched: Vec<PathBuf>,
    },
    #[error("cannot read {}: {source}; check that it exists and is readable", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot understand {}: {reason}; is this an NVIDIA driver's /proc/driver/nvidia?", path.display())]
    DriverInfo { path: PathBuf, reason: String },
    #[error("no GPUs are listed under {}; load the nvidia kernel module (`nvidia-smi` or `modprobe nvidia`) and try again", path.display())]
    NoGpus { path: PathBuf },
    #[error("GPU {pci_bus_id} has no device node {}; create it with `nvidia-modprobe -c {minor}` (or run `nvidia-smi` once) and try again", path.display())]
    MissingDeviceNode {
        path: PathBuf,
        pci_bus_id: String,
        minor: u32,
    },
    #[error("{} is not valid UTF-8, which a CDI spec cannot hold; rename it or pass another --driver-root", path.display())]
    NonUtf8Path { path: PathBuf },
    #[error("the generated CDI spec is invalid: {reason}; this is a gpubox bug, please report it with the spec")]
    InvalidSpec { reason: String },
    #[error("cannot render the CDI spec as {format}: {reason}")]
    Render { format: SpecFormat, reason: String },
    #[error("cannot write the CDI spec to {}: {source}; check that the folder exists and is writable (run as root for /etc/cdi)", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a readable CDI spec: {reason}; fix or delete it (`gpubox cdi generate --output {}` writes a fresh one)", path.display(), path.display())]
    SpecParse { path: PathBuf, reason: String },
    #[error("{} is not a valid CDI spec: {reason}; regenerate it with `gpubox cdi generate --output {}`", path.display(), path.display())]
    InstalledSpecInvalid { path: PathBuf, reason: String },
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
