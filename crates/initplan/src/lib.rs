//! The start-up plan: what `gpubox-init` does around the main command, written by
//! the build into the image at [`PLAN_PATH`] and read by the init at start.
//!
//! This crate owns the plan's format and nothing else. The build (`gpubox-rootfs`)
//! turns the spec into a plan after checking it, so every value here is already
//! valid: paths are absolute paths inside the image, users exist in the image's
//! `/etc/passwd`, service names are unique and `after` names services that exist and
//! form no cycle. The init still refuses a plan it cannot read, naming the file.
//!
//! Start-up runs in this order, each step named in its failure: runtime folders,
//! [`InitPlan::users`], the GPU step, [`InitPlan::ssh`], [`InitPlan::secrets`],
//! [`InitPlan::tailscale`], [`InitPlan::home`], [`InitPlan::startup_script`], then the
//! services: first the ones the steps start (sshd, tailscaled), then
//! [`InitPlan::services`] in dependency order. An image without a plan file gets none
//! of the steps but the GPU step.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where `gpubox-init` is in every image gpubox builds: the image's entrypoint, and
/// the program Kubernetes probes run (`gpubox-init ready`).
pub const INIT_PATH: &str = "/bin/gpubox-init";

/// How long the init waits for tailscaled to answer before `tailscale up`; part of
/// the start-up time a deployment's startup probe must allow.
pub const TAILSCALED_READY_TIMEOUT_MS: u64 = 30_000;

/// Where the plan is in the image, relative to its root.
pub const PLAN_PATH: &str = "etc/gpubox/init.json";

/// The environment variables `gpubox-init` takes keys and secrets from, named once
/// for the init and for what sets them (`gpubox deploy`'s manifests and templates).
pub mod variables {
    /// Authorized SSH keys, one per line (or `\n`-separated, or comma-separated).
    pub const SSH_PUBLIC_KEYS: &str = "SSH_PUBLIC_KEYS";
    /// The same, under the name RunPod (and vast.ai's images) set.
    pub const PUBLIC_KEY: &str = "PUBLIC_KEY";
    /// An age identity (or SSH private key) that decrypts the image's age secrets.
    pub const AGE_IDENTITY: &str = "AGE_IDENTITY";
    /// tailscale's auth key, when the plan names no file for it.
    pub const TAILSCALE_AUTHKEY: &str = "TAILSCALE_AUTHKEY";
}

/// The plan's format version; the init refuses a plan with another one, so an image
/// built by a newer gpubox fails plainly instead of half-starting.
pub const FORMAT_VERSION: u32 = 1;

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitPlan {
    /// Always [`FORMAT_VERSION`] when written by this build of gpubox.
    pub version: u32,
    /// The account the main command runs as (`NAME`, `UID` or `NAME:GROUP`), when the
    /// image's config `User` stays root so the init can do what needs root first.
    /// `None`: the main command runs as the init does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_user: Option<String>,
    /// Accounts whose home folder must exist, owned by them, before anything runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<AccountPlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshPlan>,
    #[serde(default, skip_serializing_if = "SecretsPlan::is_empty")]
    pub secrets: SecretsPlan,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tailscale: Option<TailscalePlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<HomePlan>,
    /// A shell script in the image, run with `/bin/sh` after the other steps; the
    /// variables it exports reach every service and the main command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_script: Option<String>,
    /// The spec's services, by name; the init orders them by `after`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServicePlan>,
    /// How long the services get to stop after SIGTERM, in reverse start order,
    /// before what is left gets SIGKILL.
    pub stop_timeout_ms: u64,
}

impl InitPlan {
    /// A plan that does nothing but hold the stop timeout.
    pub fn new(stop_timeout_ms: u64) -> Self {
        InitPlan {
            version: FORMAT_VERSION,
            main_user: None,
            users: Vec::new(),
            ssh: None,
            secrets: SecretsPlan::default(),
            tailscale: None,
            home: None,
            startup_script: None,
            services: Vec::new(),
            stop_timeout_ms,
        }
    }

    /// The plan as the build writes it: pretty, with a final newline, and the same
    /// bytes for the same plan.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail: every map key is a string.
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Reads a plan, refusing one of another [`FORMAT_VERSION`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, PlanError> {
        let plan: InitPlan = serde_json::from_slice(bytes).map_err(PlanError::Invalid)?;
        if plan.version != FORMAT_VERSION {
            return Err(PlanError::Version(plan.version));
        }
        Ok(plan)
    }
}

/// Why a plan cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("it is not a valid start-up plan: {0}")]
    Invalid(serde_json::Error),
    #[error("it is format version {0}, this gpubox-init reads version {FORMAT_VERSION}; rebuild the image with the same gpubox")]
    Version(u32),
}

/// An account from the spec (`user`, `users.<name>`), already in `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountPlan {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Created at start (with its parents) and given to the account when missing, so
    /// an empty volume mounted there works.
    pub home: String,
}

