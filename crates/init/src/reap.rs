//! Collecting the exit status of every child that has ended, so no zombie stays.

use std::fmt;

use libc::{c_int, pid_t};

use crate::signals;

/// How a process ended, as `waitpid` reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Termination {
    Exited(c_int),
    Signaled(c_int),
}

impl Termination {
    fn from_wait_status(status: c_int) -> Self {
        if libc::WIFSIGNALED(status) {
            Self::Signaled(libc::WTERMSIG(status))
        } else {
            Self::Exited(libc::WEXITSTATUS(status))
        }
    }

    /// Exited with status 0.
    pub fn succeeded(self) -> bool {
        self == Self::Exited(0)
    }

    /// The status the init exits with: the code itself, or 128 + signal as shells report.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Exited(code) => code,
            Self::Signaled(signal) => 128 + signal,
        }
    }
}

impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Exited(code) => write!(f, "exited with status {code}"),
            Self::Signaled(signal) => write!(f, "was killed by {}", signals::name(signal)),
        }
    }
}

pub struct Reaped {
    /// The children reaped in this round.
    pub ended: Vec<(pid_t, Termination)>,
    /// Whether the init still has children (running ones; zombies are all reaped).
    pub children_left: bool,
}

/// Reaps every child that has ended, without waiting for running ones.
pub fn reap_zombies() -> Reaped {
    let mut ended = Vec::new();
    loop {
        let mut status: c_int = 0;
        // SAFETY: waitpid only writes to `status`.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match pid {
            0 => {
                return Reaped {
                    ended,
                    children_left: true,
                }
            }
            -1 => {
                let error = std::io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::ECHILD) => {}
                    _ => notice!("cannot reap child processes: {error}"),
                }
                return Reaped {
                    ended,
                    children_left: false,
                };
            }
            pid => {
                let termination = Termination::from_wait_status(status);
                debug!("reaped pid {pid}, which {termination}");
                ended.push((pid, termination));
            }
        }
    }
}

/// Waits for the child `pid` to end, for a start-up step that runs one command
/// before the signal loop (signals wait in the queue meanwhile).
pub fn wait_for(pid: pid_t) -> std::io::Result<Termination> {
    loop {
        let mut status: c_int = 0;
        // SAFETY: waitpid only writes to `status`.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            return Ok(Termination::from_wait_status(status));
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINTR) {
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_follows_the_shell_convention() {
        assert_eq!(Termination::Exited(7).exit_code(), 7);
        assert_eq!(Termination::Signaled(libc::SIGKILL).exit_code(), 137);
        assert_eq!(Termination::Signaled(libc::SIGTERM).exit_code(), 143);
    }
}
