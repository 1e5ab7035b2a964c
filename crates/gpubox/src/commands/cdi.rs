//! `gpubox cdi generate`: the CDI spec for this host's NVIDIA driver.

use std::io::Write;
use std::path::PathBuf;

use gpubox_cdi::{HostRoots, SpecFormat};

use crate::error::CliError;
use gpubox_build::Reporter;

pub struct GenerateRequest {
    pub roots: HostRoots,
    pub format: Option<SpecFormat>,
    pub output: Option<PathBuf>,
}

/// Discovers the driver, builds and validates the spec, and writes it to the
/// output file (atomically) or to standard output.
pub fn generate(request: &GenerateRequest, reporter: &dyn Reporter) -> Result<(), CliError> {
    let driver = gpubox_cdi::discover(&request.roots)?;
    let spec = gpubox_cdi::generate(&driver, &request.roots)?;
    gpubox_cdi::validate(&spec)?;
    // The output's extension picks the format unless --format says otherwise.
    let format = request.format.unwrap_or_else(|| match &request.output {
        Some(path) if path.extension().is_some_and(|e| e == "json") => SpecFormat::Json,
        _ => SpecFormat::Yaml,
    });
    let bytes = gpubox_cdi::render(&spec, format)?;
    match &request.output {
        Some(path) => {
            gpubox_cdi::write_spec(path, &bytes)?;
            reporter.step(&format!(
                "wrote {} for NVIDIA driver {} ({} GPU{})",
                path.display(),
                driver.version,
                driver.gpus.len(),
                if driver.gpus.len() == 1 { "" } else { "s" }
            ));
        }
        None => std::io::stdout()
            .lock()
            .write_all(&bytes)
            .map_err(CliError::Stdout)?,
    }
    Ok(())
}
