//! `gpubox-init`: the PID 1 of every gpubox image (`/bin/gpubox-init`, the image's
//! Entrypoint, with the image's `cmd` as its arguments).
//!
//! It owns the life of the container's processes: it becomes a child subreaper, runs
//! the start-up steps, the services and the main command, forwards signals, reaps every
//! zombie, and at the end stops what is left (SIGTERM, a deadline, then SIGKILL) and
//! exits with the main command's status.
//!
//! What it does comes from the start-up plan the build wrote to
//! `/etc/gpubox/init.json` (`gpubox-initplan`). In order: runtime folders and users'
//! homes (`steps::prepare`), the GPU step, SSH, secrets, tailscale and home-manager
//! (`steps::machine`), the startup script (whose exports reach everything after it),
//! the sshd config (`steps::write_session_config`), then the services in dependency order (each once the ones it comes after are
//! ready), then the main command once every service is ready. SIGTERM/SIGINT, or the
//! main command's end, stops the main command and then the services in reverse start
//! order within the plan's stop timeout (`GPUBOX_INIT_GRACE_SECONDS` overrides it).
//! An image without a plan gets the GPU step and its main command only; there
//! SIGTERM/SIGINT are only forwarded to the main command and leftovers get the grace
//! period (5 s by default) once it exits.
//!
//! Exit status: the main command's (128 + signal when a signal ended it); without one,
//! see `supervise`. Failures before that: 2 for a misuse (no command, a bad setting, a
//! plan that cannot be read, services that clash or wait on each other), 3 when the
//! host's driver does not meet the image's CUDA requirement (the GPU step), 4 when a
//! start-up step fails (the message names it), 5 when a service cannot be started or
//! is not ready in time, 126/127 when the main command cannot be run (or its user
//! does not exist), 128 + signal when a stop signal arrives during the startup script.
//!
//! The GPU step links the NVIDIA driver the runtime injected (found in `/usr/lib64`,
//! `/usr/local/nvidia/lib64` or the multiarch folder of the init's own architecture,
//! `/usr/lib/x86_64-linux-gnu` or `/usr/lib/aarch64-linux-gnu`, before the other's) into
//! `/run/opengl-driver/lib` and puts `nvidia-smi` on PATH. `gpubox-init check [--json]`
//! prints that step's report and exits (0, or 1 when the requirement fails).
//! `gpubox-init ready` tries every service's readiness check once and exits 0 when all
//! pass, 1 naming those that fail: the probe `gpubox deploy` writes for Kubernetes.
//! `GPUBOX_INIT_ROOT` (tests only) takes every path the init reads or writes (the plan,
//! `/etc/passwd`, the startup script, log files, the GPU step's) under another folder;
//! programs are run from their real paths.
//!
//! SSH sessions get the container's environment: sshd gives each session a fresh one,
//! so the init starts sshd with `/run/gpubox/sshd_config` (private to root), a `SetEnv`
//! line holding its own environment once the startup script has run (PATH,
//! LD_LIBRARY_PATH, CUDA and NVIDIA variables, the script's exports), then the build's
//! `sshd_config` as it is. Left out: what sshd sets per session (HOME, USER, LOGNAME,
//! SHELL, TERM, MAIL), the init's shell state (PWD, OLDPWD, SHLVL, `_`), the init's
//! own `GPUBOX_INIT_*` settings, and values sshd_config cannot hold (a `"`, `\` or
//! line break; `GPUBOX_INIT_DEBUG=1` names them). sshd keeps the first `SetEnv`, so
//! one in the build's config is not used. `SetEnv` needs OpenSSH 7.8 or later; an
//! older sshd refuses the config and its start fails with sshd's message.
//!
//! Secrets handed over in the environment (`ROOT_PASSWORD`, `AGE_IDENTITY`,
//! `TAILSCALE_AUTHKEY`) are removed from it, and their values wiped from the init's own
//! environment block, once their step has run: the startup script, the services and
//! the main command never inherit them (`steps`). Decrypted secrets live in memory
//! only: a tmpfs the init mounts, or without the right to mount one, a private folder
//! on the container's `/dev/shm` tmpfs (`steps::secrets`).
//!
//! It must stay small and link statically (it is copied into every image), and
//! starts threads only to pass services' output on. What it depends on, and why:
//! - `libc`: the system calls a PID 1 makes (signals, `waitpid`, `fork`/`exec` with
//!   a user switch, `mount`, `prctl`, `statfs`);
//! - `gpubox-cuda`: the CUDA requirement and driver tables the GPU step checks, the
//!   same code the build uses (pure logic);
//! - `gpubox-initplan` (and through it `serde`, `serde_json`): reading the start-up
//!   plan, in the format the build writes it in;
//! - `serde_json` (already there for the plan): the GPU step's `check --json` report;
//! - `age` (its `ssh` and `armor` features only): decrypting agenix secrets with the
//!   SSH host keys or an age identity;
//! - `sha-crypt`: hashing `ROOT_PASSWORD` as glibc's `crypt(3)` SHA-512 for
//!   `/etc/shadow`;
//! - `base64`: checking that an `SSH_PUBLIC_KEYS` line holds a real key blob;
//! - `thiserror`: the steps' typed errors.
//!
//! Size, measured on x86_64 as `crates/build/build.rs` builds it (release with LTO
//! and one codegen unit, glibc, `+crt-static`, symbols stripped): 2.5 MiB, where a static "hello world" is 1.2 MiB
//! (glibc and std). By symbol size the rest is mostly `age` with its crypto (RSA,
//! X25519, ChaCha20-Poly1305) and message-localisation crates, about 0.4 MiB, then
//! `serde_json` about 0.1 MiB, the init's own code about 0.14 MiB, `sha2` (which
//! `sha-crypt` and `age` share) about 0.06 MiB; `sha-crypt`, `base64` and
//! `gpubox-cuda` are under 0.02 MiB each, and generic std code instantiated for all
//! of them makes up the remainder.
//!
//! It must not touch anything outside its own process tree and the paths of its
//! steps: when it is not PID 1 it never signals processes that are not its
//! descendants.

