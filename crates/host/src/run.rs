//! `gpubox run`: how to start an image with the host's GPUs, with the flags
//! that work on this host: CDI (`--device nvidia.com/gpu=all`) where the
//! engine and an up-to-date spec allow it, the legacy NVIDIA runtime
//! (`--gpus all`) where only that exists, and a plain explanation where
//! neither does. An image that asks for no GPU (built with `cuda.enable =
//! false`), `--no-gpu`, or a dry run on a host without a GPU gets the command
//! without GPU flags, and the reason.

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
    /// `NAME=VALUE` (or `NAME`, taken from this environment), the engine's `--env`.
    pub env: Vec<String>,
    /// The container's name (`--name`).
    pub name: Option<String>,
    /// Start the container in the background and print its id (`--detach`).
    pub detach: bool,
    /// More arguments for the engine's `run`, as given, before the image.
    pub engine_args: Vec<String>,
    /// The working folder inside the container.
    pub workdir: Option<String>,
    /// Run without a GPU even when the image asks for one.
    pub no_gpu: bool,
    /// Only the command is wanted: when no engine here can give the container a
    /// GPU, it is still written (without GPU flags) instead of failing.
    pub dry_run: bool,
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
        let args: Vec<&std::ffi::OsStr> = self.args.iter().map(|a| a.as_ref()).collect();
        f.write_str(&gpubox_nix::command_line(self.engine.program(), &args))
    }
}

/// Why no engine can start a GPU container here.
#[derive(Debug, thiserror::Error)]
#[error(
    "no container engine here can give a container the GPU:\n{reasons}\n(to run the image \
     without a GPU, pass --no-gpu; --dry-run prints the command anyway)"
)]
pub struct NoGpuEngine {
    pub reasons: String,
}

/// The command that starts the container, and what the user should know about it.
#[derive(Debug)]
pub struct RunPlan {
    pub command: EngineCommand,
    /// Why the command has no GPU flags, when it has none.
    pub without_gpu: Option<String>,
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

/// The engine command that starts the container: with the GPUs when the image asks
/// for one (its config has NVIDIA's variables, as `cuda.enable` gives it) and
/// `--no-gpu` is not given; without them otherwise, or for a dry run where no engine
/// can give the GPU.
pub fn command(request: &RunRequest) -> Result<RunPlan, NoGpuEngine> {
    let (wanted, image) = match request.image.parse::<ImageLocation>() {
        Ok(ImageLocation::Engine { engine, reference }) => (Some(engine), reference),
        _ => (None, request.image.clone()),
    };
    let (holder, asks) = gpu_request(wanted, &image);
    let wanted = wanted.or(holder);
    let (engine, gpu_flags, without_gpu) = if request.no_gpu || !asks {
        let why = if request.no_gpu {
            "--no-gpu".to_owned()
        } else {
            format!("{image} does not ask for a GPU (no NVIDIA_VISIBLE_DEVICES in its config)")
        };
        (running_engine(wanted), Vec::new(), Some(why))
    } else {
        match choose(wanted, &request.roots, &request.cdi_root) {
            Ok((engine, flags)) => (engine, flags, None),
            Err(no_gpu) if request.dry_run => (
                running_engine(wanted),
                Vec::new(),
                Some(format!(
                    "no container engine here can give a container the GPU:\n{}",
                    no_gpu.reasons
                )),
            ),
            Err(no_gpu) => return Err(no_gpu),
        }
    };
    let mut args: Vec<String> = vec!["run".into(), "--rm".into()];
    if request.detach {
        args.push("--detach".into());
    } else if request.interactive {
        args.push("-it".into());
    }
    args.extend(gpu_flags);
    match request.network.as_deref() {
        Some("none") => args.extend(["--network".into(), "none".into()]),
        Some(network) => args.extend(["--network".into(), network.into(), "--publish-all".into()]),
        None => args.push("--publish-all".into()),
    }
    if let Some(name) = &request.name {
        args.extend(["--name".into(), name.clone()]);
    }
    for volume in &request.volumes {
        args.extend(["--volume".into(), volume.clone()]);
    }
    for var in &request.env {
        args.extend(["--env".into(), var.clone()]);
    }
    if let Some(workdir) = &request.workdir {
        args.extend(["--workdir".into(), workdir.clone()]);
    }
    args.extend(request.engine_args.iter().cloned());
    args.push(image);
    args.extend(request.command.iter().cloned());
    Ok(RunPlan {
        command: EngineCommand { engine, args },
        without_gpu,
    })
}

/// The engine that has the image, and whether the image's config asks for a GPU
/// (NVIDIA's variables). An image no engine has yet (the engine pulls it) is taken
/// to ask for one.
fn gpu_request(wanted: Option<Engine>, image: &str) -> (Option<Engine>, bool) {
    let engines = match wanted {
        Some(engine) => vec![engine],
        None => vec![Engine::Podman, Engine::Docker],
    };
    let found = engines.into_iter().find_map(|engine| {
        gpubox_engines::image_env(engine, image)
            .ok()
            .map(|env| (engine, env))
    });
    match found {
        Some((engine, env)) => (
            Some(engine),
            env.iter().any(|var| {
                var.starts_with("NVIDIA_VISIBLE_DEVICES=")
                    || var.starts_with("NVIDIA_REQUIRE_CUDA=")
            }),
        ),
        None => (None, true),
    }
}

/// The engine asked for, else the first of podman and docker that answers, else podman
/// (whose command is still worth printing).
fn running_engine(wanted: Option<Engine>) -> Engine {
    wanted.unwrap_or_else(|| {
        [Engine::Podman, Engine::Docker]
            .into_iter()
            .find(|engine| gpubox_engines::probe(*engine).is_some())
            .unwrap_or(Engine::Podman)
    })
}
