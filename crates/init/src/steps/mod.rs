//! The start-up steps that make a container a remote machine, from the image's start-up
//! plan: [`prepare`] (runtime folders, users' homes) runs first; [`machine`] (SSH,
//! secrets, tailscale, home-manager activation, in that order) runs after the GPU step
//! and returns the system services (sshd, tailscaled, `tailscale up`) for the
//! supervisor to start before the plan's own; [`write_session_config`] runs after the
//! startup script and writes the sshd config that hands SSH sessions the container's
//! environment.
//!
//! Every file path a step reads or writes is taken under `GPUBOX_INIT_ROOT` (tests
//! point it at a temporary folder; it is `/` in a container) by [`root_path`], which
//! the GPU step, the plan, the accounts and the services use too; the programs it runs
//! (`ssh-keygen`, the home-manager activation) are run from their real paths.
//!
//! The variables that hand a step a secret (`ROOT_PASSWORD` to SSH, `AGE_IDENTITY` to
//! secrets, `TAILSCALE_AUTHKEY` to tailscale) are removed from the init's environment
//! once their step has run, and their value is wiped from the init's own environment
//! block: the startup script, the services and the main command never inherit them,
//! and nobody reads them from `/proc/PID/environ`.

pub mod files;
mod home;
mod secrets;
mod ssh;
mod tailscale;

pub use ssh::write_session_config;

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use gpubox_initplan::{AccountPlan, InitPlan, Restart, ServicePlan};

/// Takes every path the init reads or writes under another folder (tests only).
const ROOT_VARIABLE: &str = "GPUBOX_INIT_ROOT";

/// `absolute` (such as `/etc/passwd`) under `GPUBOX_INIT_ROOT`, or as it is when that
/// is unset: the one place every path of the init is made.
pub fn root_path(absolute: &str) -> PathBuf {
    let root = std::env::var_os(ROOT_VARIABLE)
        .filter(|root| !root.is_empty())
        .map_or_else(|| PathBuf::from("/"), PathBuf::from);
    root.join(absolute.trim_start_matches('/'))
}

/// A start-up step that could not be done; the start stops.
#[derive(Debug)]
pub struct StepFailure {
    step: &'static str,
    message: String,
}

impl StepFailure {
    fn new(step: &'static str, message: impl fmt::Display) -> Self {
        Self {
            step,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for StepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "start-up step `{}` failed: {}", self.step, self.message)
    }
}

/// A runtime folder every image gets, made with `mode` when missing.
struct RuntimeFolder {
    path: &'static str,
    mode: u32,
    /// Whether an existing folder is given `mode` and root ownership too, because
    /// programs refuse it otherwise; the others keep what the image or a volume gave.
    enforced: bool,
}

/// `/var/empty` and `/run/sshd` are the privilege-separation folders of nixpkgs' and
/// Debian's sshd, which refuses to start unless they are root-owned and not writable
/// by anyone else.
const RUNTIME_FOLDERS: &[RuntimeFolder] = &[
    RuntimeFolder {
        path: "/tmp",
        mode: 0o1777,
        enforced: true,
    },
    RuntimeFolder {
        path: "/var/tmp",
        mode: 0o1777,
        enforced: true,
    },
    RuntimeFolder {
        path: "/run",
        mode: 0o755,
        enforced: false,
    },
    RuntimeFolder {
        path: "/run/user",
        mode: 0o755,
        enforced: false,
    },
    RuntimeFolder {
        path: "/var/log",
        mode: 0o755,
        enforced: false,
    },
    RuntimeFolder {
        path: "/var/empty",
        mode: 0o755,
        enforced: true,
    },
    RuntimeFolder {
        path: "/run/sshd",
        mode: 0o755,
        enforced: true,
    },
];

/// The first steps: runtime folders, then the home folders of the plan's users.
pub fn prepare(plan: &InitPlan) -> Result<(), StepFailure> {
    for folder in RUNTIME_FOLDERS {
        runtime_folder(folder).map_err(|error| StepFailure::new("runtime folders", error))?;
    }
    for account in &plan.users {
        home_folder(account).map_err(|error| StepFailure::new("users", error))?;
    }
    Ok(())
}

/// The machine steps in order; returns the services they start, in start order.
pub fn machine(plan: &InitPlan) -> Result<Vec<ServicePlan>, StepFailure> {
    let mut services = Vec::new();
    if let Some(ssh) = &plan.ssh {
        services.push(ssh::run(ssh).map_err(|error| StepFailure::new("ssh", error))?);
        forget_secret(ssh::PASSWORD_VARIABLE);
    }
    if !plan.secrets.is_empty() {
        secrets::run(&plan.secrets).map_err(|error| StepFailure::new("secrets", error))?;
        forget_secret(secrets::IDENTITY_VARIABLE);
    }
    if let Some(tailscale) = &plan.tailscale {
        services.extend(
            tailscale::run(tailscale).map_err(|error| StepFailure::new("tailscale", error))?,
        );
        forget_secret(tailscale::AUTH_KEY_VARIABLE);
    }
    if let Some(home) = &plan.home {
        home::run(home).map_err(|error| StepFailure::new("home", error))?;
    }
    Ok(services)
}