#[macro_use]
mod log;
mod accounts;
mod config;
mod gpu;
mod processes;
mod reap;
mod services;
mod shutdown;
mod signals;
mod spawn;
mod startup_script;
mod steps;
mod supervise;

use std::ffi::OsString;

use gpubox_initplan::{InitPlan, PLAN_PATH};

use config::Settings;
use signals::Signals;
use supervise::{MainCommand, Supervisor};

/// Exit status for a misuse of the init itself (no command, bad setting, unreadable
/// plan), as shells use.
const USAGE_EXIT: i32 = 2;
/// Exit status when the init cannot set itself up to supervise anything.
const SETUP_FAILURE_EXIT: i32 = 1;
/// Exit status when a start-up step (including the startup script) fails.
const STEP_FAILURE_EXIT: i32 = 4;
/// Exit status when a service cannot be started or is not ready in time.
const SERVICE_FAILURE_EXIT: i32 = 5;

const NO_COMMAND: &str =
    "no command to run; set `cmd` in gpubox.toml or pass one to `docker run IMAGE CMD...`";

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let command: Vec<OsString> = std::env::args_os().skip(1).collect();
    match command.first().and_then(|first| first.to_str()) {
        Some("check") => return gpu::check(&command[1..]),
        Some("ready") => {
            return match read_plan() {
                Ok(plan) => services::readiness::probe(&command[1..], plan.as_ref()),
                Err(message) => {
                    notice!("{message}");
                    USAGE_EXIT
                }
            }
        }
        Some(startup_script::CAPTURE_MODE) => {
            return startup_script::write_environment(&command[1..])
        }
        _ => {}
    }
    let plan = match read_plan() {
        Ok(plan) => plan,
        Err(message) => {
            notice!("{message}");
            return USAGE_EXIT;
        }
    };
    if command.is_empty() && plan.is_none() {
        notice!("{NO_COMMAND}");
        return USAGE_EXIT;
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            notice!("{error}");
            return USAGE_EXIT;
        }
    };
    if settings.debug {
        log::enable_debug();
    }

    become_subreaper();
    // Signals are blocked before anything else runs, so one that arrives while the start
    // goes on waits in the queue instead of being lost or killing the init.
    let signals = match Signals::take_over() {
        Ok(signals) => signals,
        Err(error) => {
            notice!("cannot block signals in the init: {error}");
            return SETUP_FAILURE_EXIT;
        }
    };

    // Start-up steps, in order: after signals are taken over, so none is lost while
    // they run, and before any service, so what they set up reaches all of them.
    let services = match &plan {
        Some(plan) => match start_up(plan, &signals) {
            Ok(services) => services,
            Err(status) => return status,
        },
        None => {
            if let Err(status) = gpu::start_up() {
                return status;
            }
            Vec::new()
        }
    };
    if command.is_empty() && services.is_empty() {
        notice!("{NO_COMMAND}");
        return USAGE_EXIT;
    }
    let main_command = if command.is_empty() {
        None
    } else {
        let main_user = plan.as_ref().and_then(|plan| plan.main_user.as_deref());
        let account = match main_user.map(accounts::resolve).transpose() {
            Ok(account) => account,
            Err(error) => {
                notice!("cannot run the main command as its user: {error}");
                return spawn::NOT_RUNNABLE_EXIT;
            }
        };
        Some(MainCommand { command, account })
    };
    let stop_timeout = settings.stop_timeout(plan.as_ref().map(|plan| plan.stop_timeout_ms));
    match Supervisor::new(
        &signals,
        services,
        main_command,
        stop_timeout,
        plan.is_some(),
    ) {
        Ok(supervisor) => supervisor.run(),
        Err(error) => {
            notice!("{error}");
            error.exit_code()
        }
    }
}

/// The start-up plan, `None` when the image has none.
fn read_plan() -> Result<Option<InitPlan>, String> {
    let path = steps::root_path(PLAN_PATH);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(format!(
                "cannot read the start-up plan {}: {error}; the image is damaged, rebuild it",
                path.display()
            ))
        }
    };
    InitPlan::from_json(&bytes)
        .map(Some)
        .map_err(|error| format!("cannot use the start-up plan {}: {error}", path.display()))
}

/// The start-up steps of a plan, in order; returns every service to start (the ones
/// the steps start first) or the status to exit with.
fn start_up(plan: &InitPlan, signals: &Signals) -> Result<Vec<gpubox_initplan::ServicePlan>, i32> {
    let step_failed = |failure: steps::StepFailure| {
        notice!("{failure}");
        STEP_FAILURE_EXIT
    };
    steps::prepare(plan).map_err(step_failed)?;
    gpu::start_up()?;
    let mut services = steps::machine(plan).map_err(step_failed)?;
    if let Some(script) = &plan.startup_script {
        startup_script::run(script, signals).map_err(|error| {
            notice!("start-up step `{}` failed: {error}", startup_script::STEP);
            error.exit_code(STEP_FAILURE_EXIT)
        })?;
    }
    steps::write_session_config(plan).map_err(step_failed)?;
    services.extend(plan.services.iter().cloned());
    Ok(services)
}

/// Orphans of our descendants are re-parented to us even when we are not PID 1 (for
/// example under another init), so that we reap them and stop them at shutdown.
fn become_subreaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        notice!(
            "cannot become a child subreaper: {}; orphaned processes will not be reaped by the init",
            std::io::Error::last_os_error()
        );
    }
}
