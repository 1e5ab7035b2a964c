//! Starting children (the main command, services, readiness checks, the startup
//! script): fork, set the child up (process group, standard streams, user, working
//! folder, clean signal state, environment) and exec it with a PATH lookup. The child
//! reports a failed set-up or exec through a close-on-exec pipe, so the init itself
//! says what went wrong.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::{mem, ptr};

use libc::{c_char, c_int, pid_t};

use crate::accounts::Account;

/// Exit status when the command does not exist, as shells report it.
const NOT_FOUND_EXIT: i32 = 127;
/// Exit status when the command exists but cannot be run, as shells report it.
pub const NOT_RUNNABLE_EXIT: i32 = 126;

/// Size of the kernel's signal set: 64 signals on x86_64 and aarch64, gpubox's targets.
const KERNEL_SIGSET_BYTES: usize = 8;

extern "C" {
    /// The C library's environment, which `execvp` passes on and searches PATH in.
    static mut environ: *const *const c_char;
}

/// How a child is set up besides its command; the default inherits everything from
/// the init.
#[derive(Default)]
pub struct ChildSetup {
    /// The whole environment, as `KEY=VALUE`; `None`: the init's own.
    pub env: Option<Vec<OsString>>,
    pub working_dir: Option<String>,
    /// The account to switch to; `None`: the init's.
    pub account: Option<Account>,
    /// Standard input, output and error; `None`: the init's.
    pub stdio: [Option<OwnedFd>; 3],
    /// Give the child the terminal's foreground (only when the init holds it).
    pub take_terminal: bool,
}

/// The init's environment with the account's `HOME`, `USER` and `LOGNAME` (when
/// given) and then `extra` set over it, as `KEY=VALUE` for [`ChildSetup::env`].
pub fn environment_with(
    account: Option<&Account>,
    extra: &BTreeMap<String, String>,
) -> Vec<OsString> {
    let mut variables: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    if let Some(account) = account {
        for (key, value) in [
            ("HOME", &account.home),
            ("USER", &account.name),
            ("LOGNAME", &account.name),
        ] {
            variables.insert(key.into(), value.into());
        }
    }
    for (key, value) in extra {
        variables.insert(key.into(), value.into());
    }
    variables
        .into_iter()
        .map(|(mut key, value)| {
            key.push("=");
            key.push(value);
            key
        })
        .collect()
}

/// `/dev/null`, for a child that must not read the init's stdin (nor compete with the
/// main command for the terminal) or whose output is not wanted; `None` (the init's
/// own) when it cannot be opened.
pub fn dev_null() -> Option<OwnedFd> {
    File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .ok()
        .map(Into::into)
}

/// What the child was doing when it failed, as reported through the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Output = 1,
    User = 2,
    WorkingDir = 3,
    Exec = 4,
}

impl Stage {
    fn from_code(code: c_int) -> Self {
        match code {
            1 => Self::Output,
            2 => Self::User,
            3 => Self::WorkingDir,
            _ => Self::Exec,
        }
    }
}

/// A child could not be started.
#[derive(Debug)]
pub struct SpawnError {
    program: String,
    stage: Stage,
    /// The account or folder of a failed `User` or `WorkingDir` stage.
    detail: String,
    error: io::Error,
}

