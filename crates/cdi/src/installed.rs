//! Reads the CDI specs already installed on a host, for `gpubox doctor`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::discover::versioned_library_name;
use crate::rules::check;
use crate::{CdiError, Driver, DriverVersion, Spec, KIND};

/// The folders container engines read CDI specs from, in their priority order.
pub const SPEC_DIRS: &[&str] = &["/etc/cdi", "/var/run/cdi"];

/// Libraries whose version suffix is the driver version a spec was made for, most telling first.
const VERSION_LIBRARIES: &[&str] = &["libcuda", "libnvidia-ml"];

/// An installed, valid CDI spec of kind `nvidia.com/gpu`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledSpec {
    pub path: PathBuf,
    pub kind: String,
    /// Device names in the file's order.
    pub devices: Vec<String>,
    /// The version suffix of the `libcuda.so.<version>` (else `libnvidia-ml.so.<version>`)
    /// the spec mounts; `None` when it mounts neither.
    pub driver_version: Option<DriverVersion>,
}

/// Every `*.json` and `*.yaml` file in [`SPEC_DIRS`] under `root` (`/` for the running host)
/// whose kind is `nvidia.com/gpu`, in folder then name order. Files of other kinds are left
/// out; a file that is not YAML/JSON, or is an invalid CDI spec of this kind, or a folder
/// that cannot be read, is an error naming it.
pub fn installed_specs(root: &Path) -> Vec<Result<InstalledSpec, CdiError>> {
    let mut found = Vec::new();
    for dir in SPEC_DIRS {
        let dir = root.join(dir.trim_start_matches('/'));
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                found.push(Err(CdiError::Read { path: dir, source }));
                continue;
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| {
                matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml")
                )
            })
            .collect();
        paths.sort();
        found.extend(paths.iter().filter_map(|path| read_installed(path)));
    }
    found
}

/// Whether `spec` was made for `driver`: the same driver version, and every GPU listed by
/// index and (when it has one) by UUID, plus `all`. A GPU swapped or added also makes a
/// spec stale.
pub fn spec_matches_driver(spec: &InstalledSpec, driver: &Driver) -> bool {
    let listed = |name: &str| spec.devices.iter().any(|device| device == name);
    spec.driver_version.as_ref() == Some(&driver.version)
        && listed("all")
        && driver
            .gpus
            .iter()
            .all(|gpu| listed(&gpu.index.to_string()) && gpu.uuid.as_deref().is_none_or(&listed))
}

/// The spec at `path`, or `None` when it is of another kind.
fn read_installed(path: &Path) -> Option<Result<InstalledSpec, CdiError>> {
    let parse_error = |reason: String| CdiError::SpecParse {
        path: path.to_owned(),
        reason,
    };
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(source) => {
            return Some(Err(CdiError::Read {
                path: path.to_owned(),
                source,
            }))
        }
    };
    // YAML is a superset of JSON, so one parser reads both, as it does in container engines.
    let document: serde_norway::Value = match serde_norway::from_slice(&bytes) {
        Ok(document) => document,
        Err(e) => return Some(Err(parse_error(e.to_string()))),
    };
    if document.get("kind").and_then(|kind| kind.as_str()) != Some(KIND) {
        return None;
    }
    let spec: Spec = match serde_norway::from_value(document) {
        Ok(spec) => spec,
        Err(e) => return Some(Err(parse_error(e.to_string()))),
    };
    if let Err(reason) = check(&spec) {
        return Some(Err(CdiError::InstalledSpecInvalid {
            path: path.to_owned(),
            reason,
        }));
    }
    Some(Ok(summarize(path, spec)))
}

/// The spec's devices and the driver version its mounts name.
fn summarize(path: &Path, spec: Spec) -> InstalledSpec {
    let mounted: Vec<&str> = spec
        .container_edits
        .iter()
        .chain(spec.devices.iter().map(|device| &device.container_edits))
        .flat_map(|edits| edits.mounts.as_deref().unwrap_or_default())
        .map(|mount| mount.host_path.as_str())
        .collect();
    let driver_version = VERSION_LIBRARIES.iter().find_map(|wanted| {
        mounted.iter().find_map(|host_path| {
            let name = Path::new(host_path).file_name()?.to_str()?;
            let (stem, _, version) = versioned_library_name(name)?;
            (stem == *wanted).then_some(version)
        })
    });
    InstalledSpec {
        path: path.to_owned(),
        devices: spec
            .devices
            .iter()
            .map(|device| device.name.clone())
            .collect(),
        kind: spec.kind,
        driver_version,
    }
}

/// Where the host's CDI specs for `nvidia.com/gpu` stand against its driver.
#[derive(Debug)]
pub enum SpecStatus {
    /// None in [`SPEC_DIRS`].
    Missing,
    /// One cannot be read or is not a valid spec.
    Broken(CdiError),
    /// One was made for another driver (or another set of GPUs).
    Stale(InstalledSpec),
    /// All are readable and, when the driver is known, made for it.
    Current(Vec<InstalledSpec>),
}

/// The state of the specs under `root`; with no `driver` they are only checked
/// for being readable and valid.
pub fn spec_status(root: &Path, driver: Option<&Driver>) -> SpecStatus {
    let mut current = Vec::new();
    for spec in installed_specs(root) {
        match spec {
            Err(error) => return SpecStatus::Broken(error),
            Ok(spec) if driver.is_some_and(|d| !spec_matches_driver(&spec, d)) => {
                return SpecStatus::Stale(spec)
            }
            Ok(spec) => current.push(spec),
        }
    }
    if current.is_empty() {
        SpecStatus::Missing
    } else {
        SpecStatus::Current(current)
    }
}
