//! The files that let `gpubox-init` run the container as a machine, and the plan it
//! follows ([`gpubox_initplan::InitPlan`] at [`PLAN_PATH`]): the default
//! `sshd_config`, the encrypted secrets, the start-up script, `/etc/nix/nix.conf` and
//! the Nix database. The accounts the machine keys ask for are `accounts.rs`'s.
//!
//! Config `User`: when the spec's `user` is not root and the plan has work that needs
//! root (accounts, SSH, secrets, tailscale, services, home), the image's config
//! `User` stays root and the plan's `mainUser` names the spec's user; the init drops
//! to it for the main command.
//!
//! A secret file must be age ciphertext, checked here, so no plaintext reaches a
//! layer; its owner and group must be accounts the image has.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use gpubox_initplan::{
    AccountPlan, HomePlan, InitPlan, SecretPlan, SecretsPlan, ServicePlan, SshPlan, TailscalePlan,
    PLAN_PATH,
};
use gpubox_oci::source::LayerFile;
use gpubox_oci::{Entry, EntryKind, FileSource};
use gpubox_spec::{Item, MachineSpec};
use miette::SourceSpan;

use crate::accounts::{named_user, AccountTable};
use crate::base::ClosureSearch;
use crate::tree::{Origin, Tree};
use crate::{image_path, RootfsError, RootfsInput};

/// Where the init writes each login user's authorized keys (`%u`: the user).
const AUTHORIZED_KEYS_FILE: &str = "/etc/ssh/authorized_keys.d/%u";
const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
const STARTUP_SCRIPT: &str = "/etc/gpubox/startup.sh";
const SECRETS_DIR: &str = "/etc/gpubox/secrets";
/// The tmpfs the init decrypts secrets into.
const SECRETS_MOUNT: &str = "/run/agenix.d";
/// How every age file starts, binary or armored.
const AGE_HEADERS: &[&[u8]] = &[
    b"age-encryption.org/v1\n",
    b"-----BEGIN AGE ENCRYPTED FILE-----",
];

/// A build-time problem with a machine key, naming it and pointing at it.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error(
        "`{key}` names the account {user:?}, which the image does not have; \
         use root, the spec's `user`, a `users.<name>` entry or an account of the base image"
    )]
    UnknownUser {
        key: String,
        user: String,
        span: Option<SourceSpan>,
    },
    #[error(
        "`{key}` names the group {group:?}, which the image does not have; \
         use a group of an account or one listed in a `users.<name>.groups`"
    )]
    UnknownGroup {
        key: String,
        group: String,
        span: Option<SourceSpan>,
    },
    #[error("`{key}`: cannot read the secret file {}: {source}; check the path (relative to the spec's folder)", path.display())]
    SecretUnreadable {
        key: String,
        path: PathBuf,
        source: std::io::Error,
        span: Option<SourceSpan>,
    },
    #[error(
        "`{key}`: {} is not an age-encrypted file; encrypt it with `age -r RECIPIENT` \
         (or agenix) and name the .age file: gpubox never puts a plaintext secret in an image",
        path.display()
    )]
    SecretNotEncrypted {
        key: String,
        path: PathBuf,
        span: Option<SourceSpan>,
    },
    #[error(
        "`{key}` is on but the image has no `{program}`: add {package} to systemPackages, \
         or its `{program}` to hostBinaries"
    )]
    ProgramMissing {
        key: &'static str,
        program: &'static str,
        package: &'static str,
        span: Option<SourceSpan>,
    },
    #[error(
        "`home`: {} has no `activate` program, so it is not a home-manager activation \
         package; name one such as `.#homeConfigurations.me.activationPackage`",
        path.display()
    )]
    NotActivationPackage {
        path: PathBuf,
        span: Option<SourceSpan>,
    },
}

impl MachineError {
    /// The key this error is about, as the spec writes its path.
    pub fn key(&self) -> &str {
        match self {
            MachineError::UnknownUser { key, .. }
            | MachineError::UnknownGroup { key, .. }
            | MachineError::SecretUnreadable { key, .. }
            | MachineError::SecretNotEncrypted { key, .. } => key,
            MachineError::ProgramMissing { key, .. } => key,
            MachineError::NotActivationPackage { .. } => "home",
        }
    }

    /// Where the spec wrote the key this error is about.
    pub fn span(&self) -> Option<SourceSpan> {
        match self {
            MachineError::UnknownUser { span, .. }
            | MachineError::UnknownGroup { span, .. }
            | MachineError::SecretUnreadable { span, .. }
            | MachineError::SecretNotEncrypted { span, .. }
            | MachineError::ProgramMissing { span, .. }
            | MachineError::NotActivationPackage { span, .. } => *span,
        }
    }
}

