//! The spec keys that make the container run as a machine under `gpubox-init`:
//! accounts, SSH, secrets, tailscale, a start-up script, services, Nix inside the
//! image and a home-manager home. Checked in `check/machine.rs`; turned into the
//! init's plan by `gpubox-rootfs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use miette::SourceSpan;

// The plan's own types, which the spec fills in; users of both name them from gpubox-initplan.
use gpubox_initplan::{Readiness, Restart};

use crate::{Item, PackageRef};

/// `stopTimeout` when the spec has none: 10 seconds.
pub const DEFAULT_STOP_TIMEOUT_MS: u64 = 10_000;
/// `services.<name>.restartDelay` when the spec has none: 1 second.
pub const DEFAULT_RESTART_DELAY_MS: u64 = 1_000;
/// `services.<name>.readiness.timeout` when the spec has none: 30 seconds.
pub const DEFAULT_READINESS_TIMEOUT_MS: u64 = 30_000;
/// `ssh.hostKeyDir` when the spec has none.
pub const DEFAULT_HOST_KEY_DIR: &str = "/etc/ssh/host-keys";
/// `tailscale.stateDir` when the spec has none.
pub const DEFAULT_TAILSCALE_STATE_DIR: &str = "/var/lib/tailscale";
/// Where a secret's plaintext is seen when its `path` is not set: this folder
/// followed by the secret's name, as agenix does.
pub const DEFAULT_SECRETS_DIR: &str = "/run/agenix";

/// Everything the init does around the main command. The default does nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    /// `users.<name>`, sorted by name (the order written does not change the image).
    pub users: Vec<Item<UserSpec>>,
    pub ssh: SshSpec,
    /// `sshdConfig`: the whole `sshd_config`, replacing gpubox's default.
    pub sshd_config: Option<Item<String>>,
    pub age: AgeSpec,
    pub tailscale: TailscaleSpec,
    /// `extraStartupScript`: run with `/bin/sh` before the services.
    pub extra_startup_script: Option<String>,
    /// `services.<name>`, sorted by name; `after` names existing services and has no
    /// cycle.
    pub services: Vec<Item<ServiceSpec>>,
    /// `stopTimeout` (seconds in the spec).
    pub stop_timeout_ms: u64,
    /// `nixConfig`, rendered as `nix.conf` text.
    pub nix_config: Option<String>,
    /// `nix.enable`: the image carries a Nix database registering its closure.
    pub nix_enable: bool,
    /// `home`: a home-manager activation package.
    pub home: Option<Item<PackageRef>>,
}

impl Default for MachineSpec {
    fn default() -> MachineSpec {
        MachineSpec {
            users: Vec::new(),
            ssh: SshSpec::default(),
            sshd_config: None,
            age: AgeSpec::default(),
            tailscale: TailscaleSpec::default(),
            extra_startup_script: None,
            services: Vec::new(),
            stop_timeout_ms: DEFAULT_STOP_TIMEOUT_MS,
            nix_config: None,
            nix_enable: false,
            home: None,
        }
    }
}

impl MachineSpec {
    /// Whether `gpubox-init` has anything to do before the main command, so the
    /// image needs a start-up plan (and its config `User` stays root).
    pub fn needs_init(&self) -> bool {
        !self.users.is_empty()
            || self.ssh.enable
            || !self.age.secrets.is_empty()
            || self.tailscale.enable
            || self.extra_startup_script.is_some()
            || !self.services.is_empty()
            || self.home.is_some()
    }
}

/// `users.<name>`: an account added to `/etc/passwd`, `/etc/group` and
/// `/etc/shadow` (password locked: `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub name: String,
    pub uid: u32,
    /// `gid`, defaulting to the uid.
    pub gid: u32,
    /// `group`: the primary group's name, defaulting to the account's name.
    pub group: String,
    /// `home`, defaulting to `/home/NAME`.
    pub home: String,
    /// `shell`, defaulting to `/bin/sh`.
    pub shell: String,
    /// `groups`: supplementary groups; one no account has as its primary group is
    /// created.
    pub groups: Vec<String>,
}

/// `ssh`: sshd started by the init, keys only unless `passwordLogin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSpec {
    pub enable: bool,
    /// Where `enable` was written, for build errors about a missing sshd.
    pub span: Option<SourceSpan>,
    pub port: u16,
    pub authorized_keys: Vec<String>,
    pub host_key_dir: String,
    pub rsa_host_key: bool,
    pub password_login: bool,
}

impl Default for SshSpec {
    fn default() -> SshSpec {
        SshSpec {
            enable: false,
            span: None,
            port: 22,
            authorized_keys: Vec::new(),
            host_key_dir: DEFAULT_HOST_KEY_DIR.to_owned(),
            rsa_host_key: false,
            password_login: false,
        }
    }
}

/// `age`: agenix-style secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgeSpec {
    /// `identityPaths`; empty means the SSH host keys.
    pub identity_paths: Vec<String>,
    /// `secrets.<name>`, sorted by name.
    pub secrets: Vec<Item<SecretSpec>>,
}

/// `age.secrets.<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    pub name: String,
    /// The encrypted file on the build machine (absolute; checked to exist at build).
    pub file: Item<PathBuf>,
    /// Where the plaintext is seen, default `/run/agenix/NAME`.
    pub path: String,
    /// Default 0o400.
    pub mode: u32,
    /// Default `root`; checked against the image's accounts at build.
    pub owner: Item<String>,
    /// `None`: the owner's primary group.
    pub group: Option<Item<String>>,
    /// Default true.
    pub symlink: bool,
    /// Default false.
    pub optional: bool,
}

/// `tailscale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailscaleSpec {
    pub enable: bool,
    /// Where `enable` was written, for build errors about missing programs.
    pub span: Option<SourceSpan>,
    pub auth_key_file: Option<String>,
    pub hostname: Option<String>,
    pub state_dir: String,
    pub extra_up_flags: Vec<String>,
    pub extra_daemon_flags: Vec<String>,
}

impl Default for TailscaleSpec {
    fn default() -> TailscaleSpec {
        TailscaleSpec {
            enable: false,
            span: None,
            auth_key_file: None,
            hostname: None,
            state_dir: DEFAULT_TAILSCALE_STATE_DIR.to_owned(),
            extra_up_flags: Vec::new(),
            extra_daemon_flags: Vec::new(),
        }
    }
}

/// `services.<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    /// Never empty.
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    /// Checked against the image's accounts at build.
    pub user: Option<Item<String>>,
    pub restart: Restart,
    pub restart_delay_ms: u64,
    pub max_restarts: Option<u32>,
    pub after: Vec<String>,
    pub readiness: Option<Readiness>,
    pub log_file: Option<String>,
}
