//! `gpubox-init`: the PID 1 of every gpubox image (`/bin/gpubox-init`, the image's
//! Entrypoint, with the image's `cmd` as its arguments).
//!
//! It owns the life of the container's processes: it becomes a child subreaper, runs
//! the main command, forwards termination and job-control signals to it, reaps every
//! zombie, and when the main command exits it stops whatever is left (SIGTERM, a grace
//! period, then SIGKILL) and exits with the main command's status.
//!
//! Before the main command it runs the start-up steps: the GPU step links the NVIDIA
//! driver the runtime injected into `/run/opengl-driver/lib`, puts `nvidia-smi` on PATH,
//! and refuses to start (exit 3, one plain message) an image whose CUDA requirement the
//! host's driver does not meet. `gpubox-init check [--json]` prints that step's report
//! and exits (0, or 1 when the requirement fails). `GPUBOX_INIT_ROOT` (tests only) takes
//! every path of the GPU step under another folder, a fake host tree.
//!
//! It must stay tiny and depend on `libc` and `gpubox-cuda` (pure logic) only, so that
//! it links statically and runs in any image. It must not touch anything outside its own
//! process tree and `/run/opengl-driver`: when it is not PID 1 it never signals
//! processes that are not its descendants.

#[macro_use]
mod log;
mod config;
mod gpu;
mod processes;
mod reap;
mod shutdown;
mod signals;
mod spawn;
mod supervise;

use std::ffi::OsString;

use config::Settings;
use signals::Signals;

/// Exit status for a misuse of the init itself (no command, bad setting), as shells use.
const USAGE_EXIT: i32 = 2;
/// Exit status when the init cannot set itself up to supervise anything.
const SETUP_FAILURE_EXIT: i32 = 1;

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let command: Vec<OsString> = std::env::args_os().skip(1).collect();
    if command.first().is_some_and(|first| first == "check") {
        return gpu::check(&command[1..]);
    }
    if command.is_empty() {
        notice!(
            "no command to run; set `cmd` in gpubox.toml or pass one to `docker run IMAGE CMD...`"
        );
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
    // Signals are blocked before anything else runs, so one that arrives while the main
    // command starts waits in the queue instead of being lost or killing the init.
    let signals = match Signals::take_over() {
        Ok(signals) => signals,
        Err(error) => {
            notice!("cannot block signals in the init: {error}");
            return SETUP_FAILURE_EXIT;
        }
    };

    // Start-up steps, in order: after signals are taken over, so none is lost while
    // they run, and before the main command, so what they set up reaches it.
    if let Err(status) = gpu::start_up() {
        return status;
    }
    let main_pid = match spawn::spawn(&command) {
        Ok(pid) => pid,
        Err(error) => {
            notice!("{error}");
            return error.exit_code();
        }
    };
    debug!(
        "started `{}` as pid {main_pid}",
        command[0].to_string_lossy()
    );

    let termination = supervise::until_exit(main_pid, &signals);
    debug!("main command {termination}");
    shutdown::stop_remaining(&signals, settings.grace);
    termination.exit_code()
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