/// Whether `user` (`NAME`, `UID`, `NAME:GROUP`) is root.
fn is_root(user: &str) -> bool {
    matches!(user.split(':').next(), Some("root" | "0"))
}

/// The config `User` and the plan's main user: root and the spec's user when the
/// plan needs root first, else the spec's user and none.
pub(crate) fn config_user(machine: &MachineSpec, user: &str) -> (String, Option<String>) {
    if machine.needs_init() && !is_root(user) {
        ("root".to_owned(), Some(user.to_owned()))
    } else {
        (user.to_owned(), None)
    }
}

/// Writes the machine files and returns the plan (also written to [`PLAN_PATH`]),
/// or `None` when the spec asks the init for nothing. `homes`: the accounts whose
/// home the init prepares.
pub(crate) fn add_machine(
    tree: &mut Tree,
    input: &RootfsInput<'_>,
    search: &ClosureSearch<'_>,
    base_files: &BTreeMap<String, LayerFile>,
    homes: &[AccountPlan],
) -> Result<Option<InitPlan>, RootfsError> {
    let machine = input.machine;
    let path = |raw: &str| image_path(raw.trim_start_matches('/'), &Origin::Generated);
    if let Some(text) = &machine.nix_config {
        tree.insert_default(Entry::bytes(
            path("etc/nix/nix.conf")?,
            0o644,
            text.as_bytes(),
        ));
    }
    if let Some(db) = input.nix_db {
        crate::nixdb::add_nix_db(tree, db)?;
    }
    if !machine.needs_init() {
        return Ok(None);
    }
    let known = AccountTable::read(tree, base_files);
    let (_, main_user) = config_user(machine, input.user);
    let mut plan = InitPlan::new(machine.stop_timeout_ms);
    plan.main_user = main_user;
    plan.users = homes.to_vec();

    if machine.ssh.enable {
        plan.ssh = Some(add_ssh(tree, input, search)?);
    }
    plan.secrets = add_secrets(tree, input, known.as_ref())?;
    if machine.tailscale.enable {
        let find = |program| {
            find_program(input, search, program).ok_or(MachineError::ProgramMissing {
                key: "tailscale.enable",
                program,
                package: "tailscale",
                span: machine.tailscale.span,
            })
        };
        let tailscale = &machine.tailscale;
        plan.tailscale = Some(TailscalePlan {
            tailscaled: find("tailscaled")?,
            tailscale: find("tailscale")?,
            state_dir: tailscale.state_dir.clone(),
            auth_key_file: tailscale.auth_key_file.clone(),
            hostname: tailscale.hostname.clone(),
            extra_up_flags: tailscale.extra_up_flags.clone(),
            extra_daemon_flags: tailscale.extra_daemon_flags.clone(),
        });
        tree.insert_default(Entry::directory(path(&tailscale.state_dir)?, 0o700));
    }
    if let (Some(item), Some(package)) = (&machine.home, input.home) {
        let activate = Path::new(package.as_str()).join("activate");
        if std::fs::metadata(&activate).is_err() {
            return Err(MachineError::NotActivationPackage {
                path: PathBuf::from(package.as_str()),
                span: item.span,
            }
            .into());
        }
        plan.home = Some(HomePlan {
            activate: activate.to_string_lossy().into_owned(),
            user: input
                .user
                .split(':')
                .next()
                .filter(|name| !name.is_empty())
                .unwrap_or("root")
                .to_owned(),
        });
    }
    if let Some(script) = &machine.extra_startup_script {
        tree.insert_default(Entry::bytes(
            path(STARTUP_SCRIPT)?,
            0o755,
            script.as_bytes(),
        ));
        plan.startup_script = Some(STARTUP_SCRIPT.to_owned());
    }
    for item in &machine.services {
        let service = &item.value;
        if let Some(user) = &service.user {
            let key = format!("services.{}.user", service.name);
            check_user(known.as_ref(), &key, user)?;
        }
        plan.services.push(ServicePlan {
            name: service.name.clone(),
            argv: service.argv.clone(),
            env: service.env.clone(),
            working_dir: service.working_dir.clone(),
            user: service.user.as_ref().map(|user| user.value.clone()),
            restart: service.restart,
            restart_delay_ms: service.restart_delay_ms,
            max_restarts: service.max_restarts,
            after: service.after.clone(),
            readiness: service.readiness.clone(),
            log_file: service.log_file.clone(),
        });
    }
    tree.insert_default(Entry::bytes(path(PLAN_PATH)?, 0o644, plan.to_json()));
    Ok(Some(plan))
}

