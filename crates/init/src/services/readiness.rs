//! Readiness checks: whether a started service is ready for the services that come
//! after it (and for the main command), tried again and again until its timeout.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gpubox_initplan::{Readiness, ReadinessCheck};
use libc::pid_t;

use crate::reap::Termination;
use crate::spawn::{self, ChildSetup};

/// Time between tries: short, as ordered start-up waits on it.
const RETRY_INTERVAL: Duration = Duration::from_millis(20);
/// A connection on the loopback is accepted or refused at once; this only bounds a
/// full listen backlog, during which the init does not take signals.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);

/// One service's check, from its start until it passes or times out.
pub struct Check {
    kind: ReadinessCheck,
    timeout: Duration,
    deadline: Instant,
    next_try: Instant,
    /// The running `Exec` check, in its own process group.
    probe: Option<pid_t>,
    /// Why the last try failed, for the message when time runs out.
    last_failure: String,
}

/// The check did not pass before its timeout.
#[derive(Debug, thiserror::Error)]
#[error("not ready after {}s: {last_failure}; make the service start faster or give its readiness check a longer timeout", timeout.as_secs_f64())]
pub struct NotReady {
    timeout: Duration,
    last_failure: String,
}

impl Check {
    pub fn start(readiness: &Readiness, now: Instant) -> Self {
        let timeout = Duration::from_millis(readiness.timeout_ms);
        Self {
            kind: readiness.check.clone(),
            timeout,
            deadline: now + timeout,
            next_try: now,
            probe: None,
            last_failure: "it was never checked".to_owned(),
        }
    }

    /// Makes a try when one is due; `Ok(true)` once the check has passed. An `Exec`
    /// check only starts its command here; [`Check::probe_ended`] takes its result.
    pub fn advance(
        &mut self,
        now: Instant,
        probe_setup: impl FnOnce() -> ChildSetup,
    ) -> Result<bool, NotReady> {
        if now >= self.deadline {
            self.abandon();
            return Err(NotReady {
                timeout: self.timeout,
                last_failure: std::mem::take(&mut self.last_failure),
            });
        }
        if self.probe.is_some() || now < self.next_try {
            return Ok(false);
        }
        self.next_try = now + RETRY_INTERVAL;
        match &self.kind {
            ReadinessCheck::Tcp(port) => {
                let address = SocketAddr::from((Ipv4Addr::LOCALHOST, *port));
                match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
                    Ok(_) => return Ok(true),
                    Err(error) => {
                        self.last_failure =
                            format!("nothing accepts connections on {address} ({error})");
                    }
                }
            }
            ReadinessCheck::Exec(argv) => {
                let command: Vec<OsString> = argv.iter().map(OsString::from).collect();
                match spawn::spawn(&command, probe_setup()) {
                    Ok(pid) => self.probe = Some(pid),
                    Err(error) => self.last_failure = error.to_string(),
                }
            }
        }
        Ok(false)
    }

    /// Takes the result of the check command when `pid` is it; `Some(passed)` then.
    pub fn probe_ended(&mut self, pid: pid_t, termination: Termination) -> Option<bool> {
        if self.probe != Some(pid) {
            return None;
        }
        self.probe = None;
        if termination.succeeded() {
            return Some(true);
        }
        if let ReadinessCheck::Exec(argv) = &self.kind {
            self.last_failure = format!("`{}` {termination}", argv.join(" "));
        }
        Some(false)
    }

    /// When the check wants to run again: its next try, or its deadline while a check
    /// command runs.
    pub fn wake_at(&self) -> Instant {
        if self.probe.is_some() {
            self.deadline
        } else {
            self.next_try.min(self.deadline)
        }
    }

    /// Stops a running check command; its exit is reaped with the other children.
    pub fn abandon(&mut self) {
        if let Some(pid) = self.probe.take() {
            // SAFETY: kill has no memory effects; `pid` leads its own process group and
            // is not reaped yet, so the group cannot belong to anyone else.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
}
