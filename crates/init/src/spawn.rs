//! Starting the main command: fork, give the child a clean signal state, and exec it
//! with a PATH lookup. The child reports a failed exec through a close-on-exec pipe,
//! so the init itself says what went wrong.

use std::ffi::{CString, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::{mem, ptr};

use libc::{c_char, c_int, pid_t};

/// Exit status when the command does not exist, as shells report it.
const NOT_FOUND_EXIT: i32 = 127;
/// Exit status when the command exists but cannot be run, as shells report it.
const NOT_RUNNABLE_EXIT: i32 = 126;

/// Size of the kernel's signal set: 64 signals on x86_64 and aarch64, gpubox's targets.
const KERNEL_SIGSET_BYTES: usize = 8;

/// The main command could not be started.
#[derive(Debug)]
pub struct SpawnError {
    program: String,
    error: io::Error,
}

impl SpawnError {
    pub fn exit_code(&self) -> i32 {
        match self.error.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR) => NOT_FOUND_EXIT,
            _ => NOT_RUNNABLE_EXIT,
        }
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot run `{}`: {}", self.program, self.error)?;
        match self.error.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR) if !self.program.contains('/') => {
                let path = std::env::var("PATH").unwrap_or_default();
                write!(
                    f,
                    "; it is not in any directory of PATH ({path}): add the package that provides it to the image or give its full path in `cmd`"
                )
            }
            Some(libc::ENOENT | libc::ENOTDIR) => {
                write!(f, "; add it to the image or fix the path in `cmd`")
            }
            Some(libc::EACCES) => write!(f, "; make it executable (mode 0755 in `copyToRoot`)"),
            _ => Ok(()),
        }
    }
}

/// Starts `command` (program and arguments) as a child and returns its pid once the
/// exec has succeeded.
pub fn spawn(command: &[OsString]) -> Result<pid_t, SpawnError> {
    let program = command[0].to_string_lossy().into_owned();
    let fail = |error: io::Error| SpawnError {
        program: program.clone(),
        error,
    };
    // Everything the child needs is prepared before the fork, so that the child only
    // makes system calls between fork and exec.
    let arguments = command
        .iter()
        .map(|argument| CString::new(argument.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| fail(error.into()))?;
    let mut argv: Vec<*const c_char> = arguments.iter().map(|a| a.as_ptr()).collect();
    argv.push(ptr::null());
    let take_terminal = holds_terminal_foreground();
    let (report_read, report_write) = cloexec_pipe().map_err(&fail)?;

    // SAFETY: the init is single-threaded, and the child only calls async-signal-safe
    // functions on memory prepared above before it execs or exits.
    match unsafe { libc::fork() } {
        -1 => Err(fail(io::Error::last_os_error())),
        0 => unsafe { exec_child(&argv, report_write.as_raw_fd(), take_terminal) },
        pid => {
            drop(report_write);
            match read_exec_report(report_read) {
                None => Ok(pid),
                Some(errno) => {
                    // SAFETY: `pid` is our child; it exits right after reporting.
                    unsafe { libc::waitpid(pid, ptr::null_mut(), 0) };
                    Err(fail(io::Error::from_raw_os_error(errno)))
                }
            }
        }
    }
}

/// Whether the init is in the foreground of a terminal on stdin: then the main command
/// gets the foreground, so keys like Ctrl-C reach it (once) as they would in a shell.
fn holds_terminal_foreground() -> bool {
    // SAFETY: plain queries on file descriptor 0.
    unsafe {
        libc::isatty(libc::STDIN_FILENO) == 1
            && libc::tcgetpgrp(libc::STDIN_FILENO) == libc::getpgrp()
    }
}

fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [c_int; 2] = [-1; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The errno the child reported, or `None` when the pipe closed on a successful exec.
fn read_exec_report(report_read: OwnedFd) -> Option<c_int> {
    let mut report = Vec::new();
    // A read error leaves the report empty: the child's fate then shows in its status.
    let _ = File::from(report_read).read_to_end(&mut report);
    let errno: [u8; mem::size_of::<c_int>()] = report.as_slice().try_into().ok()?;
    Some(c_int::from_ne_bytes(errno))
}

/// In the child: leave the init's process group (and take the terminal foreground when
/// the init held it), restore default signal handling, and exec. Never returns.
unsafe fn exec_child(argv: &[*const c_char], report_write: c_int, take_terminal: bool) -> ! {
    let mut mask: libc::sigset_t = mem::zeroed();
    // Everything stays blocked until the exec, so no signal acts on the half-set-up child.
    libc::sigfillset(&mut mask);
    libc::sigprocmask(libc::SIG_SETMASK, &mask, ptr::null_mut());
    // Its own process group keeps terminal-generated signals from reaching both the init
    // (which would forward them) and the command.
    libc::setpgid(0, 0);
    if take_terminal {
        libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
    }
    // Ignored dispositions survive exec (Rust ignores SIGPIPE; the init ignores
    // SIGTTIN/SIGTTOU; a parent that used Rust's `Command` leaves glibc's internal
    // signals 32 and 33 ignored), so every signal goes back to its default. The raw
    // system call reaches the signals glibc reserves for itself; its zeroed argument
    // means SIG_DFL, no flags, empty mask whatever the architecture's field order.
    let default_action = [0u64; 4];
    for signal in 1..=libc::SIGRTMAX() {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            default_action.as_ptr(),
            ptr::null_mut::<u64>(),
            KERNEL_SIGSET_BYTES,
        );
    }
    libc::sigemptyset(&mut mask);
    libc::sigprocmask(libc::SIG_SETMASK, &mask, ptr::null_mut());

    libc::execvp(argv[0], argv.as_ptr());

    let errno = (*libc::__errno_location()).to_ne_bytes();
    libc::write(report_write, errno.as_ptr().cast(), errno.len());
    libc::_exit(NOT_FOUND_EXIT)
}
