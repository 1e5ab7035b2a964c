//! Stopping what is left once the main command and the services have stopped: SIGTERM
//! to every remaining process, what is left of the grace period, then SIGKILL, reaping
//! everything.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use libc::{c_int, pid_t};

use crate::processes;
use crate::reap;
use crate::signals::{self, Signals};

/// How often to look for new children while waiting: an orphan re-parented to the init
/// arrives without a SIGCHLD.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long processes get to go after SIGKILL. One stuck in the kernel (uninterruptible
/// sleep) must not keep the init, and so the container, from exiting.
pub const KILL_WAIT: Duration = Duration::from_secs(2);

/// Sends SIGTERM to every remaining process, SIGKILL to those still there at
/// `deadline` (the end of the grace period `grace`, which began when the stop did),
/// and returns once all are reaped (or cannot be stopped).
pub fn stop_remaining(signals: &Signals, deadline: Instant, grace: Duration) {
    let mut shutdown = Shutdown {
        signals,
        // SAFETY: getpid cannot fail.
        whole_namespace: unsafe { libc::getpid() } == 1,
        proc_error_reported: false,
    };
    if shutdown.signal_until_gone(libc::SIGTERM, deadline) {
        return;
    }
    notice!(
        "grace period of {}s is over; sending SIGKILL to the remaining processes{} (set GPUBOX_INIT_GRACE_SECONDS to give them longer)",
        grace.as_secs_f64(),
        describe_children()
    );
    if shutdown.signal_until_gone(libc::SIGKILL, Instant::now() + KILL_WAIT) {
        return;
    }
    notice!(
        "processes{} are still running {}s after SIGKILL (stuck in the kernel?); exiting without them",
        describe_children(),
        KILL_WAIT.as_secs()
    );
}

struct Shutdown<'a> {
    signals: &'a Signals,
    /// As PID 1, `kill(-1)` reaches every process of the PID namespace. Otherwise it would
    /// reach the whole machine, so only the init's children are signalled, found in /proc
    /// again and again as each exit re-parents more orphans to the init.
    whole_namespace: bool,
    proc_error_reported: bool,
}

impl Shutdown<'_> {
    /// Signals every remaining process once and reaps until none is left (`true`) or
    /// `deadline` passes (`false`).
    fn signal_until_gone(&mut self, signal: c_int, deadline: Instant) -> bool {
        let mut namespace_signalled = false;
        let mut children_signalled = HashSet::new();
        loop {
            let reaped = reap::reap_zombies();
            // A reaped pid is free for reuse; a new process with it has not been signalled.
            for (pid, _) in &reaped.ended {
                children_signalled.remove(pid);
            }
            if !reaped.children_left {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            if self.whole_namespace {
                if !namespace_signalled {
                    debug!("sending {} to every process", signals::name(signal));
                    // SAFETY: kill has no memory effects; as PID 1, -1 means the namespace.
                    unsafe { libc::kill(-1, signal) };
                    namespace_signalled = true;
                }
            } else {
                self.signal_children(signal, &mut children_signalled);
            }
            match self.signals.wait(Some((deadline - now).min(POLL_INTERVAL))) {
                None | Some(libc::SIGCHLD) => {}
                Some(other) => debug!(
                    "ignoring {}: the container is stopping",
                    signals::name(other)
                ),
            }
        }
    }

    fn signal_children(&mut self, signal: c_int, signalled: &mut HashSet<pid_t>) {
        let children = match processes::children_of_init() {
            Ok(children) => children,
            Err(error) => {
                if !self.proc_error_reported {
                    notice!("{error}");
                    self.proc_error_reported = true;
                }
                return;
            }
        };
        for pid in children {
            if signalled.insert(pid) {
                debug!("sending {} to pid {pid}", signals::name(signal));
                // SAFETY: kill has no memory effects. `pid` is our child, so it cannot
                // be reused before we reap it.
                unsafe { libc::kill(pid, signal) };
            }
        }
    }
}

/// ` (pid 12)` or ` (pids 12, 34)` for the init's remaining children, or nothing when /proc cannot say.
fn describe_children() -> String {
    match processes::children_of_init() {
        Ok(children) if !children.is_empty() => {
            let pids: Vec<String> = children.iter().map(pid_t::to_string).collect();
            let noun = if pids.len() == 1 { "pid" } else { "pids" };
            format!(" ({noun} {})", pids.join(", "))
        }
        _ => String::new(),
    }
}
