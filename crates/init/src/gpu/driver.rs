//! Finding the NVIDIA driver files a container runtime injected, and making them
//! reachable where Nix-built programs look: the libraries linked into
//! `/run/opengl-driver/lib`, `nvidia-smi` linked into `/run/opengl-driver/bin`, and the
//! loader cache refreshed where the image has `ldconfig`.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use gpubox_cuda::{Architecture, DriverVersion};

use crate::steps::{files, root_path};

/// Where nixpkgs programs look for the driver (their RUNPATH ends with it).
pub const DRIVER_LIB_DIR: &str = "/run/opengl-driver/lib";
/// Where `nvidia-smi` is linked, appended to the main command's PATH.
pub const DRIVER_BIN_DIR: &str = "/run/opengl-driver/bin";

/// The folders runtimes mount the driver libraries into (nvidia-container-toolkit uses
/// the distribution's library folder: `/usr/lib64`, or Debian's multiarch
/// `/usr/lib/x86_64-linux-gnu` and `/usr/lib/aarch64-linux-gnu`; the GPU operator and older
/// nvidia-docker `/usr/local/nvidia`), then `/run/opengl-driver/lib` itself, where a CDI
/// spec made by `gpubox cdi generate` mounts them. Earlier folders win when a name appears
/// twice.
///
/// Both architectures' multiarch folders are searched: `own`'s (the init's own, compiled-in
/// architecture, [`Architecture::native`]: an arm64 image carries an aarch64 init) where
/// the distribution folders are, and the other's after every folder that names no
/// architecture. A working runtime only gives a container the driver of the container's
/// own architecture, so the other folder is normally missing and costs one failed
/// `read_dir`; searching it lets `gpubox-init check` work on either layout whatever
/// machine runs it (the tests run an x86-64 init on an aarch64 tree), and a library of the
/// wrong ELF machine linked from there fails to load no worse than a missing one would.
/// An architecture gpubox does not know searches both, after `/usr/lib`, x86-64's first.
fn library_dirs(own: Option<Architecture>) -> Vec<String> {
    let mine = |lib: &str| -> Vec<String> {
        own.into_iter()
            .map(|arch| format!("{lib}/{}", arch.multiarch()))
            .collect()
    };
    let mut dirs = vec!["/usr/lib64".to_owned()];
    dirs.extend(mine("/usr/lib"));
    dirs.extend(["/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/lib64"].map(String::from));
    dirs.extend(mine("/lib"));
    dirs.push("/usr/lib".to_owned());
    for other in Architecture::ALL
        .into_iter()
        .filter(|arch| Some(*arch) != own)
    {
        dirs.push(format!("/usr/lib/{}", other.multiarch()));
        dirs.push(format!("/lib/{}", other.multiarch()));
    }
    dirs.push(DRIVER_LIB_DIR.to_owned());
    dirs
}

/// The folders runtimes mount `nvidia-smi` into, in order of preference.
const NVIDIA_SMI_DIRS: &[&str] = &["/usr/bin", "/usr/local/nvidia/bin", "/bin", DRIVER_BIN_DIR];

const LDCONFIG_PATHS: &[&str] = &["/sbin/ldconfig", "/usr/sbin/ldconfig", "/usr/bin/ldconfig"];

/// The driver reports its version on the first line of this file, as
/// `NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 ...`.
/// procfs is not namespaced, so it is there in every container on a host with the
/// driver loaded, whether or not the GPU was passed in.
const PROC_VERSION: &str = "/proc/driver/nvidia/version";

/// The driver's user-space libraries, by the name before `.so.`, with the number their
/// SONAME carries (`libGLX_nvidia.so.0`); every `libnvidia-*` library also counts, with
/// SONAME number 1. From the library list of libnvidia-container
/// (src/nvc_info.c, `utility_libs`, `compute_libs`, `video_libs`, `graphics_libs`).
const DRIVER_LIBRARIES: &[(&str, &str)] = &[
    ("libcuda", "1"),
    ("libcudadebugger", "1"),
    ("libnvcuvid", "1"),
    ("libGLX_nvidia", "0"),
    ("libEGL_nvidia", "0"),
    ("libGLESv2_nvidia", "2"),
    ("libGLESv1_CM_nvidia", "1"),
    ("libvdpau_nvidia", "1"),
];
const NVIDIA_PREFIX: &str = "libnvidia-";

/// A driver library file named `STEM.so.VERSION` with a full version suffix.
#[derive(Debug)]
pub struct DriverLibrary {
    stem: String,
    version: DriverVersion,
    path: PathBuf,
}

