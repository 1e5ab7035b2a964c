//! Finding the init's children in /proc, for when the init is not PID 1 and must not
//! signal the whole machine.

use std::fmt;
use std::fs;
use std::io;

use libc::pid_t;

const PROC: &str = "/proc";

/// /proc cannot tell which processes are the init's children.
#[derive(Debug)]
pub enum ProcError {
    Unreadable(io::Error),
    /// /proc belongs to another PID namespace, so its pids are not ours.
    OtherNamespace,
}

impl fmt::Display for ProcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable(error) => write!(f, "cannot list processes in {PROC}: {error}")?,
            Self::OtherNamespace => write!(f, "{PROC} belongs to another PID namespace")?,
        }
        write!(
            f,
            "; mount a /proc of this PID namespace so gpubox-init can stop leftover processes"
        )
    }
}

/// The init's direct children, including orphans re-parented to it as subreaper.
pub fn children_of_init() -> Result<Vec<pid_t>, ProcError> {
    // SAFETY: getpid cannot fail.
    let own_pid = unsafe { libc::getpid() };
    let self_link = fs::read_link(format!("{PROC}/self")).map_err(ProcError::Unreadable)?;
    if self_link.to_str().and_then(|pid| pid.parse().ok()) != Some(own_pid) {
        return Err(ProcError::OtherNamespace);
    }
    let mut children = Vec::new();
    for entry in fs::read_dir(PROC).map_err(ProcError::Unreadable)? {
        let entry = entry.map_err(ProcError::Unreadable)?;
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A process may end between listing and reading; it is then no longer a child.
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if parent_in_stat(&stat) == Some(own_pid) {
            children.push(pid);
        }
    }
    Ok(children)
}

/// The parent pid from a `/proc/PID/stat` line: `pid (comm) state ppid ...`, where
/// `comm` may itself contain spaces and parentheses.
fn parent_in_stat(stat: &str) -> Option<pid_t> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_is_read_after_the_command_name() {
        assert_eq!(parent_in_stat("42 (sleep) S 17 42 1 0 -1"), Some(17));
        assert_eq!(parent_in_stat("42 (a) b) (c) R 9 42 1 0"), Some(9));
        assert_eq!(parent_in_stat("42 (truncated"), None);
    }

    #[test]
    fn a_spawned_child_is_listed_and_a_reaped_one_is_not() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = pid_t::try_from(child.id()).unwrap();
        assert!(children_of_init().unwrap().contains(&pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!children_of_init().unwrap().contains(&pid));
    }
}
