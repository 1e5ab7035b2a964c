//! The GPU start-up step: make the driver the runtime injected reachable by Nix-built
//! programs and check the image's CUDA requirement against it, before anything starts.
//! Also the `gpubox-init check` report of the same.

mod driver;
mod report;
mod requirement;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use gpubox_cuda::{cuda_supported_by, disable_require, DriverVersion};

pub use report::Report;

use crate::steps::root_path;
use driver::{DriverFiles, Ldconfig, VersionSource};
use requirement::{Host, Outcome};

/// Asks the runtime for GPUs; `void` and `none` (and empty) ask for none.
const VISIBLE_DEVICES_VARIABLE: &str = "NVIDIA_VISIBLE_DEVICES";

/// Exit status when the image's CUDA requirement does not fit the host's driver.
pub const REQUIREMENT_EXIT: i32 = 3;

/// Finds and links the driver, refreshes the loader cache and checks the requirement;
/// every path is taken under `GPUBOX_INIT_ROOT` ([`root_path`]), where tests put a
/// fake host tree. `vars` is the environment the image starts with.
pub fn inspect(vars: &[(String, String)]) -> Report {
    let files = driver::find();
    let mut warnings = Vec::new();
    let gpu_visible = files.has_libcuda();
    let (links, nvidia_smi, ldconfig) = if gpu_visible {
        let mut links = driver::link_libraries(&files, &mut warnings);
        let nvidia_smi = driver::link_nvidia_smi(&mut warnings);
        let found_smi = nvidia_smi.as_ref().map(|link| link.target.clone());
        links.extend(nvidia_smi);
        (links, found_smi, Some(driver::refresh_loader_cache()))
    } else {
        (Vec::new(), None, None)
    };
    let (driver_version, version_source) = split_version(files);
    let cuda_supported = driver_version.as_ref().and_then(cuda_supported_by);
    let image_cuda = gpubox_cuda::image_cuda(vars);
    let requirement = match (&driver_version, gpu_visible) {
        (Some(driver), true) => {
            let host = Host {
                driver,
                cuda_supported,
            };
            requirement::check(vars, &host, image_cuda)
        }
        _ => Outcome::NotChecked,
    };
    let pairs = vars
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()));
    Report {
        driver_version,
        version_source,
        cuda_supported,
        image_cuda,
        requirement,
        require_disabled: disable_require(pairs),
        links,
        nvidia_smi,
        ldconfig,
        gpu_visible,
        asks_for_gpu: asks_for_gpu(vars),
        warnings,
    }
}

fn split_version(files: DriverFiles) -> (Option<DriverVersion>, Option<VersionSource>) {
    match files.version {
        Some((version, source)) => (Some(version), Some(source)),
        None => (None, None),
    }
}

fn asks_for_gpu(vars: &[(String, String)]) -> bool {
    vars.iter()
        .find(|(key, _)| key == VISIBLE_DEVICES_VARIABLE)
        .is_some_and(|(_, value)| !matches!(value.trim(), "" | "void" | "none"))
}

/// The start-up step: says what the user must know on stderr and returns the exit
/// status to stop with when the image must not start.
pub fn start_up() -> Result<(), i32> {
    let vars = environment();
    let report = inspect(&vars);
    for warning in &report.warnings {
        notice!("{warning}");
    }
    // Only an image that declares a CUDA requirement is said to miss the GPU: one
    // built without CUDA (the bundled example) is fine without.
    if !report.gpu_visible && report.asks_for_gpu && report.image_cuda.is_some() {
        notice!("no NVIDIA GPU is visible in this container; starting without one (run with --device nvidia.com/gpu=all or --gpus all to use the GPU)");
    }
    if let Some(Ldconfig::Failed { path, error }) = &report.ldconfig {
        notice!(
            "{} failed ({error}); programs that rely on the loader cache may not find the NVIDIA driver",
            path.display()
        );
    }
    for link in &report.links {
        debug!("{}", report::describe_link(link));
    }
    match &report.requirement {
        Outcome::Unmet { message } if report.require_disabled => {
            notice!("{message} Starting anyway because NVIDIA_DISABLE_REQUIRE is set.");
        }
        Outcome::Unmet { message } => {
            notice!("{message} {}", requirement::DISABLE_HINT);
            return Err(REQUIREMENT_EXIT);
        }
        Outcome::ForwardCompatible { .. } | Outcome::Unknown { .. } | Outcome::Invalid { .. } => {
            notice!("{}", report.requirement.message());
        }
        Outcome::NotChecked | Outcome::NoRequirement | Outcome::Met => {}
    }
    if report.gpu_visible {
        add_driver_bin_to_path(&root_path(driver::DRIVER_BIN_DIR));
    }
    Ok(())
}

/// The environment as UTF-8 pairs; a variable that is not UTF-8 cannot be one the
/// check reads.
fn environment() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
        .collect()
}

/// Appends the folder `nvidia-smi` is linked into to the PATH the main command (and
/// every later service) inherits.
fn add_driver_bin_to_path(bin: &Path) {
    if !bin.is_dir() {
        return;
    }
    // Without PATH, execvp searches this default (glibc's and musl's `_PATH_DEFPATH`
    // plus the sbin folders, as Docker sets it).
    let current = std::env::var_os("PATH").unwrap_or_else(|| {
        OsString::from("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    });
    let mut folders: Vec<PathBuf> = std::env::split_paths(&current).collect();
    if folders.iter().any(|folder| folder == bin) {
        return;
    }
    folders.push(bin.to_path_buf());
    if let Ok(path) = std::env::join_paths(folders) {
        // set_var is sound here: the init is single-threaded (no thread has been
        // started, and none reads the environment concurrently), and the main command
        // has not been forked yet.
        std::env::set_var("PATH", path);
    }
}

/// `gpubox-init check [--json]`: the report on stdout; 0 when the image may start, 1
/// when its requirement fails (even when NVIDIA_DISABLE_REQUIRE would start it).
pub fn check(arguments: &[OsString]) -> i32 {
    let json = match arguments {
        [] => false,
        [flag] if flag == "--json" => true,
        _ => {
            notice!("usage: gpubox-init check [--json]");
            return crate::USAGE_EXIT;
        }
    };
    let report = inspect(&environment());
    let text = if json {
        report.to_json()
    } else {
        report.to_text()
    };
    // A closed stdout must not turn the report into a panic; the exit status still tells.
    let _ = writeln!(std::io::stdout().lock(), "{text}");
    match report.requirement.met() {
        Some(false) => 1,
        Some(true) | None => 0,
    }
}
