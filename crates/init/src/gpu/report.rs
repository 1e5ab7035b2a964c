//! The report of the GPU step, as text for people and as JSON for `gpubox doctor` and
//! scripts.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use gpubox_cuda::{CudaVersion, DriverVersion};

use super::driver::{Ldconfig, Link, LinkState, VersionSource, DRIVER_LIB_DIR};
use super::requirement::{Outcome, DISABLE_HINT};

const NO_GPU: &str = "no NVIDIA GPU is visible in this container (run with --device nvidia.com/gpu=all or --gpus all to use the GPU)";

/// Everything the GPU step found and did.
pub struct Report {
    pub(super) driver_version: Option<DriverVersion>,
    pub(super) version_source: Option<VersionSource>,
    pub(super) cuda_supported: Option<CudaVersion>,
    pub(super) image_cuda: Option<CudaVersion>,
    pub(super) requirement: Outcome,
    pub(super) require_disabled: bool,
    pub(super) links: Vec<Link>,
    pub(super) nvidia_smi: Option<PathBuf>,
    /// `None` when there was no driver to refresh the cache for.
    pub(super) ldconfig: Option<Ldconfig>,
    pub(super) gpu_visible: bool,
    /// The image sets NVIDIA_VISIBLE_DEVICES to something other than void/none.
    pub(super) asks_for_gpu: bool,
    pub(super) warnings: Vec<String>,
}

/// `LINK -> TARGET`, or `PATH (mounted)` for a file used as it is.
pub fn describe_link(link: &Link) -> String {
    match link.state {
        LinkState::Mounted => format!("{} (mounted)", link.link.display()),
        state => format!(
            "{} -> {} ({})",
            link.link.display(),
            link.target.display(),
            state.name()
        ),
    }
}

impl Report {
    fn requirement_message(&self) -> String {
        let message = self.requirement.message();
        match (&self.requirement, self.require_disabled) {
            (Outcome::Unmet { .. }, true) => {
                format!("{message} NVIDIA_DISABLE_REQUIRE is set, so the image starts anyway.")
            }
            (Outcome::Unmet { .. }, false) => format!("{message} {DISABLE_HINT}"),
            _ => message,
        }
    }

    fn version_source_text(&self) -> Option<&'static str> {
        self.version_source.map(|source| match source {
            VersionSource::Proc => "/proc/driver/nvidia/version",
            VersionSource::Libcuda => "the libcuda.so file name",
        })
    }

    fn ldconfig_fields(&self) -> (&'static str, Option<&Path>, Option<&str>) {
        match &self.ldconfig {
            None => ("not run", None, None),
            Some(Ldconfig::Absent) => ("absent", None, None),
            Some(Ldconfig::Ran(path)) => ("ran", Some(path), None),
            Some(Ldconfig::Failed { path, error }) => ("failed", Some(path), Some(error)),
        }
    }

    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let unknown = || "unknown".to_owned();
        if !self.gpu_visible {
            let _ = writeln!(text, "{NO_GPU}");
        }
        let _ = writeln!(
            text,
            "driver: {}{}",
            self.driver_version
                .as_ref()
                .map_or_else(unknown, ToString::to_string),
            self.version_source_text()
                .map(|source| format!(" (from {source})"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            text,
            "CUDA supported by the driver: {}",
            self.cuda_supported
                .map_or_else(unknown, |cuda| format!("{cuda} at most"))
        );
        let _ = writeln!(
            text,
            "image CUDA: {}",
            self.image_cuda
                .map_or_else(unknown, |cuda| cuda.to_string())
        );
        let verdict = match self.requirement.met() {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "undecided",
        };
        let _ = writeln!(
            text,
            "requirement: {verdict}: {}",
            self.requirement_message()
        );
        if self.links.is_empty() {
            let _ = writeln!(text, "links in {DRIVER_LIB_DIR}: none");
        } else {
            let _ = writeln!(text, "links:");
            for link in &self.links {
                let _ = writeln!(text, "  {}", describe_link(link));
            }
        }
        let _ = writeln!(
            text,
            "nvidia-smi: {}",
            self.nvidia_smi
                .as_ref()
                .map_or_else(|| "not found".to_owned(), |path| path.display().to_string())
        );
        let ldconfig = match &self.ldconfig {
            None => "not run (no driver)".to_owned(),
            Some(Ldconfig::Absent) => "not in the image".to_owned(),
            Some(Ldconfig::Ran(path)) => format!("ran {}", path.display()),
            Some(Ldconfig::Failed { path, error }) => {
                format!("{} failed: {error}", path.display())
            }
        };
        let _ = writeln!(text, "ldconfig: {ldconfig}");
        for warning in &self.warnings {
            let _ = writeln!(text, "warning: {warning}");
        }
        text.trim_end().to_owned()
    }

    pub fn to_json(&self) -> String {
        let links: Vec<Value> = self
            .links
            .iter()
            .map(|link| {
                json!({
                    "link": link.link.display().to_string(),
                    "target": link.target.display().to_string(),
                    "state": link.state.name(),
                })
            })
            .collect();
        let (ldconfig_status, ldconfig_path, ldconfig_error) = self.ldconfig_fields();
        json!({
            "gpuVisible": self.gpu_visible,
            "driverVersion": self.driver_version.as_ref().map(ToString::to_string),
            "driverVersionSource": self.version_source_text(),
            "cudaSupported": self.cuda_supported.as_ref().map(ToString::to_string),
            "imageCuda": self.image_cuda.as_ref().map(ToString::to_string),
            "requirement": {
                "met": self.requirement.met(),
                "message": self.requirement_message(),
                "disabled": self.require_disabled,
            },
            "links": links,
            "nvidiaSmi": self.nvidia_smi.as_ref().map(|path| path.display().to_string()),
            "ldconfig": {
                "status": ldconfig_status,
                "path": ldconfig_path.map(|path| path.display().to_string()),
                "error": ldconfig_error,
            },
            "warnings": self.warnings,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_report_reads_back_with_its_strings_intact() {
        let warning = "a \"quoted\" path\\ and\na line break\u{1}";
        let report = Report {
            driver_version: None,
            version_source: None,
            cuda_supported: None,
            image_cuda: None,
            requirement: Outcome::NotChecked,
            require_disabled: false,
            links: vec![Link {
                link: PathBuf::from("/run/opengl-driver/lib/libcuda.so.1"),
                target: PathBuf::from("/usr/lib64/libcuda.so.550.54.14"),
                state: LinkState::Made,
            }],
            nvidia_smi: None,
            ldconfig: Some(Ldconfig::Failed {
                path: PathBuf::from("/sbin/ldconfig"),
                error: "exit status 1".to_owned(),
            }),
            gpu_visible: false,
            asks_for_gpu: false,
            warnings: vec![warning.to_owned()],
        };
        let json: Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["warnings"], json!([warning]));
        assert_eq!(json["driverVersion"], Value::Null);
        assert_eq!(json["requirement"]["met"], Value::Null);
        assert_eq!(
            json["links"][0],
            json!({
                "link": "/run/opengl-driver/lib/libcuda.so.1",
                "target": "/usr/lib64/libcuda.so.550.54.14",
                "state": "made",
            })
        );
        assert_eq!(
            json["ldconfig"],
            json!({"status": "failed", "path": "/sbin/ldconfig", "error": "exit status 1"})
        );
    }
}