/// The SSH step: host keys, authorized keys, then sshd as the first service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SshPlan {
    /// `sshd` in the image (from the closure or `hostBinaries`).
    pub sshd: String,
    /// `ssh-keygen` in the image, for the host keys.
    pub ssh_keygen: String,
    /// The `sshd_config` the build wrote (the default, or the spec's `sshdConfig`).
    pub config: String,
    /// Where host keys are kept: generated there when missing, kept when present,
    /// so a mounted volume gives a restarted container the same identity.
    pub host_key_dir: String,
    /// Host key types to have: `ed25519`, and `rsa` when asked.
    pub host_key_types: Vec<String>,
    /// Keys from the spec (`ssh.authorizedKeys`); the init adds the ones in
    /// `SSH_PUBLIC_KEYS` and `PUBLIC_KEY`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorized_keys: Vec<String>,
    /// The accounts the authorized keys log in to (root, and the main user).
    pub login_users: Vec<String>,
    /// Where the init writes each login user's authorized keys, with `%u` for the
    /// user name; the config's `AuthorizedKeysFile` names the same.
    pub authorized_keys_file: String,
    /// Whether password login is on (`ssh.passwordLogin`); only then does
    /// `ROOT_PASSWORD` set root's password.
    pub password_login: bool,
}

/// The secrets step: agenix's meaning of `age.secrets`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretsPlan {
    /// Identity files tried in order (`age.identityPaths`; by default the SSH host
    /// keys). `AGE_IDENTITY` in the environment adds one first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_paths: Vec<String>,
    /// The tmpfs the secrets are decrypted into, e.g. `/run/agenix.d`.
    pub mount_point: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretPlan>,
}

impl SecretsPlan {
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

/// One secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretPlan {
    pub name: String,
    /// The encrypted file in the image.
    pub file: String,
    /// Where the plaintext is seen (default `/run/agenix/NAME`).
    pub path: String,
    /// Permission bits, e.g. 0o400.
    pub mode: u32,
    pub owner: String,
    pub group: String,
    /// Whether `path` is a link to the file in the tmpfs (true) or a copy.
    pub symlink: bool,
    /// Whether a secret that cannot be decrypted is skipped with a notice instead of
    /// stopping the start.
    pub optional: bool,
}

/// The tailscale step: tailscaled in userspace-networking mode, then `tailscale up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TailscalePlan {
    pub tailscaled: String,
    pub tailscale: String,
    pub state_dir: String,
    /// The file holding the auth key; `TAILSCALE_AUTHKEY` is used when it is unset
    /// or missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_key_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_up_flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_daemon_flags: Vec<String>,
}

/// The home step: a home-manager activation package run as its user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HomePlan {
    /// The package's `activate` program, in the closure.
    pub activate: String,
    pub user: String,
}

/// One service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePlan {
    pub name: String,
    /// Never empty; `argv[0]` is looked up in PATH when it has no `/`.
    pub argv: Vec<String>,
    /// Added to the environment every service gets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `None`: as the init (root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub restart: Restart,
    pub restart_delay_ms: u64,
    /// `None`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// Services that must be ready before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// `None`: ready as soon as it is started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Readiness>,
    /// A file the service's output also goes to (appended), besides the init's
    /// stdout and stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file: Option<String>,
}

/// When a service is started again after it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    Never,
    OnFailure,
    Always,
}

/// How the init knows a service is ready for the ones that come after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Readiness {
    pub check: ReadinessCheck,
    /// A service not ready by then is a failed start.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ReadinessCheck {
    /// Ready when something accepts a TCP connection on 127.0.0.1:PORT.
    Tcp(u16),
    /// Ready when this command exits 0 (tried again until the timeout).
    Exec(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str) -> ServicePlan {
        ServicePlan {
            name: name.to_owned(),
            argv: vec!["/bin/server".to_owned(), "--port=8000".to_owned()],
            env: BTreeMap::from([("MODE".to_owned(), "prod".to_owned())]),
            working_dir: Some("/srv".to_owned()),
            user: Some("app".to_owned()),
            restart: Restart::OnFailure,
            restart_delay_ms: 1000,
            max_restarts: Some(3),
            after: vec!["db".to_owned()],
            readiness: Some(Readiness {
                check: ReadinessCheck::Tcp(8000),
                timeout_ms: 30_000,
            }),
            log_file: None,
        }
    }

    #[test]
    fn a_plan_reads_back_as_written() {
        let mut plan = InitPlan::new(10_000);
        plan.services = vec![service("web")];
        plan.startup_script = Some("/etc/gpubox/startup.sh".to_owned());
        let json = plan.to_json();
        assert_eq!(InitPlan::from_json(&json).unwrap(), plan);
        let text = String::from_utf8(json).unwrap();
        assert!(text.contains("\"restart\": \"on-failure\""), "{text}");
        assert!(text.contains("\"tcp\": 8000"), "{text}");
    }

    #[test]
    fn another_format_version_or_an_unknown_key_is_refused() {
        let mut plan = InitPlan::new(1);
        plan.version = FORMAT_VERSION + 1;
        let error = InitPlan::from_json(&plan.to_json()).unwrap_err();
        assert!(error.to_string().contains("rebuild the image"), "{error}");
        let error = InitPlan::from_json(br#"{"version": 1, "stopTimeoutMs": 1, "sevices": []}"#)
            .unwrap_err();
        assert!(error.to_string().contains("sevices"), "{error}");
    }
}
