//! The start-up plan's script (`extraStartupScript`), the last start-up step: sourced
//! by `/bin/sh` so that the variables it exports reach every service and the main
//! command. After the script the shell execs `gpubox-init` itself in a hidden mode
//! ([`CAPTURE_MODE`]) that writes the environment it was given, NUL-separated, to an
//! anonymous file the init then reads: nothing parses shell output, and values may
//! hold any byte but NUL.
//!
//! The script runs as a child while the init keeps taking signals: SIGTERM or SIGINT
//! is passed on to the script's process group and abandons the start.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use libc::{c_int, pid_t};

use crate::reap::{self, Termination};
use crate::signals::{self, Signals};
use crate::spawn::{self, ChildSetup, SpawnError};
use crate::steps::root_path;

/// `gpubox-init --capture-environment FD`: write the environment to FD and exit.
pub const CAPTURE_MODE: &str = "--capture-environment";
/// The step's name in messages.
pub const STEP: &str = "startup script";

const SHELL: &str = "/bin/sh";
/// Sources the script (`$1`), then execs the init (`$2`) to write the environment to
/// the file descriptor `$3`. The script gets no positional parameters of its own.
const WRAPPER: &str = r#"gpubox_script=$1 gpubox_init=$2 gpubox_fd=$3
shift 3
. "$gpubox_script" && exec "$gpubox_init" --capture-environment "$gpubox_fd""#;
/// Written first, so the init can tell a captured environment from an empty file.
const MARKER: &[u8] = b"gpubox-init environment\0";
/// Variables the shell itself sets or changes (a `cd` in the script changes PWD): the
/// init keeps its own values of these.
const SHELL_VARIABLES: [&str; 4] = ["_", "SHLVL", "PWD", "OLDPWD"];

/// Why the script stopped the start.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot find the gpubox-init executable to read the script's exports back: {0}")]
    OwnExecutable(io::Error),
    #[error("cannot keep the script's exports in an anonymous file: {0}")]
    Capture(io::Error),
    #[error("{0}")]
    Spawn(#[from] SpawnError),
    #[error("{script} {termination}; fix the script (its output is above)")]
    Failed {
        script: String,
        termination: Termination,
    },
    #[error("{} arrived while the script ran", signals::name(*.0))]
    Stopped(c_int),
}

impl ScriptError {
    /// 128 + the signal when the start was stopped, else `step_failure`.
    pub fn exit_code(&self, step_failure: i32) -> i32 {
        match self {
            Self::Stopped(signal) => Termination::Signaled(*signal).exit_code(),
            _ => step_failure,
        }
    }
}

/// Runs `script` (a path in the image) and puts what it exported into the init's own
/// environment, which every later child inherits. Must run before any other thread
/// of the init starts, as it changes the environment.
pub fn run(script: &str, signals: &Signals) -> Result<(), ScriptError> {
    let own_executable = std::env::current_exe().map_err(ScriptError::OwnExecutable)?;
    let capture = anonymous_file().map_err(ScriptError::Capture)?;
    let path = root_path(script);
    let command: Vec<OsString> = [
        OsStr::new(SHELL),
        OsStr::new("-c"),
        OsStr::new(WRAPPER),
        OsStr::new("sh"),
        path.as_os_str(),
        own_executable.as_os_str(),
        OsStr::new(&capture.as_raw_fd().to_string()),
    ]
    .into_iter()
    .map(OsStr::to_owned)
    .collect();
    let setup = ChildSetup {
        stdio: [spawn::dev_null(), None, None],
        ..ChildSetup::default()
    };
    let pid = spawn::spawn(&command, setup)?;
    debug!("running the startup script {} as pid {pid}", path.display());
    let termination = wait_for(pid, signals)?;
    if !termination.succeeded() {
        return Err(ScriptError::Failed {
            script: path.display().to_string(),
            termination,
        });
    }
    let mut captured = Vec::new();
    let mut file = File::from(capture);
    file.rewind()
        .and_then(|()| file.read_to_end(&mut captured))
        .map_err(ScriptError::Capture)?;
    match captured.strip_prefix(MARKER) {
        Some(environment) => apply(environment),
        None => notice!(
            "the startup script {} ended with `exit`, so the variables it exports are not passed on; end it without `exit` to pass them",
            path.display()
        ),
    }
    Ok(())
}

