//! Readiness checks: whether a started service is ready for the services that come
//! after it (and for the main command), tried again and again until its timeout.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gpubox_initplan::{InitPlan, Readiness, ReadinessCheck};
use libc::pid_t;

use crate::reap::{self, Termination};
use crate::spawn::{self, ChildSetup};

/// How long `gpubox-init ready` waits for one connection: a probe's whole budget
/// (its `timeoutSeconds`) is longer, and a listener that takes this long is not ready.
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

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
            ReadinessCheck::Tcp(port) => match try_tcp(*port, CONNECT_TIMEOUT) {
                Ok(()) => return Ok(true),
                Err(failure) => self.last_failure = failure,
            },
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

/// One try of a `Tcp` check: a connection to 127.0.0.1:`port` within `timeout`, or
/// why there was none.
fn try_tcp(port: u16, timeout: Duration) -> Result<(), String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&address, timeout)
        .map(drop)
        .map_err(|error| format!("nothing accepts connections on {address} ({error})"))
}

/// `gpubox-init ready`: one try of every planned service's readiness check, as a
/// Kubernetes exec probe runs it (`gpubox deploy` writes it as the pod's startup,
/// readiness and liveness probe, one command for any number of services). Exit 0 when
/// every check passes (or none is planned), 1 naming each that fails, 2 on misuse.
/// A `Tcp` check connects to 127.0.0.1; an `Exec` check runs its command as the
/// service's check does: as its user, with its environment and working folder.
pub fn probe(arguments: &[OsString], plan: Option<&InitPlan>) -> i32 {
    if !arguments.is_empty() {
        notice!("usage: gpubox-init ready");
        return crate::USAGE_EXIT;
    }
    let mut failed = 0;
    for service in plan.into_iter().flat_map(|plan| &plan.services) {
        let Some(readiness) = &service.readiness else {
            continue;
        };
        let failure = match &readiness.check {
            ReadinessCheck::Tcp(port) => try_tcp(*port, PROBE_CONNECT_TIMEOUT).err(),
            ReadinessCheck::Exec(argv) => {
                let command: Vec<OsString> = argv.iter().map(OsString::from).collect();
                let shown = argv.join(" ");
                match super::Service::probe_setup(service)
                    .map_err(|error| error.to_string())
                    .and_then(|setup| {
                        spawn::spawn(&command, setup).map_err(|error| error.to_string())
                    })
                    .and_then(|pid| reap::wait_for(pid).map_err(|error| error.to_string()))
                {
                    Ok(termination) if termination.succeeded() => None,
                    Ok(termination) => Some(format!("`{shown}` {termination}")),
                    Err(error) => Some(format!("cannot run `{shown}`: {error}")),
                }
            }
        };
        if let Some(failure) = failure {
            notice!("service {} is not ready: {failure}", service.name);
            failed += 1;
        }
    }
    i32::from(failed > 0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::TcpListener;

    use gpubox_initplan::{Restart, ServicePlan};

    use super::*;

    fn plan_checking(checks: Vec<ReadinessCheck>) -> InitPlan {
        let mut plan = InitPlan::new(10_000);
        for (number, check) in checks.into_iter().enumerate() {
            plan.services.push(ServicePlan {
                name: format!("service{number}"),
                argv: vec!["/bin/true".to_owned()],
                env: BTreeMap::from([("PROBE_WANTS".to_owned(), "yes".to_owned())]),
                working_dir: Some("/".to_owned()),
                user: None,
                restart: Restart::Never,
                restart_delay_ms: 1000,
                max_restarts: None,
                after: Vec::new(),
                readiness: Some(Readiness {
                    check,
                    timeout_ms: 30_000,
                }),
                log_file: None,
            });
        }
        plan
    }

    #[test]
    fn probe_passes_only_when_every_check_passes() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = {
            let other = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            other.local_addr().unwrap().port()
        };
        let env_check = ReadinessCheck::Exec(vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            "test \"$PROBE_WANTS\" = yes".to_owned(),
        ]);
        let ready = plan_checking(vec![ReadinessCheck::Tcp(open), env_check.clone()]);
        assert_eq!(probe(&[], Some(&ready)), 0);
        let one_closed = plan_checking(vec![ReadinessCheck::Tcp(closed), env_check]);
        assert_eq!(probe(&[], Some(&one_closed)), 1);
        let failing = plan_checking(vec![ReadinessCheck::Exec(vec!["/bin/false".to_owned()])]);
        assert_eq!(probe(&[], Some(&failing)), 1);
        // No plan, or no check: nothing to wait for.
        assert_eq!(probe(&[], None), 0);
        assert_eq!(probe(&[OsString::from("--now")], None), crate::USAGE_EXIT);
    }
}
