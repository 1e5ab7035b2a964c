//! gpubox's own top layer and what goes with it: the GPU settings (NVIDIA
//! variables and labels) from the closure's CUDA, and the host programs
//! `hostBinaries` copies in with their libraries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gpubox_nix::Closure;
use gpubox_oci::{Entry, EntryKind, ImagePath};
use gpubox_rootfs::RootfsInput;
use gpubox_spec::{CopyToRoot, HostBinarySrc, Spec};

use crate::base::Base;
use crate::error::BuildError;
use crate::reporter::Reporter;
use crate::store::StoreContents;

/// The static `gpubox-init` built by this crate's build script.
static INIT: &[u8] = include_bytes!(env!("GPUBOX_INIT_BINARY"));

/// The top layer, with a failure pointed at the spec item it comes from, written
/// through the base's folder links ([`through_base_links`]; each link used is
/// reported).
pub fn top_layer(
    spec: &Spec,
    store: &StoreContents,
    host_files: &[gpubox_hostbin::HostFile],
    base: &Base,
    nix_db: Option<&gpubox_rootfs::NixDb>,
    reporter: &dyn Reporter,
) -> Result<gpubox_rootfs::Rootfs, BuildError> {
    let mut rootfs = assemble(spec, store, host_files, base, nix_db)?;
    let (entries, used) =
        through_base_links(std::mem::take(&mut rootfs.entries), base.folder_links());
    rootfs.entries = entries;
    for (folder, target) in used {
        reporter.step(&format!(
            "the base's {folder} is a link to {target}: gpubox's files for {folder} are \
             written to {target}, and the link stays"
        ));
    }
    Ok(rootfs)
}

/// `entries` as a process in the container would write them, through the base's
/// folder `links` (folder -> where it leads): `bin/gpubox-init` goes to
/// `usr/bin/gpubox-init` when the base's `/bin` is a link to `/usr/bin`. A folder
/// entry where the base has the link is left out: the runtime would replace the link
/// with the folder and hide what the base keeps behind it. Where a moved entry meets
/// one written at its new path, the one written there wins. Returns the entries,
/// sorted, and the links used.
pub fn through_base_links(
    entries: Vec<Entry>,
    links: &BTreeMap<String, String>,
) -> (Vec<Entry>, BTreeMap<ImagePath, ImagePath>) {
    let links: Vec<(ImagePath, ImagePath)> = links
        .iter()
        .filter_map(|(folder, target)| {
            Some((ImagePath::new(folder).ok()?, ImagePath::new(target).ok()?))
        })
        .collect();
    let mut used = BTreeMap::new();
    let mut direct = BTreeMap::new();
    let mut moved = Vec::new();
    for mut entry in entries {
        let link = links
            .iter()
            .filter(|(folder, _)| entry.path.starts_with(folder))
            .max_by_key(|(folder, _)| folder.as_bytes().len());
        match link {
            None => {
                direct.insert(entry.path.clone(), entry);
            }
            // The folder itself: left out, so the base's link stays.
            Some((folder, target))
                if entry.path == *folder && entry.kind == EntryKind::Directory =>
            {
                used.insert(folder.clone(), target.clone());
            }
            // Something else where the base has the link replaces it, as written.
            Some((folder, _)) if entry.path == *folder => {
                direct.insert(entry.path.clone(), entry);
            }
            Some((folder, target)) => {
                let rest = &entry.path.as_bytes()[folder.as_bytes().len() + 1..];
                if let Ok(path) = target.join(rest) {
                    used.insert(folder.clone(), target.clone());
                    entry.path = path;
                    moved.push(entry);
                }
            }
        }
    }
    for entry in moved {
        direct.entry(entry.path.clone()).or_insert(entry);
    }
    (direct.into_values().collect(), used)
}

fn assemble(
    spec: &Spec,
    store: &StoreContents,
    host_files: &[gpubox_hostbin::HostFile],
    base: &Base,
    nix_db: Option<&gpubox_rootfs::NixDb>,
) -> Result<gpubox_rootfs::Rootfs, BuildError> {
    let copy_to_root: Vec<CopyToRoot> = spec
        .copy_to_root
        .iter()
        .map(|item| item.value.clone())
        .collect();
    gpubox_rootfs::assemble_over(
        &RootfsInput {
            closure: &store.closure,
            packages: &store.packages,
            copy_to_root: &copy_to_root,
            host_files,
            init: Arc::from(INIT),
            user: &base.user(spec),
            working_dir: &base.working_dir(spec),
            image_name: &spec.name,
            image_tag: &spec.tag,
            driver_library_dirs: if spec.cuda.enable {
                gpubox_cuda::DRIVER_LIBRARY_DIRS
            } else {
                &[]
            },
            machine: &spec.machine,
            home: store.home.as_ref(),
            nix_db,
        },
        base.account_files(),
    )
    .map_err(|e| {
        if let gpubox_rootfs::RootfsError::Machine(machine) = &e {
            let (span, what) = (
                machine.span(),
                format!("`{}` cannot be used", machine.key()),
            );
            return BuildError::from(e).in_spec(spec, span, what);
        }
        let item = e.copy_to_root_index();
        let span = item
            .and_then(|i| spec.copy_to_root.get(i))
            .and_then(|item| item.span);
        let what = match item {
            Some(i) => format!("copyToRoot[{i}] cannot be placed in the image"),
            None => "the top layer cannot be assembled".to_owned(),
        };
        BuildError::from(e).in_spec(spec, span, what)
    })
}