/// How long a system service that must stay up (sshd, tailscaled) waits before it is
/// started again after it exits.
const SYSTEM_RESTART_DELAY_MS: u64 = 1000;

/// A system service a step starts: run as root from `/` with the init's environment,
/// its output prefixed, restarted as `restart` says after `restart_delay_ms` with no
/// limit; callers set `after` and `readiness` where it has them.
fn system_service(
    name: &str,
    argv: Vec<String>,
    restart: Restart,
    restart_delay_ms: u64,
) -> ServicePlan {
    ServicePlan {
        name: name.to_owned(),
        argv,
        env: Default::default(),
        working_dir: None,
        user: None,
        restart,
        restart_delay_ms,
        max_restarts: None,
        after: Vec::new(),
        readiness: None,
        log_file: None,
    }
}

/// Removes `variable`, which handed a step a secret, from the environment everything
/// started later inherits, and overwrites its value where it was: the init's initial
/// environment block is what `/proc/1/environ` shows, and removing the variable alone
/// leaves the value there.
fn forget_secret(variable: &str) {
    let Ok(name) = CString::new(variable) else {
        return;
    };
    // SAFETY: the init is single-threaded until the services start (no thread reads or
    // writes the environment meanwhile); getenv's result, when not null, points at the
    // NUL-terminated value inside the environment, which stays valid until unsetenv
    // below, and is overwritten within its own length.
    unsafe {
        let value = libc::getenv(name.as_ptr());
        if !value.is_null() {
            std::ptr::write_bytes(value, 0, libc::strlen(value));
        }
    }
    std::env::remove_var(variable);
}

/// A path the steps could not set up, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {error}{}", path.display(), hint(error))]
pub struct PathError {
    action: &'static str,
    path: PathBuf,
    error: io::Error,
}

impl PathError {
    fn new(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_owned();
        move |error| Self {
            action,
            path,
            error,
        }
    }
}

/// Creates a runtime folder or gives it its mode. A read-only root or an init that is
/// not root (`--read-only`, `--user`) cannot, and the image may still work: a notice.
fn runtime_folder(folder: &RuntimeFolder) -> Result<(), PathError> {
    let path = root_path(folder.path);
    let result = (|| {
        let missing = !path.exists();
        if missing {
            files::create_dir_all(&path, 0o755)?;
        } else if !folder.enforced {
            return Ok(());
        }
        let metadata = std::fs::metadata(&path)?;
        if metadata.mode() & 0o7777 != folder.mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(folder.mode))?;
        }
        if folder.enforced && (metadata.uid() != 0 || metadata.gid() != 0) {
            std::os::unix::fs::chown(&path, Some(0), Some(0))?;
        }
        Ok(())
    })();
    match result {
        Err(error) if cannot_write_here(&error) => {
            notice!(
                "cannot set up {} (mode {:o}): {error}; programs that need it may fail",
                path.display(),
                folder.mode
            );
            Ok(())
        }
        result => result.map_err(PathError::new("set up runtime folder", &path)),
    }
}

/// What to do when the error is a lack of rights, the usual cause.
fn hint(error: &io::Error) -> &'static str {
    if cannot_write_here(error) {
        "; the start-up steps need gpubox-init to run as root on a writable root file system (set the image's `user` for the main command instead of running the container as another user)"
    } else {
        ""
    }
}

fn cannot_write_here(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EACCES | libc::EPERM | libc::EROFS)
    )
}

/// Creates a user's home folder (with root-owned parents) and gives it to the user;
/// an empty folder owned by someone else (a freshly mounted volume) is given too.
fn home_folder(account: &AccountPlan) -> Result<(), PathError> {
    let path = root_path(&account.home);
    let created = !path.exists();
    if created {
        if let Some(parent) = path.parent() {
            files::create_dir_all(parent, 0o755)
                .map_err(PathError::new("create the parent folder", parent))?;
        }
        files::create_dir(&path, 0o700).map_err(PathError::new("create home folder", &path))?;
    }
    let metadata = std::fs::metadata(&path).map_err(PathError::new("read home folder", &path))?;
    let empty = std::fs::read_dir(&path)
        .map_err(PathError::new("read home folder", &path))?
        .next()
        .is_none();
    let owned = metadata.uid() == account.uid && metadata.gid() == account.gid;
    if created || (empty && !owned) {
        std::os::unix::fs::chown(&path, Some(account.uid), Some(account.gid))
            .map_err(PathError::new("give its user the home folder", &path))?;
    }
    Ok(())
}