/// An anonymous file the script's shell inherits (it is not close-on-exec; only the
/// script runs while it is open).
fn anonymous_file() -> io::Result<OwnedFd> {
    // SAFETY: the name is a NUL-terminated string; memfd_create returns a new descriptor.
    let fd = unsafe { libc::memfd_create(c"gpubox-init-environment".as_ptr(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits for the script to end while passing signals on to it.
fn wait_for(pid: pid_t, signals: &Signals) -> Result<Termination, ScriptError> {
    let mut stopped_by = None;
    loop {
        match signals.wait(None) {
            None => {}
            Some(libc::SIGCHLD) => {
                // Other ended children are what the script left behind; reaping them
                // is all they need.
                if let Some(&(_, termination)) = reap::reap_zombies()
                    .ended
                    .iter()
                    .find(|(ended, _)| *ended == pid)
                {
                    return match stopped_by {
                        Some(signal) => Err(ScriptError::Stopped(signal)),
                        None => Ok(termination),
                    };
                }
            }
            Some(signal) => {
                debug!("passing {} on to the startup script", signals::name(signal));
                // SAFETY: kill has no memory effects; the script leads its own process
                // group and is not reaped yet.
                unsafe { libc::kill(-pid, signal) };
                if matches!(signal, libc::SIGTERM | libc::SIGINT) {
                    stopped_by = Some(signal);
                }
            }
        }
    }
}

/// Makes the init's environment the captured one (`KEY=VALUE\0` entries), but for the
/// shell's own variables.
fn apply(environment: &[u8]) {
    let captured: Vec<(&OsStr, &OsStr)> = environment
        .split(|&byte| byte == 0)
        .filter_map(|entry| {
            let equals = entry.iter().position(|&byte| byte == b'=')?;
            let (key, value) = (&entry[..equals], &entry[equals + 1..]);
            (!key.is_empty()).then(|| (OsStr::from_bytes(key), OsStr::from_bytes(value)))
        })
        .filter(|(key, _)| {
            !SHELL_VARIABLES
                .iter()
                .any(|shell| OsStr::new(shell) == *key)
        })
        .collect();
    for (key, _) in std::env::vars_os() {
        let shell_variable = SHELL_VARIABLES.iter().any(|shell| OsStr::new(shell) == key);
        if !shell_variable && !captured.iter().any(|(captured, _)| *captured == key) {
            debug!("the startup script unset {}", key.to_string_lossy());
            std::env::remove_var(&key);
        }
    }
    for (key, value) in captured {
        if std::env::var_os(key).as_deref() != Some(value) {
            debug!("the startup script set {}", key.to_string_lossy());
            std::env::set_var(key, value);
        }
    }
}

/// The hidden mode: writes the environment to the descriptor in `arguments` (the
/// only one) and returns the exit status.
pub fn write_environment(arguments: &[OsString]) -> i32 {
    let fd = match arguments {
        [fd] => fd.to_str().and_then(|fd| fd.parse::<c_int>().ok()),
        _ => None,
    };
    let Some(fd) = fd.filter(|fd| *fd > 2) else {
        notice!("usage: gpubox-init {CAPTURE_MODE} FD (used by the startup script step only)");
        return crate::USAGE_EXIT;
    };
    let mut bytes = MARKER.to_vec();
    for (key, value) in std::env::vars_os() {
        bytes.extend_from_slice(key.as_bytes());
        bytes.push(b'=');
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    // SAFETY: the wrapper passes the anonymous file it inherited; this process owns it
    // from here on.
    let mut file = unsafe { File::from_raw_fd(fd) };
    match file.write_all(&bytes) {
        Ok(()) => 0,
        Err(error) => {
            notice!("cannot pass the startup script's exports back to the init: {error}");
            1
        }
    }
}