impl DriverLibrary {
    fn from_path(path: PathBuf) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        let (stem, suffix) = name.split_once(".so.")?;
        if !is_driver_library(stem) || !suffix.contains('.') {
            return None;
        }
        let version = suffix.parse().ok()?;
        Some(Self {
            stem: stem.to_owned(),
            version,
            path,
        })
    }

    fn file_name(&self) -> &str {
        // Only made from paths whose file name is UTF-8.
        self.path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
    }

    fn is_libcuda(&self) -> bool {
        self.stem == "libcuda"
    }

    /// The names programs ask for: the full name, the SONAME and the development name
    /// (`libcuda.so.550.54.14`, `libcuda.so.1`, `libcuda.so`).
    fn link_names(&self) -> [String; 3] {
        let soname_number = DRIVER_LIBRARIES
            .iter()
            .find(|(stem, _)| *stem == self.stem)
            .map_or("1", |(_, number)| number);
        [
            self.file_name().to_owned(),
            format!("{}.so.{soname_number}", self.stem),
            format!("{}.so", self.stem),
        ]
    }
}

fn is_driver_library(stem: &str) -> bool {
    stem.starts_with(NVIDIA_PREFIX) || DRIVER_LIBRARIES.iter().any(|(known, _)| *known == stem)
}

/// Where the driver version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSource {
    Proc,
    Libcuda,
}

/// What the scan found: the driver version and the libraries of that version.
#[derive(Debug, Default)]
pub struct DriverFiles {
    pub version: Option<(DriverVersion, VersionSource)>,
    pub libraries: Vec<DriverLibrary>,
}

impl DriverFiles {
    /// The driver is usable in this container only when its `libcuda` was injected.
    pub fn has_libcuda(&self) -> bool {
        self.libraries.iter().any(DriverLibrary::is_libcuda)
    }
}

/// Reads the driver version from procfs (or, without it, from the first `libcuda.so.*`
/// found) and keeps the driver libraries of that version, one per file name.
pub fn find() -> DriverFiles {
    let mut seen = HashSet::new();
    let candidates: Vec<DriverLibrary> = library_dirs(Architecture::native())
        .iter()
        .flat_map(|dir| list_dir(&root_path(dir)))
        .filter_map(DriverLibrary::from_path)
        .filter(|library| seen.insert(library.file_name().to_owned()))
        .collect();
    let version = read_proc_version()
        .map(|version| (version, VersionSource::Proc))
        .or_else(|| {
            candidates
                .iter()
                .find(|library| library.is_libcuda())
                .map(|library| (library.version.clone(), VersionSource::Libcuda))
        });
    let libraries = match &version {
        Some((version, _)) => candidates
            .into_iter()
            .filter(|library| library.version == *version)
            .collect(),
        None => Vec::new(),
    };
    DriverFiles { version, libraries }
}

/// The entries of `dir`, sorted so that the choice between two versions is stable; an
/// unreadable or missing folder has none.
fn list_dir(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    paths.sort();
    paths
}

fn read_proc_version() -> Option<DriverVersion> {
    let text = fs::read_to_string(root_path(PROC_VERSION)).ok()?;
    gpubox_cuda::kernel_module_version(&text).map(|(version, _)| version)
}

/// What happened at one name in `/run/opengl-driver/{lib,bin}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// The link was created or corrected now.
    Made,
    /// The right link was already there (a start-up step ran before).
    Present,
    /// A file the runtime mounted at that name is used as it is.
    Mounted,
}

impl LinkState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Made => "made",
            Self::Present => "present",
            Self::Mounted => "mounted",
        }
    }
}

/// One name under `/run/opengl-driver` and the driver file it leads to.
#[derive(Debug)]
pub struct Link {
    pub link: PathBuf,
    pub target: PathBuf,
    pub state: LinkState,
}

/// Links every driver library into `/run/opengl-driver/lib` under the names programs ask
/// for. Failures are returned as warnings: a missing link costs a feature, not the start.
pub fn link_libraries(files: &DriverFiles, warnings: &mut Vec<String>) -> Vec<Link> {
    let dir = root_path(DRIVER_LIB_DIR);
    if let Err(error) = create_dir(&dir) {
        warnings.push(error);
        return Vec::new();
    }
    let mut links = Vec::new();
    for library in &files.libraries {
        for name in library.link_names() {
            match place_link(&dir.join(name), &library.path) {
                Ok(link) => links.push(link),
                Err(error) => warnings.push(error),
            }
        }
    }
    links
}

/// Finds `nvidia-smi` where runtimes mount it and links it into `/run/opengl-driver/bin`.
pub fn link_nvidia_smi(warnings: &mut Vec<String>) -> Option<Link> {
    let found = NVIDIA_SMI_DIRS
        .iter()
        .map(|dir| root_path(dir).join("nvidia-smi"))
        .find(|path| path.is_file())?;
    let dir = root_path(DRIVER_BIN_DIR);
    let placed = create_dir(&dir).and_then(|()| place_link(&dir.join("nvidia-smi"), &found));
    match placed {
        Ok(link) => Some(link),
        Err(error) => {
            warnings.push(error);
            Some(Link {
                link: found.clone(),
                target: found,
                state: LinkState::Mounted,
            })
        }
    }
}