impl SpawnError {
    pub fn exit_code(&self) -> i32 {
        match (self.stage, self.error.raw_os_error()) {
            (Stage::Exec, Some(libc::ENOENT | libc::ENOTDIR)) => NOT_FOUND_EXIT,
            _ => NOT_RUNNABLE_EXIT,
        }
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (program, error) = (&self.program, &self.error);
        match self.stage {
            Stage::Output => {
                write!(f, "cannot connect the output of `{program}`: {error}")
            }
            Stage::User => write!(
                f,
                "cannot run `{program}` as user {}: {error}; the init must run as root to switch users",
                self.detail
            ),
            Stage::WorkingDir => write!(
                f,
                "cannot run `{program}` in working directory {}: {error}; create it in the image (copyToRoot) or fix `workingDir`",
                self.detail
            ),
            Stage::Exec => {
                write!(f, "cannot run `{program}`: {error}")?;
                match error.raw_os_error() {
                    Some(libc::ENOENT) if !self.detail.is_empty() => {
                        write!(f, "; {}", self.detail)
                    }
                    Some(libc::ENOENT | libc::ENOTDIR) if !program.contains('/') => {
                        let path = std::env::var("PATH").unwrap_or_default();
                        write!(
                            f,
                            "; it is not in any directory of PATH ({path}): add the package that provides it to the image or give its full path in `cmd` or the service's `argv`"
                        )
                    }
                    Some(libc::ENOENT | libc::ENOTDIR) => {
                        write!(f, "; add it to the image or fix the path in `cmd` or the service's `argv`")
                    }
                    Some(libc::EACCES) => {
                        write!(f, "; make it executable (mode 0755 in `copyToRoot`)")
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

impl std::error::Error for SpawnError {}

/// Everything the child needs, prepared before the fork so that the child only makes
/// system calls between fork and exec.
struct Prepared {
    argv: Vec<*const c_char>,
    /// `None`: keep the init's environment.
    envp: Option<Vec<*const c_char>>,
    working_dir: Option<CString>,
    /// uid, gid and every group id (the primary one first), when the user changes.
    identity: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    /// Descriptors to put at 0, 1 and 2, or -1 to keep the init's.
    stdio: [c_int; 3],
    take_terminal: bool,
}

/// Starts `command` (program and arguments) as a child in its own process group and
/// returns its pid once the exec has succeeded.
pub fn spawn(command: &[OsString], setup: ChildSetup) -> Result<pid_t, SpawnError> {
    let program = command
        .first()
        .map(|program| program.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fail = |stage: Stage, error: io::Error| SpawnError {
        program: program.clone(),
        stage,
        detail: match stage {
            Stage::User => setup.account.as_ref().map_or_else(String::new, |a| {
                format!("`{}` (uid {}, gid {})", a.name, a.uid, a.gid)
            }),
            Stage::WorkingDir => setup.working_dir.clone().unwrap_or_default(),
            Stage::Output | Stage::Exec => String::new(),
        },
        error,
    };
    // ENOENT from exec also means a file that is there lacks its interpreter or loader.
    let not_found = |error: io::Error| {
        let mut failed = fail(Stage::Exec, error);
        if matches!(failed.error.raw_os_error(), Some(libc::ENOENT)) {
            let search_path = setup
                .env
                .as_deref()
                .and_then(|env| {
                    env.iter()
                        .find_map(|var| var.as_bytes().strip_prefix(b"PATH="))
                        .map(|path| OsStr::from_bytes(path).to_os_string())
                })
                .or_else(|| std::env::var_os("PATH"))
                .unwrap_or_default();
            let working_dir = setup.working_dir.as_deref().unwrap_or("/");
            failed.detail =
                missing_starter(&program, &search_path, working_dir).unwrap_or_default();
        }
        failed
    };
    let c_strings = |strings: &[OsString]| {
        strings
            .iter()
            .map(|string| CString::new(string.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| fail(Stage::Exec, error.into()))
    };
    if command.is_empty() {
        return Err(fail(
            Stage::Exec,
            io::Error::new(io::ErrorKind::InvalidInput, "the command is empty"),
        ));
    }
    let arguments = c_strings(command)?;
    let environment = setup.env.as_deref().map(c_strings).transpose()?;
    let working_dir = match &setup.working_dir {
        Some(dir) => {
            Some(CString::new(dir.as_bytes()).map_err(|e| fail(Stage::WorkingDir, e.into()))?)
        }
        None => None,
    };
    let prepared = Prepared {
        argv: null_terminated(&arguments),
        envp: environment.as_deref().map(null_terminated),
        working_dir,
        identity: setup.account.as_ref().and_then(identity_change),
        stdio: [0, 1, 2].map(|i| setup.stdio[i].as_ref().map_or(-1, |fd| fd.as_raw_fd())),
        take_terminal: setup.take_terminal && holds_terminal_foreground(),
    };
    let (report_read, report_write) = cloexec_pipe().map_err(|e| fail(Stage::Exec, e))?;

    // SAFETY: the child only calls async-signal-safe functions on memory prepared above
    // before it execs or exits, so locks other threads of the init (output readers)
    // held at the fork do not matter.
    match unsafe { libc::fork() } {
        -1 => Err(fail(Stage::Exec, io::Error::last_os_error())),
        0 => unsafe { exec_child(&prepared, report_write.as_raw_fd()) },
        pid => {
            drop(report_write);
            match read_exec_report(report_read) {
                None => Ok(pid),
                Some((stage, errno)) => {
                    // SAFETY: `pid` is our child; it exits right after reporting.
                    unsafe { libc::waitpid(pid, ptr::null_mut(), 0) };
                    let error = io::Error::from_raw_os_error(errno);
                    Err(match stage {
                        Stage::Exec => not_found(error),
                        stage => fail(stage, error),
                    })
                }
            }
        }
    }
}

/// Why `program`, which exec did not find, cannot start when a file of that name is
/// there after all: its `#!` interpreter or ELF loader is missing (exec says ENOENT for
/// both). Looked up as execvp does: through `search_path` for a bare name.
fn missing_starter(program: &str, search_path: &OsStr, working_dir: &str) -> Option<String> {
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![Path::new(working_dir).join(program)]
    } else {
        std::env::split_paths(search_path)
            .map(|folder| Path::new(working_dir).join(folder).join(program))
            .collect()
    };
    candidates
        .iter()
        .filter(|candidate| candidate.is_file())
        .find_map(|candidate| {
            let (what, needed) = match gpubox_hostbin::launcher(candidate).ok()? {
                gpubox_hostbin::Launcher::Script { interpreter, .. } => {
                    ("a script whose #! interpreter", interpreter)
                }
                gpubox_hostbin::Launcher::Elf {
                    loader: Some(loader),
                } => ("an ELF program whose loader", loader),
                _ => return None,
            };
            (!needed.exists()).then(|| {
                format!(
                    "{} is there, but it is {what} {} is not in the image: add it, or fix the \
                     script's first line or copy the program with hostBinaries",
                    candidate.display(),
                    needed.display()
                )
            })
        })
}

fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|string| string.as_ptr())
        .chain([ptr::null()])
        .collect()
}

/// The ids to switch to, or `None` when the init already runs as that user and group
/// (switching would need root for nothing).
fn identity_change(account: &Account) -> Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)> {
    // SAFETY: plain queries of the init's own ids.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if account.uid == uid && account.gid == gid {
        return None;
    }
    let groups = [account.gid]
        .into_iter()
        .chain(account.groups.iter().copied())
        .collect();
    Some((account.uid, account.gid, groups))
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

pub fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [c_int; 2] = [-1; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The stage and errno the child reported, or `None` when the pipe closed on a
/// successful exec.
fn read_exec_report(report_read: OwnedFd) -> Option<(Stage, c_int)> {
    const INT: usize = mem::size_of::<c_int>();
    let mut report = Vec::new();
    // A read error leaves the report empty: the child's fate then shows in its status.
    let _ = File::from(report_read).read_to_end(&mut report);
    let report: [u8; 2 * INT] = report.as_slice().try_into().ok()?;
    let (stage, errno) = report.split_at(INT);
    let stage = c_int::from_ne_bytes(stage.try_into().ok()?);
    let errno = c_int::from_ne_bytes(errno.try_into().ok()?);
    Some((Stage::from_code(stage), errno))
}

/// In the child: leave the init's process group (and take the terminal foreground when
/// asked), connect the standard streams, switch user, enter the working folder, restore
/// default signal handling, and exec. Never returns.
unsafe fn exec_child(child: &Prepared, report_write: c_int) -> ! {
    let mut mask: libc::sigset_t = mem::zeroed();
    // Everything stays blocked until the exec, so no signal acts on the half-set-up child.
    libc::sigfillset(&mut mask);
    libc::sigprocmask(libc::SIG_SETMASK, &mask, ptr::null_mut());
    // Its own process group keeps terminal-generated signals from reaching both the init
    // (which would forward them) and the command, and lets a service be stopped whole.
    libc::setpgid(0, 0);
    if child.take_terminal {
        libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
    }

    // A source descriptor below 3 (the init started with closed standard streams) is
    // moved up first, so that no dup2 overwrites a source still to be copied.
    let mut sources = child.stdio;
    for source in sources.iter_mut().filter(|fd| (0..3).contains(*fd)) {
        *source = libc::fcntl(*source, libc::F_DUPFD_CLOEXEC, 3);
        if *source < 0 {
            fail_in_child(report_write, Stage::Output);
        }
    }
    for (target, source) in (0..).zip(sources) {
        if source >= 0 && libc::dup2(source, target) < 0 {
            fail_in_child(report_write, Stage::Output);
        }
    }
    if let Some((uid, gid, groups)) = &child.identity {
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0
            || libc::setgid(*gid) != 0
            || libc::setuid(*uid) != 0
        {
            fail_in_child(report_write, Stage::User);
        }
    }
    // After the switch, so the folder is entered with the user's own permissions.
    if let Some(dir) = &child.working_dir {
        if libc::chdir(dir.as_ptr()) != 0 {
            fail_in_child(report_write, Stage::WorkingDir);
        }
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

    if let Some(envp) = &child.envp {
        // Only this forked child's copy of the pointer changes; execvp then passes this
        // environment on and looks the program up in its PATH.
        environ = envp.as_ptr();
    }
    libc::execvp(child.argv[0], child.argv.as_ptr());
    fail_in_child(report_write, Stage::Exec)
}

/// Reports `stage` and errno to the init and exits.
unsafe fn fail_in_child(report_write: c_int, stage: Stage) -> ! {
    let errno = *libc::__errno_location();
    let mut report = [0u8; 2 * mem::size_of::<c_int>()];
    let (stage_bytes, errno_bytes) = report.split_at_mut(mem::size_of::<c_int>());
    stage_bytes.copy_from_slice(&(stage as c_int).to_ne_bytes());
    errno_bytes.copy_from_slice(&errno.to_ne_bytes());
    libc::write(report_write, report.as_ptr().cast(), report.len());
    libc::_exit(NOT_FOUND_EXIT)
}
