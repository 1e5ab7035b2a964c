//! Finds the NVIDIA driver's files on a host: version, libraries, binaries, firmware, IPC
//! sockets, control device nodes and GPUs.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use gpubox_cuda::{kernel_module_version, Architecture, GpuInformation};

use crate::{CdiError, DriverVersion};

/// Folders (relative to the driver root) that hold the driver's libraries, most specific
/// first: with a merged `/usr`, `lib/x86_64-linux-gnu` is `usr/lib/x86_64-linux-gnu` again
/// and is skipped as a duplicate. Debian's multiarch folders of both architectures are
/// listed (x86-64, and arm64 for Grace Hopper hosts); a host's discovery searches only its
/// own one when the tree shows which that is (see [`host_architecture`]).
pub(crate) const LIBRARY_DIRS: &[&str] = &[
    "usr/lib64",
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "usr/lib",
    "lib64",
    "lib/x86_64-linux-gnu",
    "lib/aarch64-linux-gnu",
    "usr/local/nvidia/lib64",
];
/// Where the binaries are: the same on every architecture (Debian has no multiarch `bin`).
const BINARY_DIRS: &[&str] = &["usr/bin", "bin"];
const BINARIES: &[&str] = &[
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
];
const IPC_SOCKETS: &[&str] = &[
    "run/nvidia-persistenced/socket",
    "run/nvidia-fabricmanager/socket",
    "tmp/nvidia-mps",
];
const CONTROL_NODES: &[&str] = &[
    "dev/nvidiactl",
    "dev/nvidia-uvm",
    "dev/nvidia-uvm-tools",
    "dev/nvidia-modeset",
];
const VERSION_FILE: &str = "proc/driver/nvidia/version";
const GPUS_DIR: &str = "proc/driver/nvidia/gpus";

/// Where a host's NVIDIA files are. On a real host all three are `/`. For a fake tree (tests,
/// or a driver unpacked somewhere), [`HostRoots::under`] puts all three at the tree's root:
/// `/proc/driver/nvidia` is then looked up inside the tree too, which is what a tree made by
/// [`crate::fake_host::build_fake_host`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRoots {
    /// Where the driver's libraries, binaries, firmware and IPC sockets are.
    pub driver_root: PathBuf,
    /// Where `dev/nvidia*` is.
    pub dev_root: PathBuf,
    /// Where `proc/driver/nvidia` is.
    pub proc_root: PathBuf,
}

impl HostRoots {
    /// The running host: every root is `/`.
    pub fn system() -> Self {
        Self::under(Path::new("/"))
    }

    /// A tree rooted at `root` holding the driver, `/dev` and `/proc` alike.
    pub fn under(root: &Path) -> Self {
        Self {
            driver_root: root.to_owned(),
            dev_root: root.to_owned(),
            proc_root: root.to_owned(),
        }
    }
}

/// One GPU as `/proc/driver/nvidia/gpus/<pci>/information` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpu {
    /// Position in PCI bus order, which is how NVML and `nvidia-smi` number GPUs.
    pub index: u32,
    /// The N of `/dev/nvidiaN`.
    pub minor: u32,
    /// `GPU-…`, when the driver reports one.
    pub uuid: Option<String>,
    pub pci_bus_id: String,
    pub model: Option<String>,
}

/// The installed driver's files, as host paths (under the roots), each list sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Driver {
    pub version: DriverVersion,
    /// The host's architecture as its driver's layout shows it: the multiarch folder its
    /// `libcuda.so.<version>` is in (`usr/lib/aarch64-linux-gnu` on an arm64 Debian or
    /// Ubuntu host). `None` when no multiarch folder holds one (Fedora's `usr/lib64`,
    /// `usr/local/nvidia/lib64`), which name no architecture.
    pub architecture: Option<Architecture>,
    /// `lib*.so.<version>` files in the driver root's library folders (`usr/lib64`,
    /// `usr/lib/x86_64-linux-gnu` or `usr/lib/aarch64-linux-gnu`, ...). Libraries that
    /// carry their own version (the EGL platform libraries such as
    /// `libnvidia-egl-wayland.so.1.1.13`) are graphics only and are left out: CUDA, NVML
    /// and the compilers all carry the driver's version.
    pub libraries: Vec<PathBuf>,
    pub binaries: Vec<PathBuf>,
    /// Files in `lib/firmware/nvidia/<version>/` (the GSP firmware).
    pub firmware: Vec<PathBuf>,
    pub ipc_sockets: Vec<PathBuf>,
    /// The present ones of `nvidiactl`, `nvidia-uvm`, `nvidia-uvm-tools`, `nvidia-modeset`.
    pub device_nodes: Vec<PathBuf>,
    pub gpus: Vec<Gpu>,
}

