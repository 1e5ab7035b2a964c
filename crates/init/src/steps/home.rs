//! The home step: a home-manager activation run as its user, waited for, before any
//! service starts, so the services see the user's files in place.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};

use gpubox_initplan::HomePlan;

use crate::accounts::{self, AccountError};

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("cannot run the home-manager activation `{program}` as `{user}`: {error}")]
    NotRun {
        program: String,
        user: String,
        error: io::Error,
    },
    #[error("the home-manager activation `{program}` as `{user}` failed ({status}); its output is above")]
    Failed {
        program: String,
        user: String,
        status: ExitStatus,
    },
}

/// Runs the activation with the user's ids, groups, `HOME`, `USER` and `LOGNAME`, in the
/// user's home, and waits for it.
pub fn run(plan: &HomePlan) -> Result<(), HomeError> {
    let account = accounts::resolve(&plan.user)?;
    let groups: Vec<libc::gid_t> = account.groups.clone();
    let (uid, gid) = (account.uid, account.gid);
    let mut command = Command::new(&plan.activate);
    command
        .env("HOME", &account.home)
        .env("USER", &account.name)
        .env("LOGNAME", &account.name)
        .current_dir(super::root_path(&account.home));
    // SAFETY: only system calls between fork and exec, on memory prepared before.
    // The supplementary groups must be set while still root, so all three ids are
    // dropped here rather than through `Command::uid`, which runs before this hook.
    unsafe {
        command.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = command.status().map_err(|error| HomeError::NotRun {
        program: plan.activate.clone(),
        user: plan.user.clone(),
        error,
    })?;
    if !status.success() {
        return Err(HomeError::Failed {
            program: plan.activate.clone(),
            user: plan.user.clone(),
            status,
        });
    }
    Ok(())
}