fn add_ssh(
    tree: &mut Tree,
    input: &RootfsInput<'_>,
    search: &ClosureSearch<'_>,
) -> Result<SshPlan, RootfsError> {
    let ssh = &input.machine.ssh;
    let path = |raw: &str| image_path(raw.trim_start_matches('/'), &Origin::Generated);
    let find = |program| {
        find_program(input, search, program).ok_or(MachineError::ProgramMissing {
            key: "ssh.enable",
            program,
            package: "openssh",
            span: ssh.span,
        })
    };
    let sshd = find("sshd")?;
    let ssh_keygen = find("ssh-keygen")?;
    let mut host_key_types = vec!["ed25519".to_owned()];
    if ssh.rsa_host_key {
        host_key_types.push("rsa".to_owned());
    }
    let config = match &input.machine.sshd_config {
        Some(text) => text.value.clone(),
        None => default_sshd_config(
            ssh.port,
            &ssh.host_key_dir,
            &host_key_types,
            ssh.password_login,
            find_program(input, search, "sftp-server").as_deref(),
        ),
    };
    tree.insert_default(Entry::bytes(path(SSHD_CONFIG)?, 0o644, config.into_bytes()));
    tree.insert_default(Entry::directory(path("etc/ssh/authorized_keys.d")?, 0o755));
    tree.insert_default(Entry::directory(path(&ssh.host_key_dir)?, 0o700));
    // sshd's privilege separation wants an empty root-owned folder: NixOS's sshd
    // uses /var/empty, Debian's /run/sshd.
    tree.insert_default(Entry::directory(path("var/empty")?, 0o755));
    tree.insert_default(Entry::directory(path("run/sshd")?, 0o755));
    let mut login_users = vec!["root".to_owned()];
    login_users.extend(named_user(input.user).map(str::to_owned));
    Ok(SshPlan {
        sshd,
        ssh_keygen,
        config: SSHD_CONFIG.to_owned(),
        host_key_dir: ssh.host_key_dir.clone(),
        host_key_types,
        authorized_keys: ssh.authorized_keys.clone(),
        login_users,
        authorized_keys_file: AUTHORIZED_KEYS_FILE.to_owned(),
        password_login: ssh.password_login,
    })
}

/// gpubox's `sshd_config`: keys only unless `passwordLogin`, root by key only.
fn default_sshd_config(
    port: u16,
    host_key_dir: &str,
    host_key_types: &[String],
    password_login: bool,
    sftp_server: Option<&str>,
) -> String {
    let mut text = String::from(
        "# Written by gpubox from the spec's `ssh` table; `sshdConfig` replaces this file.\n",
    );
    text.push_str(&format!("Port {port}\n"));
    for key_type in host_key_types {
        text.push_str(&format!("HostKey {host_key_dir}/ssh_host_{key_type}_key\n"));
    }
    let (passwords, root) = if password_login {
        ("yes", "yes")
    } else {
        ("no", "prohibit-password")
    };
    text.push_str(&format!(
        "AuthorizedKeysFile {} .ssh/authorized_keys\n\
         PasswordAuthentication {passwords}\n\
         KbdInteractiveAuthentication no\n\
         PermitEmptyPasswords no\n\
         PermitRootLogin {root}\n\
         UsePAM no\n\
         PidFile /run/sshd.pid\n",
        AUTHORIZED_KEYS_FILE,
    ));
    if let Some(sftp) = sftp_server {
        text.push_str(&format!("Subsystem sftp {sftp}\n"));
    }
    text
}