/// Discovers the driver under `roots`. The version comes from
/// `<proc_root>/proc/driver/nvidia/version`, else from the `libcuda.so.<version>` suffix.
pub fn discover(roots: &HostRoots) -> Result<Driver, CdiError> {
    let version_file = roots.proc_root.join(VERSION_FILE);
    let architecture = host_architecture(&roots.driver_root);
    let library_dirs = library_dirs(&roots.driver_root, architecture);
    let libraries = versioned_libraries(&library_dirs)?;

    let (version, version_text) = match read_optional(&version_file)? {
        Some(text) => kernel_module_version(&text)
            .map(|(version, spelled)| (version, spelled.to_owned()))
            .ok_or_else(|| CdiError::DriverInfo {
                path: version_file.clone(),
                reason: "no \"NVRM version: ... Kernel Module <version>\" line".to_owned(),
            })?,
        None => libraries
            .iter()
            .find(|lib| lib.stem == "libcuda")
            .map(|lib| (lib.version.clone(), lib.version_text.clone()))
            .ok_or_else(|| CdiError::NoDriver {
                driver_root: roots.driver_root.clone(),
                version_file: version_file.clone(),
                searched: library_dirs.clone(),
            })?,
    };

    let mut libraries: Vec<PathBuf> = libraries
        .into_iter()
        .filter(|lib| lib.version == version)
        .map(|lib| lib.path)
        .collect();
    if libraries.is_empty() {
        return Err(CdiError::NoLibraries {
            version,
            version_file,
            searched: library_dirs,
        });
    }
    libraries.sort();

    let firmware_dir = roots
        .driver_root
        .join("lib/firmware/nvidia")
        .join(&version_text);
    Ok(Driver {
        version,
        architecture,
        libraries,
        binaries: binaries(&roots.driver_root),
        firmware: files_in(&firmware_dir)?,
        ipc_sockets: present(&roots.driver_root, IPC_SOCKETS),
        device_nodes: present(&roots.dev_root, CONTROL_NODES),
        gpus: gpus(&roots.proc_root.join(GPUS_DIR))?,
    })
}

/// The host path of GPU `minor`'s device node.
pub(crate) fn gpu_node(roots: &HostRoots, minor: u32) -> PathBuf {
    roots.dev_root.join(format!("dev/nvidia{minor}"))
}

/// The GPUs folder, for messages about it.
pub(crate) fn gpus_dir(roots: &HostRoots) -> PathBuf {
    roots.proc_root.join(GPUS_DIR)
}

/// `(stem, version as spelled, version)` of a `lib*.so.<version>` file name whose suffix is
/// a driver version: `libcuda.so.550.54.14` gives `("libcuda", "550.54.14", 550.54.14)`.
pub(crate) fn versioned_library_name(name: &str) -> Option<(&str, &str, DriverVersion)> {
    let (stem, suffix) = name.split_once(".so.")?;
    if !stem.starts_with("lib") || !is_dotted_number(suffix) {
        return None;
    }
    Some((stem, suffix, suffix.parse().ok()?))
}

