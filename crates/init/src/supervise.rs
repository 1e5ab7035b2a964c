//! The init's life while the main command runs: forward signals to it, reap zombies.

use libc::pid_t;

use crate::reap::{self, Termination};
use crate::signals::{self, Signals};

/// Runs until the main command (`main_pid`) ends and returns how it ended.
pub fn until_exit(main_pid: pid_t, signals: &Signals) -> Termination {
    loop {
        match signals.wait(None) {
            None => {}
            Some(libc::SIGCHLD) => {
                let reaped = reap::reap_zombies();
                if let Some(&(_, termination)) =
                    reaped.ended.iter().find(|(pid, _)| *pid == main_pid)
                {
                    return termination;
                }
            }
            Some(signal) => forward(main_pid, signal),
        }
    }
}

fn forward(main_pid: pid_t, signal: libc::c_int) {
    debug!("forwarding {} to pid {main_pid}", signals::name(signal));
    // SAFETY: kill has no memory effects. The main command is not reaped yet, so its
    // pid cannot have been reused; ESRCH only means it is exiting already.
    if unsafe { libc::kill(main_pid, signal) } != 0 {
        debug!(
            "could not forward {}: {}",
            signals::name(signal),
            std::io::Error::last_os_error()
        );
    }
}
