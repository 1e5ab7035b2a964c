//! One service's life: started with its own environment, user, working folder and
//! prefixed output; checked until ready; restarted by its policy after a delay; stopped
//! with its whole process group. The supervisor (`supervise`) drives every service
//! through these steps from its signal loop.

mod order;
mod output;
pub mod readiness;

use std::ffi::OsString;
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gpubox_initplan::{Restart, ServicePlan};
use libc::pid_t;

use crate::accounts::{self, Account, AccountError};
use crate::reap::Termination;
use crate::spawn::{self, ChildSetup, SpawnError};
use crate::steps::root_path;

pub use order::{dependencies, OrderError};
pub use output::Output;
use readiness::{Check, NotReady};

/// Why a service could not start; the container stops.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("service `{0}`: {1}")]
    User(String, AccountError),
    #[error("service `{service}`: cannot open its log file {}: {error}; fix `logFile` or make its folder writable", path.display())]
    LogFile {
        service: String,
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("service `{0}`: cannot pass on its output: {1}")]
    Output(String, std::io::Error),
    #[error("service `{0}`: {1}")]
    Spawn(String, SpawnError),
    #[error("service `{0}`: {1}")]
    NotReady(String, NotReady),
    #[error(
        "service `{0}` {1} before it was ready, and its restart policy does not start it again"
    )]
    EndedBeforeReady(String, Termination),
}

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started yet: waits for the services it comes after.
    Waiting,
    Running(pid_t),
    /// Ended; starts again at this time.
    RestartAt(Instant),
    /// Ended for good, with how its last run ended (`None`: stopped before it ran).
    Ended(Option<Termination>),
}

pub struct Service {
    pub plan: ServicePlan,
    pub state: State,
    /// Whether it has been ready once: what the services after it and the main
    /// command wait for.
    pub ready: bool,
    account: Option<Account>,
    /// Its whole environment, as `KEY=VALUE`.
    env: Vec<OsString>,
    log: Option<Arc<File>>,
    restarts: u32,
    check: Option<Check>,
}

/// The account `plan` runs as, from `/etc/passwd`; `None`: the init's.
fn account_of(plan: &ServicePlan) -> Result<Option<Account>, StartError> {
    plan.user
        .as_ref()
        .map(|user| {
            accounts::resolve(user).map_err(|error| StartError::User(plan.name.clone(), error))
        })
        .transpose()
}

impl Service {
    /// Resolves the service's user and opens its log file, so that a mistake there
    /// stops the container before anything has started.
    pub fn new(plan: ServicePlan) -> Result<Self, StartError> {
        let account = account_of(&plan)?;
        let log = match &plan.log_file {
            Some(file) => {
                let path = root_path(file);
                Some(
                    output::open_log(&path).map_err(|error| StartError::LogFile {
                        service: plan.name.clone(),
                        path,
                        error,
                    })?,
                )
            }
            None => None,
        };
        let env = spawn::environment_with(account.as_ref(), &plan.env);
        Ok(Self {
            plan,
            state: State::Waiting,
            ready: false,
            account,
            env,
            log,
            restarts: 0,
            check: None,
        })
    }

    pub fn pid(&self) -> Option<pid_t> {
        match self.state {
            State::Running(pid) => Some(pid),
            _ => None,
        }
    }

    /// Starts (or starts again) the service; without a readiness check it is ready now.
    pub fn start(&mut self, output: &mut Output, now: Instant) -> Result<pid_t, StartError> {
        let name = &self.plan.name;
        let [stdout, stderr] = output
            .connect(name, self.log.as_ref())
            .map_err(|error| StartError::Output(name.clone(), error))?;
        let command: Vec<OsString> = self.plan.argv.iter().map(OsString::from).collect();
        let pid = spawn::spawn(
            &command,
            self.setup([spawn::dev_null(), Some(stdout), Some(stderr)]),
        )
        .map_err(|error| StartError::Spawn(name.clone(), error))?;
        debug!("started service `{name}` as pid {pid}");
        self.state = State::Running(pid);
        match &self.plan.readiness {
            Some(readiness) if !self.ready => self.check = Some(Check::start(readiness, now)),
            _ => self.ready = true,
        }
        Ok(pid)
    }

    /// How the service's processes (and its readiness check commands) are set up.
    fn setup(&self, stdio: [Option<std::os::fd::OwnedFd>; 3]) -> ChildSetup {
        ChildSetup {
            env: Some(self.env.clone()),
            working_dir: self.plan.working_dir.clone(),
            account: self.account.clone(),
            stdio,
            take_terminal: false,
        }
    }

