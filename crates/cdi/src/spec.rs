//! Turns a discovered [`Driver`] into a CDI spec, validates, renders and writes it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::discover::{gpu_node, gpus_dir, versioned_library_name};
use crate::model::{ContainerEdits, Device, DeviceNode, Mount};
use crate::rules::{check, minimum_required_version};
use crate::{CdiError, Driver, HostRoots, Spec};

/// The CDI kind of every spec this crate makes and looks for.
pub const KIND: &str = "nvidia.com/gpu";

/// Where nixpkgs programs look for the driver (their RUNPATH has it, via `addDriverRunpath`).
const NIX_DRIVER_DIR: &str = "/run/opengl-driver/lib";
/// The options `nvidia-ctk cdi generate` uses for driver files.
const FILE_OPTIONS: &[&str] = &["ro", "nosuid", "nodev", "bind"];
const SOCKET_OPTIONS: &[&str] = &["ro", "nosuid", "nodev", "bind", "noexec"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecFormat {
    Json,
    Yaml,
}

impl std::fmt::Display for SpecFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpecFormat::Json => "JSON",
            SpecFormat::Yaml => "YAML",
        })
    }
}

/// The CDI spec for `driver`: devices `"0"`, `"1"`, … by index (in index order), then by UUID
/// (in index order), then `"all"`; each holds its GPUs' `/dev/nvidiaN` nodes. The edits
/// common to all devices hold, each list sorted: the control device nodes; every library at
/// its own path and again in `/run/opengl-driver/lib` under its file name, its soname and its
/// `.so` name; the binaries, firmware files and IPC sockets at their own paths. Container
/// paths are host paths with the root (`driver_root` or `dev_root`) taken off. No env, hooks
/// or annotations. `cdiVersion` is the lowest version the content needs, as container engines
/// compute it (device names starting with a digit and device nodes with a `hostPath` need
/// 0.5.0).
pub fn generate(driver: &Driver, roots: &HostRoots) -> Result<Spec, CdiError> {
    if driver.gpus.is_empty() {
        return Err(CdiError::NoGpus {
            path: gpus_dir(roots),
        });
    }
    let mut by_index = Vec::new();
    let mut by_uuid = Vec::new();
    let mut all_nodes = Vec::new();
    for gpu in &driver.gpus {
        let host = gpu_node(roots, gpu.minor);
        if !host.exists() {
            return Err(CdiError::MissingDeviceNode {
                path: host,
                pci_bus_id: gpu.pci_bus_id.clone(),
                minor: gpu.minor,
            });
        }
        let node = device_node(&host, &roots.dev_root)?;
        by_index.push(device(&gpu.index.to_string(), &node));
        if let Some(uuid) = &gpu.uuid {
            by_uuid.push(device(uuid, &node));
        }
        all_nodes.push(node);
    }
    let mut devices = by_index;
    devices.append(&mut by_uuid);
    devices.push(Device {
        name: "all".to_owned(),
        annotations: BTreeMap::new(),
        container_edits: ContainerEdits {
            device_nodes: Some(all_nodes),
            ..ContainerEdits::default()
        },
    });

    let control_nodes = driver
        .device_nodes
        .iter()
        .map(|host| device_node(host, &roots.dev_root))
        .collect::<Result<Vec<_>, _>>()?;

    let mut mounts = Vec::new();
    for library in &driver.libraries {
        mounts.push(mount(
            library,
            &in_container(library, &roots.driver_root),
            FILE_OPTIONS,
        )?);
    }
    // Two folders may hold the same library name; the first (sorted) one takes the name.
    let mut nix_paths = BTreeSet::new();
    for library in &driver.libraries {
        for name in nix_names(library) {
            let container = Path::new(NIX_DRIVER_DIR).join(name);
            if nix_paths.insert(container.clone()) {
                mounts.push(mount(library, &container, FILE_OPTIONS)?);
            }
        }
    }
    for file in driver.binaries.iter().chain(&driver.firmware) {
        mounts.push(mount(
            file,
            &in_container(file, &roots.driver_root),
            FILE_OPTIONS,
        )?);
    }
    for socket in &driver.ipc_sockets {
        mounts.push(mount(
            socket,
            &in_container(socket, &roots.driver_root),
            SOCKET_OPTIONS,
        )?);
    }

    let mut spec = Spec {
        cdi_version: String::new(),
        kind: KIND.to_owned(),
        annotations: BTreeMap::new(),
        devices,
        container_edits: Some(ContainerEdits {
            device_nodes: non_empty(control_nodes),
            mounts: non_empty(mounts),
            ..ContainerEdits::default()
        }),
    };
    spec.cdi_version = minimum_required_version(&spec).0.to_string();
    Ok(spec)
}

