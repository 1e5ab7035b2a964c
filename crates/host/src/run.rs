//! `gpubox run`: how to start an image with the host's GPUs, with the flags
//! that work on this host: CDI (`--device nvidia.com/gpu=all`) where the
//! engine and an up-to-date spec allow it, the legacy NVIDIA runtime
//! (`--gpus all`) where only that exists, and a plain explanation where
//! neither does.

use std::path::PathBuf;

use gpubox_build::ImageLocation;
use gpubox_cdi::{HostRoots, SpecStatus};
use gpubox_engines::Engine;

use crate::doctor::{gpu_support_fix, GENERATE_SPEC};

pub struct RunRequest {
    /// `NAME[:TAG]`, `podman:NAME[:TAG]` or `docker-daemon:NAME[:TAG]`.
    pub image: String,
    pub command: Vec<String>,
    /// Passed to the engine's `--network`; with `none` no ports are published.
    pub network: Option<String>,
    /// `HOST:CONTAINER[:OPTIONS]` mounts, passed to the engine's `--volume`.
    pub volumes: Vec<String>,
    /// The working folder inside the container.
    pub workdir: Option<String>,
    pub roots: HostRoots,
    pub cdi_root: PathBuf,
    /// Whether the user's terminal is attached (`-it`).
    pub interactive: bool,
}

/// The engine command that starts the container.
#[derive(Debug, PartialEq, Eq)]
pub struct EngineCommand {
    pub engine: Engine,
    /// The arguments after the engine's program.
    pub args: Vec<String>,
}

impl std::fmt::Display for EngineCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.engine.program(), self.args.join(" "))
    }
}

/// Why no engine can start a GPU container here.
#[derive(Debug, thiserror::Error)]
#[error("no container engine here can give a container the GPU:\n{reasons}")]
pub struct NoGpuEngine {
    pub reasons: String,
}

/// The engine and the GPU flags to use, or why there are none.
fn choose(
    wanted: Option<Engine>,
    roots: &HostRoots,
    cdi_root: &std::path::Path,
) -> Result<(Engine, Vec<String>), NoGpuEngine> {
    let spec_ok = match gpubox_cdi::discover(roots) {
        Ok(driver) => match gpubox_cdi::spec_status(cdi_root, Some(&driver)) {
            SpecStatus::Current(_) => Ok(()),
            SpecStatus::Missing => Err(format!(
                "there is no CDI spec for nvidia.com/gpu: run `{GENERATE_SPEC}`"
            )),
            SpecStatus::Broken(_) | SpecStatus::Stale(_) => Err(format!(
                "the CDI spec does not match driver {}: run `gpubox doctor`",
                driver.version
            )),
        },
        Err(e) => Err(e.to_string()),
    };
    let engines = match wanted {
        Some(engine) => vec![engine],
        None => vec![Engine::Podman, Engine::Docker],
    };
    let mut reasons = Vec::new();
    for engine in engines {
        let Some(info) = gpubox_engines::probe(engine) else {
            reasons.push(format!("- {engine} is not installed or not running"));
            continue;
        };
        match (&spec_ok, info.cdi, info.nvidia_runtime) {
            (Ok(()), true, _) => {
                return Ok((engine, vec!["--device".into(), "nvidia.com/gpu=all".into()]))
            }
            (_, _, true) => return Ok((engine, vec!["--gpus".into(), "all".into()])),
            (Err(why), true, false) => reasons.push(format!(
                "- {engine} {} can use CDI, but {why}",
                info.version
            )),
            (_, false, false) => reasons.push(format!(
                "- {engine} {} supports neither CDI nor the NVIDIA runtime: {}",
                info.version,
                gpu_support_fix(engine)
            )),
        }
    }
    Err(NoGpuEngine {
        reasons: reasons.join("\n"),
    })
}

/// The engine command that starts the container with the GPUs, or why no
/// engine here can.
pub fn command(request: &RunRequest) -> Result<EngineCommand, NoGpuEngine> {
    let (wanted, image) = match request.image.parse::<ImageLocation>() {
        Ok(ImageLocation::Engine { engine, reference }) => (Some(engine), reference),
        _ => (None, request.image.clone()),
    };
    let (engine, gpu_flags) = choose(wanted, &request.roots, &request.cdi_root)?;
    let mut args: Vec<String> = vec!["run".into(), "--rm".into()];
    if request.interactive {
        args.push("-it".into());
    }
    args.extend(gpu_flags);
    match request.network.as_deref() {
        Some("none") => args.extend(["--network".into(), "none".into()]),
        Some(network) => args.extend(["--network".into(), network.into(), "--publish-all".into()]),
        None => args.push("--publish-all".into()),
    }
    for volume in &request.volumes {
        args.extend(["--volume".into(), volume.clone()]);
    }
    if let Some(workdir) = &request.workdir {
        args.extend(["--workdir".into(), workdir.clone()]);
    }
    args.push(image);
    args.extend(request.command.iter().cloned());
    Ok(EngineCommand { engine, args })
}
