//! The tailscale step: `tailscaled` in userspace-networking mode (a container has no
//! TUN device nor the capability to make one) with its state in the plan's folder,
//! then a `tailscale up` one-shot once the daemon answers.
//!
//! The auth key never appears in a command line, where `ps` would show it to every
//! user: the trimmed key (from the plan's file, else `TAILSCALE_AUTHKEY`) is written to
//! a root-only file under `/run` (memory in a container, so the reusable key is not
//! kept on the state volume) and passed as `--auth-key=file:PATH`, which `tailscale up`
//! reads since tailscale 1.50.

use std::io;
use std::path::Path;

use gpubox_initplan::{Readiness, ReadinessCheck, Restart, ServicePlan, TailscalePlan};

use super::files;
use super::{root_path, system_service, PathError, SYSTEM_RESTART_DELAY_MS};

pub const AUTH_KEY_VARIABLE: &str = gpubox_initplan::variables::TAILSCALE_AUTHKEY;
/// Where the key is handed to `tailscale up`, in the image.
const AUTH_KEY_HANDOFF: &str = "/run/gpubox/tailscale-auth-key";
/// How long tailscaled gets to answer on its socket before the start fails.
const DAEMON_READY_TIMEOUT_MS: u64 = gpubox_initplan::TAILSCALED_READY_TIMEOUT_MS;
/// `tailscale up` is tried again this long after a failure (the control server may be
/// unreachable for a while).
const UP_RETRY_DELAY_MS: u64 = 5000;

const DAEMON_SERVICE: &str = "tailscaled";
const UP_SERVICE: &str = "tailscale-up";

#[derive(Debug, thiserror::Error)]
pub enum TailscaleError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("the tailscale auth key file {} is empty; put the key (tskey-auth-...) in it or unset `tailscale.authKeyFile`", path.display())]
    EmptyKeyFile { path: std::path::PathBuf },
}

/// Runs the step; returns tailscaled and the `tailscale up` one-shot, in start order.
pub fn run(plan: &TailscalePlan) -> Result<Vec<ServicePlan>, TailscaleError> {
    let state_dir = root_path(&plan.state_dir);
    files::create_dir_all(&state_dir, 0o700).map_err(PathError::new(
        "create the tailscale state folder",
        &state_dir,
    ))?;
    std::fs::set_permissions(
        &state_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .map_err(PathError::new(
        "make the tailscale state folder private",
        &state_dir,
    ))?;
    let socket = format!(
        "--socket={}",
        Path::new(&plan.state_dir).join("tailscaled.sock").display()
    );
    let state = format!(
        "--state={}",
        Path::new(&plan.state_dir)
            .join("tailscaled.state")
            .display()
    );

    let mut daemon_argv = vec![
        plan.tailscaled.clone(),
        "--tun=userspace-networking".to_owned(),
        state,
        socket.clone(),
    ];
    daemon_argv.extend(plan.extra_daemon_flags.iter().cloned());

    let mut up_argv = vec![plan.tailscale.clone(), socket.clone(), "up".to_owned()];
    let handoff = root_path(AUTH_KEY_HANDOFF);
    match auth_key(plan)? {
        Some(key) => {
            if let Some(parent) = handoff.parent() {
                files::create_dir_all(parent, 0o755)
                    .map_err(PathError::new("create the folder", parent))?;
            }
            files::write_atomic(&handoff, key.as_bytes(), 0o600, None).map_err(PathError::new(
                "write the tailscale auth key file",
                &handoff,
            ))?;
            up_argv.push(format!("--auth-key=file:{AUTH_KEY_HANDOFF}"));
        }
        None => {
            // A key handed over by an earlier start is not kept around.
            let _ = std::fs::remove_file(&handoff);
            notice!(
                "no tailscale auth key (`tailscale.authKeyFile` or {AUTH_KEY_VARIABLE}); `tailscale up` will print a login URL"
            );
        }
    }
    if let Some(hostname) = &plan.hostname {
        up_argv.push(format!("--hostname={hostname}"));
    }
    up_argv.extend(plan.extra_up_flags.iter().cloned());

    let daemon = ServicePlan {
        readiness: Some(Readiness {
            check: ReadinessCheck::Exec(vec![
                plan.tailscale.clone(),
                socket,
                "version".to_owned(),
                "--daemon".to_owned(),
            ]),
            timeout_ms: DAEMON_READY_TIMEOUT_MS,
        }),
        ..system_service(
            DAEMON_SERVICE,
            daemon_argv,
            Restart::Always,
            SYSTEM_RESTART_DELAY_MS,
        )
    };
    let up = ServicePlan {
        after: vec![DAEMON_SERVICE.to_owned()],
        ..system_service(UP_SERVICE, up_argv, Restart::OnFailure, UP_RETRY_DELAY_MS)
    };
    Ok(vec![daemon, up])
}

/// The trimmed key from the plan's file; `TAILSCALE_AUTHKEY` when the file is unset or
/// missing; `None` when neither has one.
fn auth_key(plan: &TailscalePlan) -> Result<Option<String>, TailscaleError> {
    if let Some(file) = &plan.auth_key_file {
        let path = root_path(file);
        match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().is_empty() => {
                return Err(TailscaleError::EmptyKeyFile { path })
            }
            Ok(text) => return Ok(Some(text.trim().to_owned())),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                debug!(
                    "tailscale auth key file {} is missing; trying {AUTH_KEY_VARIABLE}",
                    path.display()
                );
            }
            Err(error) => {
                return Err(PathError::new("read the tailscale auth key file", &path)(error).into())
            }
        }
    }
    Ok(std::env::var(AUTH_KEY_VARIABLE)
        .ok()
        .map(|key| key.trim().to_owned())
        .filter(|key| !key.is_empty()))
}
