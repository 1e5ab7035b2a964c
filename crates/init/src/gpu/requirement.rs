//! Checking the image's `NVIDIA_REQUIRE_*` against the host's driver, and saying in one
//! plain sentence what does not fit and what to do about it.

use std::fs;
use std::path::{Path, PathBuf};

use gpubox_cuda::{
    compatibility, minimum_driver, requirements_from_env, CudaVersion, DriverVersion, Evaluation,
    HostFacts,
};

use crate::steps::root_path;

/// The hint every refusal ends with.
pub const DISABLE_HINT: &str = "(Set NVIDIA_DISABLE_REQUIRE=true to start anyway.)";

/// Where NVIDIA's images (`/usr/local/cuda/compat`) and nixpkgs' `cuda_compat`
/// (`/nix/store/*-cuda_compat-*/compat`, linked into its `lib`) keep the forward
/// compatibility libcuda.
const NVIDIA_COMPAT_DIR: &str = "/usr/local/cuda/compat";
const NIX_STORE: &str = "/nix/store";
const NIX_COMPAT_NAMES: &[&str] = &["cuda_compat", "cuda-compat"];
const NIX_COMPAT_SUBDIRS: [&str; 2] = ["compat", "lib"];

/// The outcome of the requirement check.
#[derive(Debug)]
pub enum Outcome {
    /// No usable driver in the container, so nothing to check against.
    NotChecked,
    /// The image declares no `NVIDIA_REQUIRE_*`.
    NoRequirement,
    Met,
    /// Not met by the driver alone, but the image's cuda-compat libcuda bridges it.
    ForwardCompatible {
        compat_libcuda: PathBuf,
    },
    /// Not decidable with what the init knows (GPU brand and architecture).
    Unknown {
        variable: String,
        missing: String,
    },
    /// A requirement the init cannot read.
    Invalid {
        message: String,
    },
    /// Not met: the message says what to do.
    Unmet {
        message: String,
    },
}

impl Outcome {
    /// `Some(true)` when the image may start, `Some(false)` when it must not, `None`
    /// when the check could not decide.
    pub fn met(&self) -> Option<bool> {
        match self {
            Self::NoRequirement | Self::Met | Self::ForwardCompatible { .. } => Some(true),
            Self::Unmet { .. } => Some(false),
            Self::NotChecked | Self::Unknown { .. } | Self::Invalid { .. } => None,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::NotChecked => "not checked: no NVIDIA driver is usable in this container".to_owned(),
            Self::NoRequirement => "the image declares no NVIDIA_REQUIRE_* requirement".to_owned(),
            Self::Met => "the host's driver meets the image's requirement".to_owned(),
            Self::ForwardCompatible { compat_libcuda } => format!(
                "not met by the host's driver alone, but the image carries the CUDA forward-compatibility library {}, which lets it run on this driver",
                compat_libcuda.display()
            ),
            Self::Unknown { variable, missing } => format!(
                "{variable} could not be checked: the init does not know the GPU's {missing}; starting anyway"
            ),
            Self::Invalid { message } => format!("{message}; the requirement is ignored"),
            Self::Unmet { message } => message.clone(),
        }
    }
}

/// The facts the check works from.
pub struct Host<'a> {
    pub driver: &'a DriverVersion,
    pub cuda_supported: Option<CudaVersion>,
}

/// Evaluates every `NVIDIA_REQUIRE_*` in `vars`; the first unmet one decides.
pub fn check(vars: &[(String, String)], host: &Host, image_cuda: Option<CudaVersion>) -> Outcome {
    let pairs = vars
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()));
    let requirements = match requirements_from_env(pairs) {
        Ok(requirements) => requirements,
        Err(error) => {
            return Outcome::Invalid {
                message: error.to_string(),
            }
        }
    };
    if requirements.is_empty() {
        return Outcome::NoRequirement;
    }
    let facts = HostFacts {
        cuda: host.cuda_supported,
        driver: Some(host.driver.clone()),
        // The init has no NVML: the GPU's architecture and brand stay unknown, and a
        // clause that needs them is reported as undecidable rather than failed.
        arch: None,
        brand: None,
    };
    let mut undecided = None;
    for (variable, requirement) in &requirements {
        match requirement.evaluate(&facts) {
            Evaluation::Met => {}
            Evaluation::Unknown { missing } => {
                undecided.get_or_insert(Outcome::Unknown {
                    variable: variable.clone(),
                    missing: missing.join(" and "),
                });
            }
            Evaluation::Unmet { failed } => {
                return unmet(variable, &failed, host, image_cuda);
            }
        }
    }
    undecided.unwrap_or(Outcome::Met)
}

fn unmet(variable: &str, failed: &str, host: &Host, image_cuda: Option<CudaVersion>) -> Outcome {
    let driver = host.driver;
    let too_new = match (image_cuda, host.cuda_supported) {
        (Some(image), Some(supported)) if image > supported => Some((image, supported)),
        _ => None,
    };
    let Some((image, supported)) = too_new else {
        return Outcome::Unmet {
            message: format!(
                "this image's requirement {variable} is not met by the host's NVIDIA driver {driver}{} ({failed} fails). Update the host's driver, or use an image whose requirement this driver meets.",
                host.cuda_supported
                    .map(|cuda| format!(", which supports CUDA {cuda} at most"))
                    .unwrap_or_default()
            ),
        };
    };
    // The compat libcuda comes first on the image's library path (nixpkgs puts its
    // folder at the front of RUNPATH), so the image runs wherever the table says it
    // runs with it, whichever kind of compatibility the table names.
    if let Some(compat_libcuda) = find_compat_libcuda() {
        if compatibility(image, driver, true).runs() {
            return Outcome::ForwardCompatible { compat_libcuda };
        }
    }
    let needs = minimum_driver(image)
        .map(|minimum| format!(" (CUDA {image} needs driver {minimum} or newer)"))
        .unwrap_or_default();
    Outcome::Unmet {
        message: format!(
            "this image needs CUDA {image} but the host's NVIDIA driver {driver} supports CUDA {supported} at most{needs}. Update the host's driver, or use an image built with CUDA {supported} or older."
        ),
    }
}

/// A cuda-compat `libcuda.so*` in the image, if any.
fn find_compat_libcuda() -> Option<PathBuf> {
    let nix_dirs = fs::read_dir(root_path(NIX_STORE))
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            NIX_COMPAT_NAMES.iter().any(|compat| name.contains(compat))
        })
        .flat_map(|entry| NIX_COMPAT_SUBDIRS.map(|subdir| entry.path().join(subdir)));
    std::iter::once(root_path(NVIDIA_COMPAT_DIR))
        .chain(nix_dirs)
        .find_map(|dir| libcuda_in(&dir))
}

fn libcuda_in(dir: &Path) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| entry.ok())
        .find(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("libcuda.so")
        })
        .map(|entry| entry.path())
}
