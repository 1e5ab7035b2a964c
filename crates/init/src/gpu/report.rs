//! The report of the GPU step, as text for people and as JSON for `gpubox doctor` and
//! scripts. The JSON is written by hand: the report is small and flat, and the init
//! stays free of a serialisation library.

use std::fmt::Write;
use std::path::{Path, PathBuf};

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
        let links: Vec<String> = self
            .links
            .iter()
            .map(|link| {
                format!(
                    r#"{{"link":{},"target":{},"state":{}}}"#,
                    json_string(&link.link.display().to_string()),
                    json_string(&link.target.display().to_string()),
                    json_string(link.state.name())
                )
            })
            .collect();
        let warnings: Vec<String> = self.warnings.iter().map(|w| json_string(w)).collect();
        let (ldconfig_status, ldconfig_path, ldconfig_error) = self.ldconfig_fields();
        let met = self
            .requirement
            .met()
            .map_or("null", |met| if met { "true" } else { "false" });
        format!(
            concat!(
                r#"{{"gpuVisible":{},"driverVersion":{},"driverVersionSource":{},"#,
                r#""cudaSupported":{},"imageCuda":{},"#,
                r#""requirement":{{"met":{},"message":{},"disabled":{}}},"#,
                r#""links":[{}],"nvidiaSmi":{},"#,
                r#""ldconfig":{{"status":{},"path":{},"error":{}}},"warnings":[{}]}}"#
            ),
            self.gpu_visible,
            json_option(self.driver_version.as_ref()),
            json_option(self.version_source_text()),
            json_option(self.cuda_supported),
            json_option(self.image_cuda),
            met,
            json_string(&self.requirement_message()),
            self.require_disabled,
            links.join(","),
            json_option(self.nvidia_smi.as_ref().map(|path| path.display())),
            json_string(ldconfig_status),
            json_option(ldconfig_path.map(Path::display)),
            json_option(ldconfig_error),
            warnings.join(","),
        )
    }
}

fn json_option(value: Option<impl ToString>) -> String {
    value.map_or_else(
        || "null".to_owned(),
        |value| json_string(&value.to_string()),
    )
}

/// A JSON string literal (RFC 8259 section 7: quote, backslash and control characters
/// escaped).
fn json_string(text: &str) -> String {
    let mut literal = String::with_capacity(text.len() + 2);
    literal.push('"');
    for c in text.chars() {
        match c {
            '"' => literal.push_str("\\\""),
            '\\' => literal.push_str("\\\\"),
            '\n' => literal.push_str("\\n"),
            '\r' => literal.push_str("\\r"),
            '\t' => literal.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(literal, "\\u{:04x}", u32::from(c));
            }
            c => literal.push(c),
        }
    }
    literal.push('"');
    literal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_what_json_requires() {
        assert_eq!(json_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(json_string("line\nnext\u{1}"), r#""line\nnext\u0001""#);
        assert_eq!(
            json_string("/run/opengl-driver/lib"),
            r#""/run/opengl-driver/lib""#
        );
    }
}