/// The NVIDIA variables and labels of a GPU-ready image (none when
/// `cuda.enable` is false); also the image's whole environment and labels, once
/// the GPU ones are laid into them.
pub struct GpuSettings {
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

pub fn gpu_settings(spec: &Spec, closure: &Closure) -> Result<GpuSettings, BuildError> {
    if !spec.cuda.enable {
        return Ok(GpuSettings {
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
        });
    }
    let declared = spec
        .cuda
        .version
        .as_deref()
        .map(str::parse::<gpubox_cuda::CudaVersion>)
        .transpose()?;
    let paths: Vec<&Path> = closure
        .paths()
        .map(|info| Path::new(info.path.as_str()))
        .collect();
    let packages = gpubox_cuda::detect(&paths);
    let version =
        gpubox_cuda::resolve_version(&packages, spec.cuda.allow_mixed_versions, declared)?;
    Ok(GpuSettings {
        env: gpubox_cuda::image_env(version, &spec.cuda.capabilities),
        labels: gpubox_cuda::image_labels(version),
    })
}

/// The host programs `hostBinaries` names, with the libraries they load.
pub fn resolve_host_binaries(spec: &Spec) -> Result<Vec<gpubox_hostbin::HostFile>, BuildError> {
    let mut binaries = Vec::new();
    for item in &spec.host_binaries {
        let (src, default_dst) = match &item.value.src {
            HostBinarySrc::Path(path) => {
                // A program from the project folder goes on PATH; one from the
                // system keeps its path, as its libraries do.
                let dst = if path.starts_with(&spec.dir) {
                    Path::new("/usr/local/bin").join(path.file_name().unwrap_or_default())
                } else {
                    path.clone()
                };
                (path.clone(), dst)
            }
            HostBinarySrc::Command(name) => {
                let found =
                    find_on_path(name).ok_or_else(|| BuildError::CommandNotFound(name.clone()))?;
                (found.clone(), found)
            }
        };
        let dst = item
            .value
            .dst
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or(default_dst);
        binaries.push((src, dst));
    }
    if binaries.is_empty() {
        return Ok(Vec::new());
    }
    gpubox_hostbin::resolve_all(&binaries).map_err(BuildError::from)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> ImagePath {
        ImagePath::new(text).unwrap()
    }

    #[test]
    fn the_top_layer_writes_through_the_base_folder_links() {
        let entries = vec![
            Entry::directory(path("bin"), 0o755),
            Entry::bytes(path("bin/gpubox-init"), 0o755, &b"init"[..]),
            Entry::symlink(path("bin/env"), "/usr/bin/env"),
            Entry::directory(path("usr"), 0o755),
            Entry::directory(path("usr/bin"), 0o755),
            Entry::symlink(path("usr/bin/env"), "/nix/store/x-coreutils/bin/env"),
            Entry::directory(path("usr/local"), 0o755),
            Entry::directory(path("usr/local/bin"), 0o755),
            Entry::symlink(path("usr/local/bin/hello"), "/nix/store/y-hello/bin/hello"),
            Entry::bytes(path("etc/os-release"), 0o644, &b"ID=gpubox\n"[..]),
        ];
        let links = BTreeMap::from([
            ("bin".to_owned(), "usr/bin".to_owned()),
            ("usr/local/bin".to_owned(), "opt/bin".to_owned()),
            ("lib64".to_owned(), "usr/lib64".to_owned()),
        ]);
        let (written, used) = through_base_links(entries, &links);
        let shown: Vec<String> = written
            .iter()
            .map(|entry| match &entry.kind {
                EntryKind::Symlink { target } => {
                    format!("{} -> {}", entry.path, String::from_utf8_lossy(target))
                }
                _ => entry.path.to_string(),
            })
            .collect();
        // No `bin` folder; what was under it is under `usr/bin`, where the entry
        // written there directly (the real `env`) wins over the moved one.
        assert_eq!(
            shown,
            [
                "/etc/os-release",
                "/opt/bin/hello -> /nix/store/y-hello/bin/hello",
                "/usr",
                "/usr/bin",
                "/usr/bin/env -> /nix/store/x-coreutils/bin/env",
                "/usr/bin/gpubox-init",
                "/usr/local",
            ]
        );
        let used: Vec<(String, String)> = used
            .iter()
            .map(|(folder, target)| (folder.to_string(), target.to_string()))
            .collect();
        assert_eq!(
            used,
            [
                ("/bin".to_owned(), "/usr/bin".to_owned()),
                ("/usr/local/bin".to_owned(), "/opt/bin".to_owned()),
            ]
        );
    }
}