/// Checks `spec` the way container engines do when they load it: known `cdiVersion` and at
/// least the one its content needs, `vendor/class` kind, device names, unique devices,
/// annotations and container edits (see the crate doc for where the rules come from).
pub fn validate(spec: &Spec) -> Result<(), CdiError> {
    check(spec).map_err(|reason| CdiError::InvalidSpec { reason })
}

/// `spec` as JSON (pretty, ending in a newline) or YAML. Deterministic: the order is the
/// spec's own (see [`generate`]) and fields come in the CDI specification's order.
pub fn render(spec: &Spec, format: SpecFormat) -> Result<Vec<u8>, CdiError> {
    let rendered = match format {
        SpecFormat::Json => serde_json::to_vec_pretty(spec)
            .map(|mut bytes| {
                bytes.push(b'\n');
                bytes
            })
            .map_err(|e| e.to_string()),
        SpecFormat::Yaml => serde_norway::to_string(spec)
            .map(String::into_bytes)
            .map_err(|e| e.to_string()),
    };
    rendered.map_err(|reason| CdiError::Render { format, reason })
}

/// Writes `bytes` to `path` atomically (the folder is created when missing),
/// mode 0644: readers see the old spec or the new one, never half of one.
pub fn write_spec(path: &Path, bytes: &[u8]) -> Result<(), CdiError> {
    let write_error = |source| CdiError::Write {
        path: path.to_owned(),
        source,
    };
    fs::create_dir_all(gpubox_atomic::folder_of(path)).map_err(write_error)?;
    gpubox_atomic::write_bytes(path, &gpubox_atomic::Options::new().mode(0o644), bytes)
        .map_err(|e| write_error(e.into()))
}

/// `Some(list)`, or `None` for an empty list (left out of the rendered spec).
fn non_empty<T>(list: Vec<T>) -> Option<Vec<T>> {
    (!list.is_empty()).then_some(list)
}

fn device(name: &str, node: &DeviceNode) -> Device {
    Device {
        name: name.to_owned(),
        annotations: BTreeMap::new(),
        container_edits: ContainerEdits {
            device_nodes: Some(vec![node.clone()]),
            ..ContainerEdits::default()
        },
    }
}

/// A device node at its container path, with `hostPath` only when the node lives elsewhere.
fn device_node(host: &Path, dev_root: &Path) -> Result<DeviceNode, CdiError> {
    let container = in_container(host, dev_root);
    Ok(DeviceNode {
        path: utf8(&container)?.to_owned(),
        host_path: if container == host {
            None
        } else {
            Some(utf8(host)?.to_owned())
        },
        ..DeviceNode::default()
    })
}

fn mount(host: &Path, container: &Path, options: &[&str]) -> Result<Mount, CdiError> {
    Ok(Mount {
        host_path: utf8(host)?.to_owned(),
        container_path: utf8(container)?.to_owned(),
        mount_type: None,
        options: Some(options.iter().map(|&option| option.to_owned()).collect()),
    })
}

/// `host` with `root` taken off, as an absolute path; a path outside `root` stays as it is.
fn in_container(host: &Path, root: &Path) -> PathBuf {
    host.strip_prefix(root)
        .map(|relative| Path::new("/").join(relative))
        .unwrap_or_else(|_| host.to_owned())
}

fn utf8(path: &Path) -> Result<&str, CdiError> {
    path.to_str().ok_or_else(|| CdiError::NonUtf8Path {
        path: path.to_owned(),
    })
}

/// The names a library gets in `/run/opengl-driver/lib`: its file name, its soname and its
/// `.so` link name. The soname is the ELF `DT_SONAME` when the file has one (it is
/// `libGLX_nvidia.so.0`, not `.so.1`, for example), read with the workspace's ELF reader
/// ([`gpubox_hostbin::soname`]); else the stem plus `.so.1`, which is what CUDA, NVML and the
/// JIT compiler libraries use. A file that cannot be read as ELF (a placeholder in a fake
/// tree) gets the fallback too.
fn nix_names(library: &Path) -> BTreeSet<String> {
    let Some(name) = library.file_name().and_then(|n| n.to_str()) else {
        return BTreeSet::new();
    };
    let Some((stem, _, _)) = versioned_library_name(name) else {
        return BTreeSet::from([name.to_owned()]);
    };
    let soname = gpubox_hostbin::soname(library)
        .ok()
        .flatten()
        .and_then(|soname| soname.into_string().ok())
        .unwrap_or_else(|| format!("{stem}.so.1"));
    BTreeSet::from([name.to_owned(), soname, format!("{stem}.so")])
}