    /// How `gpubox-init ready` runs the service's `exec` readiness check: as the
    /// service's check runs, without its log file or any output.
    pub fn probe_setup(plan: &ServicePlan) -> Result<ChildSetup, StartError> {
        let account = account_of(plan)?;
        Ok(ChildSetup {
            env: Some(spawn::environment_with(account.as_ref(), &plan.env)),
            working_dir: plan.working_dir.clone(),
            account,
            stdio: [spawn::dev_null(), spawn::dev_null(), spawn::dev_null()],
            take_terminal: false,
        })
    }

    /// Moves the readiness check on; `Ok(true)` when the service just became ready.
    pub fn advance_check(&mut self, now: Instant) -> Result<bool, StartError> {
        let Some(mut check) = self.check.take() else {
            return Ok(false);
        };
        let setup = || self.setup([spawn::dev_null(), spawn::dev_null(), spawn::dev_null()]);
        match check.advance(now, setup) {
            Ok(false) => {
                self.check = Some(check);
                Ok(false)
            }
            Ok(true) => Ok(self.became_ready()),
            Err(error) => Err(StartError::NotReady(self.plan.name.clone(), error)),
        }
    }

    /// Takes the end of `pid` when it is this service's readiness check command.
    pub fn check_ended(&mut self, pid: pid_t, termination: Termination) -> bool {
        match self
            .check
            .as_mut()
            .and_then(|check| check.probe_ended(pid, termination))
        {
            None => false,
            Some(true) => self.became_ready(),
            Some(false) => true,
        }
    }

    fn became_ready(&mut self) -> bool {
        debug!("service `{}` is ready", self.plan.name);
        self.check = None;
        self.ready = true;
        true
    }

    /// When the service needs attention without a signal: its restart or its next
    /// readiness try.
    pub fn wake_at(&self) -> Option<Instant> {
        match self.state {
            State::RestartAt(at) => Some(at),
            _ => self.check.as_ref().map(Check::wake_at),
        }
    }

    /// The service's process ended: restart it after its delay when its policy says
    /// so and its restarts are not used up, else it has ended for good. Ending for good
    /// before it was ready is a failed start.
    pub fn ended(&mut self, termination: Termination, now: Instant) -> Result<(), StartError> {
        let name = &self.plan.name;
        if let Some(mut check) = self.check.take() {
            check.abandon();
        }
        let wanted = match self.plan.restart {
            Restart::Never => false,
            Restart::OnFailure => !termination.succeeded(),
            Restart::Always => true,
        };
        let allowed = self.plan.max_restarts.is_none_or(|max| self.restarts < max);
        if wanted && allowed {
            self.restarts += 1;
            let delay = Duration::from_millis(self.plan.restart_delay_ms);
            let limit = self
                .plan
                .max_restarts
                .map_or_else(String::new, |max| format!(" of {max}"));
            notice!(
                "service `{name}` {termination}; restarting it in {}s (restart {}{limit})",
                delay.as_secs_f64(),
                self.restarts
            );
            self.state = State::RestartAt(now + delay);
            return Ok(());
        }
        if wanted {
            notice!(
                "service `{name}` {termination}; giving up after {} restarts (maxRestarts)",
                self.restarts
            );
        } else if termination.succeeded() {
            debug!("service `{name}` {termination}");
        } else {
            notice!(
                "service `{name}` {termination}; not restarting it (restart = {})",
                restart_name(self.plan.restart)
            );
        }
        self.state = State::Ended(Some(termination));
        if self.ready {
            Ok(())
        } else {
            Err(StartError::EndedBeforeReady(name.clone(), termination))
        }
    }

    /// Sends `signal` to the service's process group; `false` when it is not running.
    pub fn signal(&self, signal: libc::c_int) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        // SAFETY: kill has no memory effects. The service leads its own process group
        // and is not reaped yet, so the group cannot belong to anyone else.
        unsafe { libc::kill(-pid, signal) };
        true
    }

    /// Ends the service's life for the stop: no restart, no more readiness checks.
    pub fn cancel(&mut self) {
        if let Some(mut check) = self.check.take() {
            check.abandon();
        }
        if matches!(self.state, State::Waiting | State::RestartAt(_)) {
            self.state = State::Ended(None);
        }
    }
}

fn restart_name(restart: Restart) -> &'static str {
    match restart {
        Restart::Never => "never",
        Restart::OnFailure => "on-failure",
        Restart::Always => "always",
    }
}