fn add_secrets(
    tree: &mut Tree,
    input: &RootfsInput<'_>,
    known: Option<&AccountTable>,
) -> Result<SecretsPlan, RootfsError> {
    let age = &input.machine.age;
    if age.secrets.is_empty() {
        // The empty plan, which the plan file leaves out.
        return Ok(SecretsPlan::default());
    }
    let mut plan = SecretsPlan {
        identity_paths: age.identity_paths.clone(),
        mount_point: SECRETS_MOUNT.to_owned(),
        secrets: Vec::new(),
    };
    if plan.identity_paths.is_empty() {
        let ssh = &input.machine.ssh;
        plan.identity_paths
            .push(format!("{}/ssh_host_ed25519_key", ssh.host_key_dir));
        if ssh.rsa_host_key {
            plan.identity_paths
                .push(format!("{}/ssh_host_rsa_key", ssh.host_key_dir));
        }
    }
    for item in &age.secrets {
        let secret = &item.value;
        let key = format!("age.secrets.{}", secret.name);
        check_user(known, &format!("{key}.owner"), &secret.owner)?;
        let group = match &secret.group {
            Some(group) => {
                check_group(known, &format!("{key}.group"), group)?;
                group.value.clone()
            }
            None => known
                .and_then(|known| known.primary_group(&secret.owner.value))
                .unwrap_or_else(|| "root".to_owned()),
        };
        let file = &secret.file.value;
        let file_key = format!("{key}.file");
        check_ciphertext(file, &file_key, secret.file.span)?;
        let size = std::fs::metadata(file)
            .map_err(|source| MachineError::SecretUnreadable {
                key: file_key.clone(),
                path: file.clone(),
                source,
                span: secret.file.span,
            })?
            .len();
        let in_image = format!("{SECRETS_DIR}/{}.age", secret.name);
        tree.insert(
            Entry {
                path: image_path(in_image.trim_start_matches('/'), &Origin::Generated)?,
                kind: EntryKind::File {
                    source: FileSource::Path(file.clone()),
                    size,
                },
                mode: 0o400,
                uid: 0,
                gid: 0,
            },
            Origin::Generated,
        )?;
        plan.secrets.push(SecretPlan {
            name: secret.name.clone(),
            file: in_image,
            path: secret.path.clone(),
            mode: secret.mode,
            owner: secret.owner.value.clone(),
            group,
            symlink: secret.symlink,
            optional: secret.optional,
        });
    }
    Ok(plan)
}

/// Fails unless `file` is readable and starts like an age file.
fn check_ciphertext(file: &Path, key: &str, span: Option<SourceSpan>) -> Result<(), MachineError> {
    let unreadable = |source| MachineError::SecretUnreadable {
        key: key.to_owned(),
        path: file.to_owned(),
        source,
        span,
    };
    let mut start = Vec::with_capacity(64);
    std::fs::File::open(file)
        .and_then(|f| f.take(64).read_to_end(&mut start))
        .map_err(unreadable)?;
    if !AGE_HEADERS.iter().any(|header| start.starts_with(header)) {
        return Err(MachineError::SecretNotEncrypted {
            key: key.to_owned(),
            path: file.to_owned(),
            span,
        });
    }
    Ok(())
}

/// A program named `name` in the image: in the closure (`bin/`, `sbin/`,
/// `libexec/`), else a file `hostBinaries` names, one `copyToRoot` places, or an
/// executable the `hostBinaries` packages brought along (never their
/// `/etc/pam.d/sshd`, which is not a program).
fn find_program(input: &RootfsInput<'_>, search: &ClosureSearch<'_>, name: &str) -> Option<String> {
    let host = |brought: bool| {
        input
            .host_files
            .iter()
            .filter(move |f| match brought {
                false => f.brought_by.is_none(),
                true => f.brought_by.is_some() && f.link.is_none() && f.mode & 0o111 != 0,
            })
            .map(|file| file.image_path.clone())
    };
    ["bin", "sbin", "libexec"]
        .iter()
        .find_map(|dir| search.find(&format!("{dir}/{name}")))
        .or_else(|| {
            host(false)
                .chain(
                    input
                        .copy_to_root
                        .iter()
                        .map(|item| PathBuf::from(&item.dst)),
                )
                .chain(host(true))
                .find(|path| path.file_name().is_some_and(|file| file == name))
                .map(|path| path.to_string_lossy().into_owned())
        })
}

/// Fails when `user` (a name or uid) is a name the image's `/etc/passwd` lacks; a
/// uid needs no entry.
fn check_user(
    known: Option<&AccountTable>,
    key: &str,
    user: &Item<String>,
) -> Result<(), MachineError> {
    let numeric = user.value.bytes().all(|b| b.is_ascii_digit());
    match known {
        Some(known) if !numeric && !known.has_user(&user.value) => Err(MachineError::UnknownUser {
            key: key.to_owned(),
            user: user.value.clone(),
            span: user.span,
        }),
        _ => Ok(()),
    }
}

fn check_group(
    known: Option<&AccountTable>,
    key: &str,
    group: &Item<String>,
) -> Result<(), MachineError> {
    let numeric = group.value.bytes().all(|b| b.is_ascii_digit());
    match known {
        Some(known) if !numeric && !known.has_group(&group.value) => {
            Err(MachineError::UnknownGroup {
                key: key.to_owned(),
                group: group.value.clone(),
                span: group.span,
            })
        }
        _ => Ok(()),
    }
}
