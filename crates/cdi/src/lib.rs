//! Host-side NVIDIA plumbing for `gpubox cdi generate` and `gpubox doctor`: discovers the
//! driver installed on a host (the real one, or a fake tree rooted elsewhere), turns it into
//! a CDI spec of kind `nvidia.com/gpu`, validates, renders and writes that spec, and inspects
//! the CDI specs already installed.
//!
//! x86-64 and arm64 (Grace Hopper, GH200/GB200) hosts are discovered alike. The driver's
//! libraries are looked for in `usr/lib64`, Debian's multiarch folder
//! (`usr/lib/x86_64-linux-gnu` or `usr/lib/aarch64-linux-gnu`), `usr/lib`, `lib64`,
//! `lib/<triplet>` and `usr/local/nvidia/lib64`. Which multiarch folder is the host's comes
//! from the tree itself (the one holding `libcuda.so.<version>`, [`Driver::architecture`]),
//! not from the machine running gpubox, so `--driver-root` works on another architecture's
//! tree; the other architecture's folder is then left alone. Binaries (`usr/bin`), firmware
//! (`lib/firmware/nvidia/<version>`), IPC sockets and device nodes are at the same paths on
//! both, and a spec mounts every file at its own path, so the container sees the host's
//! layout.
//!
//! It owns the CDI spec document ([`Spec`] and the types under it, serde structs with the
//! specification's field names) and its validation. Both used to come from the CNCF
//! `container-device-interface` crate, which brought a JSON Schema engine with an HTTP
//! client, an OCI runtime spec model and a CLI parser for what is a few hundred lines of
//! rules: this crate's normal dependency tree held 184 distinct crates (421 lines of
//! `cargo tree -e normal`); with its own model and checks it holds 32 (47 lines). The rules
//! are those container engines apply when they load a spec, taken from the reference
//! implementations (the Go library podman, containerd and CRI-O use, and the CNCF Rust crate):
//! - `cdiVersion` is a released version (0.1.0 to 1.1.0, a leading `v` allowed) and at least
//!   the one the content needs: a mount `type` needs 0.4.0; a device name not starting with a
//!   letter or a device node `hostPath` 0.5.0; annotations or a dot in the class 0.6.0;
//!   `intelRdt` or `additionalGids` 0.7.0; `netDevices`, `intelRdt.schemata` or
//!   `intelRdt.enableMonitoring` 1.1.0, which also drops `enableCMT` and `enableMBM`;
//! - `kind` is `vendor/class`, each an ASCII name of letters, digits, `-`, `_`, `.` that
//!   starts with a letter and ends with a letter or digit; device names are alike but may
//!   start with a digit and may hold `:`; there is at least one device and names are unique;
//! - annotation keys are Kubernetes qualified names, keys and values within 256 KiB;
//! - every device edits something; env entries are `NAME=VALUE`; device nodes have a path,
//!   a known type and `r`/`w`/`m` permissions; hooks a known hook point, a path and a timeout
//!   that fits 32 bits; mounts both paths; `intelRdt.closID` is a usable group name; net
//!   devices are named and not repeated.
//!
//! Unknown fields make a spec unreadable, as they do for the engines (the Go library parses
//! strictly): `gpubox doctor` must not call fine a spec the engines would refuse. YAML is read
//! and written with `serde_norway` (a maintained fork of the deprecated `serde_yaml`, whose
//! output it keeps); a library's soname comes from the workspace's one ELF reader,
//! [`gpubox_hostbin::soname`].
//!
//! It owns nothing in the image and nothing in the container: the build side lives in
//! `gpubox-cuda`, the in-container driver linking in `gpubox-init`, printing and flags in
//! the `gpubox` CLI. This library never prints and writes files only in [`write_spec`]
//! (and, for tests, in [`fake_host::build_fake_host`]).

mod discover;
pub mod fake_host;
mod installed;
mod model;
mod rules;
mod spec;

use std::path::PathBuf;

pub use discover::{discover, Driver, Gpu, HostRoots};
pub use gpubox_cuda::{Architecture, DriverVersion};
pub use installed::{
    installed_specs, spec_matches_driver, spec_status, InstalledSpec, SpecStatus, SPEC_DIRS,
};
pub use model::{ContainerEdits, Device, DeviceNode, Hook, IntelRdt, Mount, NetDevice, Spec};
pub use spec::{generate, render, validate, write_spec, SpecFormat, KIND};

/// Everything that can go wrong while discovering a driver or handling CDI specs; each
/// message names the path involved and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CdiError {
    #[error(
        "no NVIDIA driver found under {}: {} is missing and {}; install the NVIDIA driver, or pass --driver-root with the folder that holds it",
        driver_root.display(),
        version_file.display(),
        if searched.is_empty() {
            format!("it has none of the driver's library folders ({})", discover::LIBRARY_DIRS.join(", "))
        } else {
            format!("no libcuda.so.<version> is in {}", list(searched))
        }
    )]
    NoDriver {
        driver_root: PathBuf,
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
