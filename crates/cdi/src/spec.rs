//! Turns a discovered [`Driver`] into a CDI spec, validates, renders and writes it.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use container_device_interface::specs::config::CURRENT_VERSION;
use container_device_interface::version::minimum_required_version;
use object::read::elf::{Dyn, ElfFile64};
use object::{elf, Endianness, ReadCache};
use serde_json::{json, Value};

use crate::discover::{gpu_node, gpus_dir, versioned_library_name};
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
/// or annotations. `cdiVersion` is the lowest version the content needs, as the CNCF crate
/// computes it (device names starting with a digit need 0.5.0).
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
    devices.push(json!({"name": "all", "containerEdits": {"deviceNodes": all_nodes}}));

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

    let mut common = serde_json::Map::new();
    if !control_nodes.is_empty() {
        common.insert("deviceNodes".to_owned(), control_nodes.into());
    }
    if !mounts.is_empty() {
        common.insert("mounts".to_owned(), mounts.into());
    }
    let mut value = json!({
        "cdiVersion": CURRENT_VERSION,
        "kind": KIND,
        "devices": devices,
        "containerEdits": common,
    });
    let draft = from_value(value.clone())?;
    let needed = minimum_required_version(&draft).map_err(|e| CdiError::InvalidSpec {
        reason: format!("{e:#}"),
    })?;
    value["cdiVersion"] = needed.to_string().into();
    from_value(value)
}

/// Checks `spec` the way container engines do, with the CNCF crate (schema, names, version).
pub fn validate(spec: &Spec) -> Result<(), CdiError> {
    check(spec).map_err(|reason| CdiError::InvalidSpec { reason })
}

/// The CNCF crate's verdict on `spec`, as a message.
pub(crate) fn check(spec: &Spec) -> Result<(), String> {
    // The path only names the spec inside the crate's own messages.
    container_device_interface::spec::new_spec(spec, &PathBuf::from("nvidia.yaml"), 0)
        .map(drop)
        .map_err(|e| format!("{e:#}"))
}

/// `spec` as JSON (pretty, ending in a newline) or YAML. Deterministic: the order is the
/// spec's own (see [`generate`]) and fields come in the CDI crate's declaration order.
pub fn render(spec: &Spec, format: SpecFormat) -> Result<Vec<u8>, CdiError> {
    let rendered = match format {
        SpecFormat::Json => serde_json::to_vec_pretty(spec)
            .map(|mut bytes| {
                bytes.push(b'\n');
                bytes
            })
            .map_err(|e| e.to_string()),
        SpecFormat::Yaml => serde_yaml::to_string(spec)
            .map(String::into_bytes)
            .map_err(|e| e.to_string()),
    };
    rendered.map_err(|reason| CdiError::Render { format, reason })
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder (created when
/// missing), synced, mode 0644, then renamed over `path`. On error the temporary file is gone.
pub fn write_spec(path: &Path, bytes: &[u8]) -> Result<(), CdiError> {
    let write_error = |source| CdiError::Write {
        path: path.to_owned(),
        source,
    };
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs::create_dir_all(folder).map_err(write_error)?;
    let mut temporary = tempfile::Builder::new()
        .prefix(".gpubox-cdi-")
        .tempfile_in(folder)
        .map_err(write_error)?;
    temporary.write_all(bytes).map_err(write_error)?;
    let file: &File = temporary.as_file();
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    temporary.persist(path).map_err(|e| write_error(e.error))?;
    Ok(())
}

fn from_value(value: Value) -> Result<Spec, CdiError> {
    serde_json::from_value(value).map_err(|e| CdiError::InvalidSpec {
        reason: e.to_string(),
    })
}

fn device(name: &str, node: &Value) -> Value {
    json!({"name": name, "containerEdits": {"deviceNodes": [node]}})
}

/// A device node at its container path, with `hostPath` only when the node lives elsewhere.
fn device_node(host: &Path, dev_root: &Path) -> Result<Value, CdiError> {
    let container = in_container(host, dev_root);
    let mut node = json!({"path": utf8(&container)?});
    if container != host {
        node["hostPath"] = utf8(host)?.into();
    }
    Ok(node)
}

fn mount(host: &Path, container: &Path, options: &[&str]) -> Result<Value, CdiError> {
    Ok(json!({
        "hostPath": utf8(host)?,
        "containerPath": utf8(container)?,
        "options": options,
    }))
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
/// `libGLX_nvidia.so.0`, not `.so.1`, for example), else the stem plus `.so.1`, which is
/// what CUDA, NVML and the JIT compiler libraries use.
fn nix_names(library: &Path) -> BTreeSet<String> {
    let Some(name) = library.file_name().and_then(|n| n.to_str()) else {
        return BTreeSet::new();
    };
    let Some((stem, _, _)) = versioned_library_name(name) else {
        return BTreeSet::from([name.to_owned()]);
    };
    let soname = elf_soname(library).unwrap_or_else(|| format!("{stem}.so.1"));
    BTreeSet::from([name.to_owned(), soname, format!("{stem}.so")])
}

/// `DT_SONAME` of a 64-bit ELF library, read through its section headers; `None` for
/// anything else (a placeholder file in a fake tree, a stripped or 32-bit file).
fn elf_soname(path: &Path) -> Option<String> {
    let data = ReadCache::new(File::open(path).ok()?);
    let elf = ElfFile64::<Endianness, _>::parse(&data).ok()?;
    let endian = elf.endian();
    let sections = elf.elf_section_table();
    let (entries, strings_index) = sections.dynamic(endian, &data).ok()??;
    let strings = sections.strings(endian, &data, strings_index).ok()?;
    let entry = entries
        .iter()
        .find(|entry| entry.tag32(endian) == Some(elf::DT_SONAME))?;
    let offset = u32::try_from(entry.d_val(endian)).ok()?;
    let soname = strings.get(offset).ok()?;
    String::from_utf8(soname.to_vec()).ok()
}
