//! The home step: a home-manager activation run as its user, waited for, before any
//! service starts, so the services see the user's files in place.

use std::ffi::OsString;
use std::io;

use gpubox_initplan::HomePlan;

use crate::accounts::{self, AccountError};
use crate::reap::{self, Termination};
use crate::spawn::{self, ChildSetup, SpawnError};

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("the home-manager activation as `{user}`: {error}")]
    NotRun { user: String, error: SpawnError },
    #[error("cannot wait for the home-manager activation `{program}` as `{user}`: {error}")]
    NotWaited {
        program: String,
        user: String,
        error: io::Error,
    },
    #[error("the home-manager activation `{program}` as `{user}` failed ({termination}); its output is above")]
    Failed {
        program: String,
        user: String,
        termination: Termination,
    },
}

/// Runs the activation with the user's ids, groups, `HOME`, `USER` and `LOGNAME`, in the
/// user's home, and waits for it.
pub fn run(plan: &HomePlan) -> Result<(), HomeError> {
    let account = accounts::resolve(&plan.user)?;
    let setup = ChildSetup {
        env: Some(spawn::environment_with(Some(&account), &Default::default())),
        working_dir: Some(
            super::root_path(&account.home)
                .to_string_lossy()
                .into_owned(),
        ),
        account: Some(account),
        ..ChildSetup::default()
    };
    let pid = spawn::spawn(&[OsString::from(&plan.activate)], setup).map_err(|error| {
        HomeError::NotRun {
            user: plan.user.clone(),
            error,
        }
    })?;
    let termination = reap::wait_for(pid).map_err(|error| HomeError::NotWaited {
        program: plan.activate.clone(),
        user: plan.user.clone(),
        error,
    })?;
    if !termination.succeeded() {
        return Err(HomeError::Failed {
            program: plan.activate.clone(),
            user: plan.user.clone(),
            termination,
        });
    }
    Ok(())
}
