//! The signals the init takes over: blocked in the init and taken one at a time with
//! `sigtimedwait`, so none is lost and none acts on the init itself.

use std::time::Duration;
use std::{io, mem, ptr};

use libc::c_int;

/// Signals passed on to the main command.
pub const FORWARDED: [c_int; 7] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// The set of signals the init waits for: [`FORWARDED`] and SIGCHLD.
pub struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    /// Blocks the handled signals in the init. Also ignores SIGTTIN and SIGTTOU: the main
    /// command may take over the terminal, and the init must not be stopped for
    /// writing its messages to it from the background.
    pub fn take_over() -> io::Result<Self> {
        // SAFETY: sigemptyset/sigaddset initialise and fill a sigset_t we own.
        let set = unsafe {
            let mut set: libc::sigset_t = mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in FORWARDED.into_iter().chain([libc::SIGCHLD]) {
                libc::sigaddset(&mut set, signal);
            }
            set
        };
        // SAFETY: `set` is initialised; the old mask is not needed.
        if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        for signal in [libc::SIGTTIN, libc::SIGTTOU] {
            // SAFETY: SIG_IGN is a valid disposition for these signals.
            if unsafe { libc::signal(signal, libc::SIG_IGN) } == libc::SIG_ERR {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Self { set })
    }

    /// Takes the next handled signal, waiting at most `timeout` when one is given.
    /// `None` when the time ran out or the wait was interrupted (by SIGSTOP/SIGCONT);
    /// callers re-check their deadlines either way.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<c_int> {
        // SAFETY: `set` is initialised and `info` is only written by the kernel.
        let signal = unsafe {
            let mut info: libc::siginfo_t = mem::zeroed();
            match timeout {
                None => libc::sigwaitinfo(&self.set, &mut info),
                Some(timeout) => {
                    let timeout = libc::timespec {
                        tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
                        tv_nsec: timeout.subsec_nanos().into(),
                    };
                    libc::sigtimedwait(&self.set, &mut info, &timeout)
                }
            }
        };
        (signal > 0).then_some(signal)
    }
}

/// The conventional name of a signal, for messages.
pub fn name(signal: c_int) -> String {
    let known = match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGPIPE => "SIGPIPE",
        _ => return format!("signal {signal}"),
    };
    known.to_owned()
}