fn create_dir(dir: &Path) -> Result<(), String> {
    files::create_dir_all(dir, 0o755).map_err(|error| {
        format!(
            "cannot create {}: {error}; programs built with Nix will not find the NVIDIA driver there",
            dir.display()
        )
    })
}

/// Makes `link` lead to `target`, leaving a file that is already there alone (a CDI
/// spec may mount the driver files at these very names) and replacing only a wrong
/// symlink, atomically, so a program starting meanwhile never sees the name missing.
fn place_link(link: &Path, target: &Path) -> Result<Link, String> {
    let describe = |error: io::Error| {
        format!(
            "cannot link {} to {}: {error}; check that the container's /run is writable",
            link.display(),
            target.display()
        )
    };
    let state = if link == target {
        LinkState::Mounted
    } else {
        match fs::symlink_metadata(link) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                if fs::read_link(link).map_err(describe)? == target {
                    LinkState::Present
                } else {
                    files::symlink_atomic(target, link).map_err(describe)?;
                    LinkState::Made
                }
            }
            Ok(_) => LinkState::Mounted,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                files::symlink_atomic(target, link).map_err(describe)?;
                LinkState::Made
            }
            Err(error) => return Err(describe(error)),
        }
    };
    let target = match state {
        LinkState::Mounted => link.to_path_buf(),
        LinkState::Made | LinkState::Present => target.to_path_buf(),
    };
    Ok(Link {
        link: link.to_path_buf(),
        target,
        state,
    })
}

/// What became of the loader cache.
#[derive(Debug)]
pub enum Ldconfig {
    /// The image has no `ldconfig`: the loader finds the driver through RUNPATH and the
    /// image's library path only.
    Absent,
    Ran(PathBuf),
    Failed {
        path: PathBuf,
        error: String,
    },
}

/// Runs the image's `ldconfig` (no arguments: it reads the image's own configuration,
/// which `gpubox build` points at the driver folders).
pub fn refresh_loader_cache() -> Ldconfig {
    let Some(path) = LDCONFIG_PATHS
        .iter()
        .map(|path| root_path(path))
        .find(|path| is_executable(path))
    else {
        return Ldconfig::Absent;
    };
    let error = match Command::new(&path).output() {
        Ok(output) if output.status.success() => return Ldconfig::Ran(path),
        Ok(output) => format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => error.to_string(),
    };
    Ldconfig::Failed { path, error }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_architectures_folders_come_first() {
        assert_eq!(
            library_dirs(Some(Architecture::Arm64)),
            [
                "/usr/lib64",
                "/usr/lib/aarch64-linux-gnu",
                "/usr/local/nvidia/lib64",
                "/usr/local/nvidia/lib",
                "/lib64",
                "/lib/aarch64-linux-gnu",
                "/usr/lib",
                "/usr/lib/x86_64-linux-gnu",
                "/lib/x86_64-linux-gnu",
                DRIVER_LIB_DIR,
            ]
        );
        let amd64 = library_dirs(Some(Architecture::Amd64));
        assert_eq!(amd64[1], "/usr/lib/x86_64-linux-gnu");
        assert_eq!(amd64[5], "/lib/x86_64-linux-gnu");
        assert_eq!(amd64[7], "/usr/lib/aarch64-linux-gnu");
        // Unknown: both, after /usr/lib, x86-64's first.
        let unknown = library_dirs(None);
        assert_eq!(unknown.len(), amd64.len());
        let at = |dir: &str| unknown.iter().position(|d| d == dir).unwrap();
        assert!(at("/usr/lib") < at("/usr/lib/x86_64-linux-gnu"));
        assert!(at("/usr/lib/x86_64-linux-gnu") < at("/usr/lib/aarch64-linux-gnu"));
    }

    #[test]
    fn names_a_library_by_its_soname() {
        let names = |file: &str| {
            DriverLibrary::from_path(PathBuf::from("/usr/lib64").join(file))
                .map(|library| library.link_names())
        };
        assert_eq!(
            names("libcuda.so.550.54.14"),
            Some([
                "libcuda.so.550.54.14".to_owned(),
                "libcuda.so.1".to_owned(),
                "libcuda.so".to_owned()
            ])
        );
        assert_eq!(
            names("libGLX_nvidia.so.550.54.14").map(|names| names[1].clone()),
            Some("libGLX_nvidia.so.0".to_owned())
        );
        assert_eq!(
            names("libnvidia-ml.so.550.54.14").map(|names| names[1].clone()),
            Some("libnvidia-ml.so.1".to_owned())
        );
        for not_driver in [
            "libcuda.so.1",
            "libcuda.so",
            "libcudart.so.12.4.127",
            "libnvidia-ml.so.550.54.14.bak",
        ] {
            assert!(names(not_driver).is_none(), "{not_driver}");
        }
    }
}
