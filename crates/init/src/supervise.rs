//! The init's life once start-up is done, all in one signal loop: start the services
//! in dependency order and the main command once they are all ready, reap every
//! zombie, restart services by their policy, forward signals, and stop everything in
//! reverse start order when the main command ends or the container is told to stop.
//!
//! Every wait is `Signals::wait` with a timeout taken from the next timer (a restart
//! delay, a readiness try, the stop deadline), so nothing holds up signal handling.
//!
//! The exit status: the main command's when it ran; the failure's when the start
//! failed (5 for a service, 126/127 for a main command that cannot run); otherwise
//! (no main command) 0 after a clean stop, the status of the last service that ended
//! for good with a failure, or 137 when something had to be killed at the deadline.

use std::collections::HashSet;
use std::ffi::OsString;
use std::time::{Duration, Instant};

use gpubox_initplan::ServicePlan;
use libc::{c_int, pid_t};

use crate::accounts::Account;
use crate::reap::{self, Termination};
use crate::services::{self, OrderError, Output, Service, StartError, State};
use crate::shutdown;
use crate::signals::{self, Signals};
use crate::spawn::{self, ChildSetup};
use crate::SERVICE_FAILURE_EXIT;

/// How long the output readers get to pass on the last lines of stopped services.
const OUTPUT_DRAIN: Duration = Duration::from_millis(500);

/// The container's main command (`cmd`).
pub struct MainCommand {
    pub command: Vec<OsString>,
    /// The account it runs as (the plan's `mainUser`); `None`: as the init.
    pub account: Option<Account>,
}

enum Main {
    /// The container has none: it runs its services.
    Absent,
    /// Starts once every service is ready.
    Waiting(MainCommand),
    Running(pid_t),
    Ended(Termination),
}

/// The stop in progress.
struct Stop {
    deadline: Instant,
    /// Set once what was left at the deadline got SIGKILL.
    kill_deadline: Option<Instant>,
    /// Processes that got SIGTERM (or the stop signal, forwarded) already.
    signalled: HashSet<pid_t>,
}

/// The services could not be set up; nothing has started.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Start(#[from] StartError),
}

impl SetupError {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Order(_) => crate::USAGE_EXIT,
            Self::Start(_) => SERVICE_FAILURE_EXIT,
        }
    }
}

pub struct Supervisor<'a> {
    signals: &'a Signals,
    services: Vec<Service>,
    /// For each service, the services it comes after (indices).
    after: Vec<Vec<usize>>,
    /// Services in the order they were first started.
    start_order: Vec<usize>,
    main: Main,
    output: Output,
    stop_timeout: Duration,
    /// Whether SIGTERM and SIGINT stop the container under the stop timeout. Without a
    /// start-up plan they are only forwarded to the main command, as they always were.
    stop_on_signal: bool,
    stop: Option<Stop>,
    /// The exit status a failed start decided.
    failure_exit: Option<i32>,
    /// The status of the last service that ended for good with a failure.
    service_failure: Option<i32>,
    /// Whether something had to be killed at the stop deadline.
    killed: bool,
}