fn is_dotted_number(text: &str) -> bool {
    text.contains('.')
        && text
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

struct VersionedLibrary {
    path: PathBuf,
    stem: String,
    version: DriverVersion,
    version_text: String,
}

/// The existing library folders under `root`, minus those that resolve to one already
/// listed, and minus the multiarch folders of architectures other than `architecture`
/// (all are kept when it is `None`).
fn library_dirs(root: &Path, architecture: Option<Architecture>) -> Vec<PathBuf> {
    let foreign = |dir: &&str| {
        architecture.is_some_and(|own| {
            Architecture::ALL
                .iter()
                .any(|other| *other != own && Path::new(dir).ends_with(other.multiarch()))
        })
    };
    let dirs: Vec<&str> = LIBRARY_DIRS
        .iter()
        .copied()
        .filter(|dir| !foreign(dir))
        .collect();
    distinct_dirs(root, &dirs)
}

/// The host's architecture, from the tree under `root` rather than from the machine
/// running gpubox (`--driver-root` may hold another machine's driver, and the tests' fake
/// hosts are either): the architecture whose multiarch folder (`usr/lib/<triplet>` or
/// `lib/<triplet>`) holds a `libcuda.so.<version>`. When both architectures' folders hold
/// one (a multiarch host with the other architecture's driver package installed too), the
/// machine running gpubox decides, as the loaded kernel module is its own; `None` when
/// neither does, or when that tie cannot be broken.
pub(crate) fn host_architecture(root: &Path) -> Option<Architecture> {
    let holding: Vec<Architecture> = Architecture::ALL
        .into_iter()
        .filter(|arch| {
            ["usr/lib", "lib"]
                .iter()
                .any(|lib| holds_libcuda(&root.join(lib).join(arch.multiarch())))
        })
        .collect();
    match holding[..] {
        [only] => Some(only),
        _ => Architecture::native().filter(|native| holding.contains(native)),
    }
}

/// Whether `dir` has a `libcuda.so.<version>` entry (an unreadable folder has none).
fn holds_libcuda(dir: &Path) -> bool {
    fs::read_dir(dir).into_iter().flatten().any(|entry| {
        entry.ok().is_some_and(|entry| {
            entry.file_name().to_str().is_some_and(|name| {
                versioned_library_name(name).is_some_and(|(stem, _, _)| stem == "libcuda")
            })
        })
    })
}

fn distinct_dirs(root: &Path, relative: &[&str]) -> Vec<PathBuf> {
    let mut seen = HashSet::new();
    relative
        .iter()
        .map(|dir| root.join(dir))
        .filter(|dir| {
            fs::canonicalize(dir)
                .map(|real| real.is_dir() && seen.insert(real))
                .unwrap_or(false)
        })
        .collect()
}

fn versioned_libraries(dirs: &[PathBuf]) -> Result<Vec<VersionedLibrary>, CdiError> {
    let mut found = Vec::new();
    for dir in dirs {
        for path in files_in(dir)? {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some((stem, version_text, version)) = versioned_library_name(name) {
                found.push(VersionedLibrary {
                    stem: stem.to_owned(),
                    version_text: version_text.to_owned(),
                    version,
                    path: path.clone(),
                });
            }
        }
    }
    Ok(found)
}

fn binaries(root: &Path) -> Vec<PathBuf> {
    let dirs = distinct_dirs(root, BINARY_DIRS);
    let mut found: Vec<PathBuf> = BINARIES
        .iter()
        .filter_map(|name| {
            dirs.iter()
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
        .collect();
    found.sort();
    found
}

fn present(root: &Path, relative: &[&str]) -> Vec<PathBuf> {
    relative
        .iter()
        .map(|path| root.join(path))
        .filter(|path| fs::symlink_metadata(path).is_ok())
        .collect()
}

/// Files and file symlinks directly in `dir`, sorted; nothing when `dir` does not exist.
fn files_in(dir: &Path) -> Result<Vec<PathBuf>, CdiError> {
    let read_error = |source| CdiError::Read {
        path: dir.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_error(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(read_error)?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn read_optional(path: &Path) -> Result<Option<String>, CdiError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CdiError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The GPUs under `dir` (`<pci bus id>/information` each), numbered in PCI bus order.
fn gpus(dir: &Path) -> Result<Vec<Gpu>, CdiError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CdiError::Read {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut bus_ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CdiError::Read {
            path: dir.to_owned(),
            source,
        })?;
        bus_ids.push(entry.file_name().to_string_lossy().into_owned());
    }
    bus_ids.sort_by_key(|id| id.to_ascii_lowercase());

    let mut gpus = Vec::new();
    for (index, pci_bus_id) in (0u32..).zip(bus_ids) {
        let path = dir.join(&pci_bus_id).join("information");
        let text = fs::read_to_string(&path).map_err(|source| CdiError::Read {
            path: path.clone(),
            source,
        })?;
        let information = GpuInformation::parse(&text);
        let minor = information.minor.ok_or_else(|| CdiError::DriverInfo {
            path: path.clone(),
            reason: "no numeric \"Device Minor:\" line".to_owned(),
        })?;
        gpus.push(Gpu {
            index,
            minor,
            uuid: information.uuid,
            pci_bus_id,
            model: information.model,
        });
    }
    Ok(gpus)
}