impl<'a> Supervisor<'a> {
    /// Orders the services and prepares each (user, log file); starts nothing.
    pub fn new(
        signals: &'a Signals,
        services: Vec<ServicePlan>,
        main: Option<MainCommand>,
        stop_timeout: Duration,
        stop_on_signal: bool,
    ) -> Result<Self, SetupError> {
        let after = services::dependencies(&services)?;
        let services = services
            .into_iter()
            .map(Service::new)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            signals,
            services,
            after,
            start_order: Vec::new(),
            main: main.map_or(Main::Absent, Main::Waiting),
            output: Output::default(),
            stop_timeout,
            stop_on_signal,
            stop: None,
            failure_exit: None,
            service_failure: None,
            killed: false,
        })
    }

    /// Runs until everything has stopped, stops what is left over, and returns the
    /// status the init exits with.
    pub fn run(mut self) -> i32 {
        let deadline = loop {
            let now = Instant::now();
            if self.stop.is_none() {
                if let Err((message, exit)) = self.advance(now) {
                    notice!("{message}");
                    self.failure_exit = Some(exit);
                    self.begin_stop(now);
                }
            }
            if let Some(deadline) = self.advance_stop(now) {
                break deadline;
            }
            let timeout = self
                .wake_at()
                .map(|at| at.saturating_duration_since(Instant::now()));
            match self.signals.wait(timeout) {
                None => {}
                Some(libc::SIGCHLD) => self.reap(),
                Some(signal) => self.on_signal(signal),
            }
        };
        shutdown::stop_remaining(self.signals, deadline, self.stop_timeout);
        self.output.finish(OUTPUT_DRAIN);
        self.exit_code()
    }

    /// Starts what is due: restarts, services whose dependencies are ready, then the
    /// main command. `Err` is a failed start: the message and the exit status.
    fn advance(&mut self, now: Instant) -> Result<(), (String, i32)> {
        let failed = |error: StartError| (error.to_string(), SERVICE_FAILURE_EXIT);
        for service in &mut self.services {
            if matches!(service.state, State::RestartAt(at) if at <= now) {
                service.start(&mut self.output, now).map_err(failed)?;
            }
            service.advance_check(now).map_err(failed)?;
        }
        // A service without a readiness check is ready once started, so the ones after
        // it start in the same round.
        while let Some(index) = (0..self.services.len()).find(|&index| {
            self.services[index].state == State::Waiting
                && self.after[index].iter().all(|&d| self.services[d].ready)
        }) {
            self.services[index]
                .start(&mut self.output, now)
                .map_err(failed)?;
            self.start_order.push(index);
        }
        if self.services.iter().all(|service| service.ready) {
            if let Main::Waiting(_) = self.main {
                self.start_main()?;
            }
        }
        if matches!(self.main, Main::Absent)
            && !self.services.is_empty()
            && self
                .services
                .iter()
                .all(|service| matches!(service.state, State::Ended(_)))
        {
            debug!("every service has ended for good");
            self.begin_stop(now);
        }
        Ok(())
    }

    fn start_main(&mut self) -> Result<(), (String, i32)> {
        let Main::Waiting(main) = std::mem::replace(&mut self.main, Main::Absent) else {
            return Ok(());
        };
        let setup = ChildSetup {
            env: main
                .account
                .as_ref()
                .map(|account| spawn::environment_with(Some(account), &Default::default())),
            account: main.account,
            take_terminal: true,
            ..ChildSetup::default()
        };
        let pid = spawn::spawn(&main.command, setup)
            .map_err(|error| (error.to_string(), error.exit_code()))?;
        debug!(
            "started `{}` as pid {pid}",
            main.command[0].to_string_lossy()
        );
        self.main = Main::Running(pid);
        Ok(())
    }

    fn reap(&mut self) {
        let now = Instant::now();
        for (pid, termination) in reap::reap_zombies().ended {
            if matches!(self.main, Main::Running(main) if main == pid) {
                debug!("main command {termination}");
                self.main = Main::Ended(termination);
                if self.stop.is_none() {
                    self.begin_stop(now);
                }
            } else if let Some(index) = self.services.iter().position(|s| s.pid() == Some(pid)) {
                let service = &mut self.services[index];
                if self.stop.is_some() {
                    debug!("service `{}` {termination}", service.plan.name);
                    service.state = State::Ended(Some(termination));
                    continue;
                }
                match service.ended(termination, now) {
                    Err(error) => {
                        notice!("{error}");
                        self.failure_exit = Some(SERVICE_FAILURE_EXIT);
                        self.begin_stop(now);
                    }
                    Ok(())
                        if matches!(service.state, State::Ended(_)) && !termination.succeeded() =>
                    {
                        self.service_failure = Some(termination.exit_code());
                    }
                    Ok(()) => {}
                }
            } else {
                // A readiness check command, or an orphan the init adopted.
                for service in &mut self.services {
                    if service.check_ended(pid, termination) {
                        break;
                    }
                }
            }
        }
    }

    fn on_signal(&mut self, signal: c_int) {
        let stops = matches!(signal, libc::SIGTERM | libc::SIGINT) && self.stop_on_signal;
        if let Main::Running(pid) = self.main {
            forward(pid, signal);
            if let (true, Some(stop)) = (stops, &mut self.stop) {
                stop.signalled.insert(pid);
            }
        } else if self.stop.is_some() || stops {
            debug!(
                "not passing on {}: the services are stopping in order",
                signals::name(signal)
            );
        } else {
            for service in &self.services {
                service.signal(signal);
            }
        }
        if stops && self.stop.is_none() {
            debug!("{} received; stopping", signals::name(signal));
            self.begin_stop(Instant::now());
            if let (Main::Running(pid), Some(stop)) = (&self.main, &mut self.stop) {
                stop.signalled.insert(*pid);
            }
        }
    }

    fn begin_stop(&mut self, now: Instant) {
        for service in &mut self.services {
            service.cancel();
        }
        self.stop = Some(Stop {
            deadline: now + self.stop_timeout,
            kill_deadline: None,
            signalled: HashSet::new(),
        });
    }

    /// Moves the stop on: SIGTERM to the first process still running in reverse start
    /// order (the main command first), SIGKILL to all at the deadline. Returns the
    /// deadline once nothing runs any more (or what was killed is stuck).
    fn advance_stop(&mut self, now: Instant) -> Option<Instant> {
        let stop = self.stop.as_mut()?;
        let main = match self.main {
            Main::Running(pid) => Some((pid, None)),
            _ => None,
        };
        let services = self.start_order.iter().rev().filter_map(|&index| {
            let service = &self.services[index];
            service.pid().map(|pid| (pid, Some(service)))
        });
        let running: Vec<(pid_t, Option<&Service>)> = main.into_iter().chain(services).collect();
        if running.is_empty() {
            return Some(stop.deadline);
        }
        match stop.kill_deadline {
            Some(kill_deadline) if now >= kill_deadline => return Some(stop.deadline),
            Some(_) => {}
            None if now >= stop.deadline => {
                let names: Vec<String> = running.iter().map(describe).collect();
                notice!(
                    "stop timeout of {}s is over; sending SIGKILL to {} (give them a longer stop timeout if they need it)",
                    self.stop_timeout.as_secs_f64(),
                    names.join(", ")
                );
                for (pid, service) in &running {
                    match service {
                        Some(service) => {
                            service.signal(libc::SIGKILL);
                        }
                        None => forward(*pid, libc::SIGKILL),
                    }
                }
                stop.kill_deadline = Some(now + shutdown::KILL_WAIT);
                self.killed = true;
            }
            None => {
                let (pid, service) = running[0];
                if stop.signalled.insert(pid) {
                    debug!("stopping {}", describe(&running[0]));
                    match service {
                        Some(service) => {
                            service.signal(libc::SIGTERM);
                        }
                        None => forward(pid, libc::SIGTERM),
                    }
                }
            }
        }
        None
    }

    /// When the loop must look again without a signal.
    fn wake_at(&self) -> Option<Instant> {
        match &self.stop {
            Some(stop) => Some(stop.kill_deadline.unwrap_or(stop.deadline)),
            None => self.services.iter().filter_map(Service::wake_at).min(),
        }
    }

    fn exit_code(&self) -> i32 {
        if let Some(exit) = self.failure_exit {
            return exit;
        }
        if let Main::Ended(termination) = self.main {
            return termination.exit_code();
        }
        if self.killed {
            return Termination::Signaled(libc::SIGKILL).exit_code();
        }
        self.service_failure.unwrap_or(0)
    }
}

fn describe((pid, service): &(pid_t, Option<&Service>)) -> String {
    match service {
        Some(service) => format!("service `{}` (pid {pid})", service.plan.name),
        None => format!("the main command (pid {pid})"),
    }
}

fn forward(pid: pid_t, signal: c_int) {
    debug!("sending {} to pid {pid}", signals::name(signal));
    // SAFETY: kill has no memory effects. The main command is not reaped yet, so its
    // pid cannot have been reused; ESRCH only means it is exiting already.
    if unsafe { libc::kill(pid, signal) } != 0 {
        debug!(
            "could not send {}: {}",
            signals::name(signal),
            std::io::Error::last_os_error()
        );
    }
}
