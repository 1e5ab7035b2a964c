//! The files that let `gpubox-init` run the container as a machine, and the plan it
//! follows ([`gpubox_initplan::InitPlan`] at [`PLAN_PATH`]): accounts
//! (`/etc/passwd`, `/etc/group`, `/etc/shadow`), the default `sshd_config`, the
//! encrypted secrets, the start-up script, `/etc/nix/nix.conf` and the Nix database.
//!
//! Config `User`: when the spec's `user` is not root and the plan has work that needs
//! root (accounts, SSH, secrets, tailscale, services, home), the image's config
//! `User` stays root and the plan's `mainUser` names the spec's user; the init drops
//! to it for the main command.
//!
//! Passwords are locked (`*` in `/etc/shadow`, which still allows key login); a
//! secret file must be age ciphertext, checked here, so no plaintext reaches a layer.

use std::collections::{BTreeMap, BTreeSet};
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

use crate::base::{merge_lines, ClosureSearch};
use crate::tree::{Origin, Tree};
use crate::{image_path, RootfsError, RootfsInput};

/// The first uid (and gid) handed to accounts gpubox invents.
const FIRST_ACCOUNT_ID: u32 = 1000;
/// The uid and gid of sshd's privilege-separation account, as Fedora and NixOS use.
const SSHD_ID: u32 = 74;
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

/// One account gpubox writes, as a passwd line's fields.
struct Account {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
    shell: String,
}

/// The accounts the machine keys add: root, nobody, the spec's `user` when it is a
/// name no entry has, `users.<name>`, and `sshd` with SSH on.
struct Accounts {
    accounts: Vec<Account>,
    /// Group name, gid and members, in gid order.
    groups: Vec<(String, u32, Vec<String>)>,
    /// Accounts whose home the init prepares.
    homes: Vec<AccountPlan>,
}

/// `base_passwd` and `base_group`: a base image's files, whose ids new accounts avoid.
fn accounts(input: &RootfsInput<'_>, base_passwd: &str, base_group: &str) -> Accounts {
    let machine = input.machine;
    let id_field = |text: &str| -> Vec<u32> {
        text.lines()
            .filter_map(|line| line.split(':').nth(2)?.parse().ok())
            .collect()
    };
    let mut used: BTreeSet<u32> = id_field(base_passwd)
        .into_iter()
        .chain(id_field(base_group))
        .collect();
    let mut accounts = vec![
        Account {
            name: "root".to_owned(),
            uid: 0,
            gid: 0,
            home: "/root".to_owned(),
            shell: "/bin/sh".to_owned(),
        },
        Account {
            name: "nobody".to_owned(),
            uid: 65534,
            gid: 65534,
            home: "/nonexistent".to_owned(),
            shell: "/bin/false".to_owned(),
        },
    ];
    let mut groups: BTreeMap<String, (u32, BTreeSet<String>)> = BTreeMap::from([
        ("root".to_owned(), (0, BTreeSet::new())),
        ("nogroup".to_owned(), (65534, BTreeSet::new())),
    ]);
    let mut homes = Vec::new();
    for user in &machine.users {
        let user = &user.value;
        used.extend([user.uid, user.gid]);
        accounts.push(Account {
            name: user.name.clone(),
            uid: user.uid,
            gid: user.gid,
            home: user.home.clone(),
            shell: user.shell.clone(),
        });
        groups
            .entry(user.group.clone())
            .or_insert((user.gid, BTreeSet::new()));
        homes.push(AccountPlan {
            name: user.name.clone(),
            uid: user.uid,
            gid: user.gid,
            home: user.home.clone(),
        });
    }
    let base_has = |name: &str| {
        base_passwd
            .lines()
            .any(|line| line.split(':').next() == Some(name))
    };
    let mut add = |name: &str, start: u32, home: &str, shell: &str, used: &mut BTreeSet<u32>| {
        let id = free_id(used, start);
        used.insert(id);
        accounts.push(Account {
            name: name.to_owned(),
            uid: id,
            gid: id,
            home: home.to_owned(),
            shell: shell.to_owned(),
        });
        groups.insert(name.to_owned(), (id, BTreeSet::new()));
        id
    };
    if let Some(name) = named_user(input.user) {
        if !machine.users.iter().any(|user| user.value.name == name) && !base_has(name) {
            let home = format!("/home/{name}");
            let id = add(name, FIRST_ACCOUNT_ID, &home, "/bin/sh", &mut used);
            homes.push(AccountPlan {
                name: name.to_owned(),
                uid: id,
                gid: id,
                home,
            });
        }
    }
    if machine.ssh.enable && !base_has("sshd") {
        add("sshd", SSHD_ID, "/var/empty", "/bin/false", &mut used);
    }
    // Supplementary groups: a name no account has yet becomes a group of its own.
    for user in &machine.users {
        for group in &user.value.groups {
            if !groups.contains_key(group) {
                let gid = free_id(&used, FIRST_ACCOUNT_ID);
                used.insert(gid);
                groups.insert(group.clone(), (gid, BTreeSet::new()));
            }
            if let Some((_, members)) = groups.get_mut(group) {
                members.insert(user.value.name.clone());
            }
        }
    }
    let mut groups: Vec<(String, u32, Vec<String>)> = groups
        .into_iter()
        .map(|(name, (gid, members))| (name, gid, members.into_iter().collect()))
        .collect();
    groups.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    Accounts {
        accounts,
        groups,
        homes,
    }
}

/// The smallest id from `start` up that `used` lacks.
fn free_id(used: &BTreeSet<u32>, start: u32) -> u32 {
    (start..).find(|id| !used.contains(id)).unwrap_or(start)
}

/// The spec's `user` when it is an account name other than root (not a uid, not
/// `name:group`), which then needs an account.
fn named_user(user: &str) -> Option<&str> {
    let is_name = !user.is_empty()
        && !user.contains(':')
        && !user.bytes().all(|b| b.is_ascii_digit())
        && user != "root"
        && user != "nobody";
    is_name.then_some(user)
}

/// Whether `user` (`NAME`, `UID`, `NAME:GROUP`) is root.
fn is_root(user: &str) -> bool {
    matches!(user.split(':').next(), Some("root" | "0"))
}

fn text_of(file: Option<&LayerFile>) -> &str {
    match file {
        Some(LayerFile::Text(text)) => text,
        _ => "",
    }
}

/// With `users.<name>` or SSH on: `/etc/passwd`, `/etc/group` (a base image's kept,
/// with the missing accounts appended), `/etc/shadow` (without a base's passwd) and
/// the accounts' home folders, as defaults a user source can replace. Runs before
/// the generated base files, which then leave these paths alone; without these
/// keys it writes nothing and the base files decide.
pub(crate) fn add_accounts(
    tree: &mut Tree,
    input: &RootfsInput<'_>,
    base_files: &BTreeMap<String, LayerFile>,
) -> Result<(), RootfsError> {
    let machine = input.machine;
    if machine.users.is_empty() && !machine.ssh.enable {
        return Ok(());
    }
    let path = |raw: &str| image_path(raw.trim_start_matches('/'), &Origin::Generated);
    let (base_passwd, base_group) = (base_files.get("etc/passwd"), base_files.get("etc/group"));
    let generated = accounts(input, text_of(base_passwd), text_of(base_group));
    let passwd_lines: Vec<(String, String)> = generated
        .accounts
        .iter()
        .map(|a| {
            let line = format!(
                "{0}:x:{1}:{2}:{0}:{3}:{4}",
                a.name, a.uid, a.gid, a.home, a.shell
            );
            (a.name.clone(), line)
        })
        .collect();
    let group_lines: Vec<(String, String)> = generated
        .groups
        .iter()
        .map(|(name, gid, members)| {
            (
                name.clone(),
                format!("{name}:x:{gid}:{}", members.join(",")),
            )
        })
        .collect();
    for plan in &generated.homes {
        let mut entry = Entry::directory(path(&plan.home)?, 0o755);
        entry.uid = plan.uid;
        entry.gid = plan.gid;
        tree.insert_default(entry);
    }
    for (file, base, lines) in [
        ("etc/passwd", base_passwd, &passwd_lines),
        ("etc/group", base_group, &group_lines),
    ] {
        if let Some(text) = merge_lines(base, text_of(base), lines) {
            tree.insert_default(Entry::bytes(path(file)?, 0o644, text.into_bytes()));
        }
    }
    if base_passwd.is_none() {
        // `*`: no password works, yet sshd still lets keys in (`!` would lock it).
        let shadow: String = generated
            .accounts
            .iter()
            .map(|account| format!("{}:*:::::::\n", account.name))
            .collect();
        tree.insert_default(Entry::bytes(
            path("etc/shadow")?,
            0o600,
            shadow.into_bytes(),
        ));
    }
    Ok(())
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
/// or `None` when the spec asks the init for nothing.
pub(crate) fn add_machine(
    tree: &mut Tree,
    input: &RootfsInput<'_>,
    base_files: &BTreeMap<String, LayerFile>,
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
    let known = ImageAccounts::read(tree, base_files);
    let (_, main_user) = config_user(machine, input.user);
    let mut plan = InitPlan::new(machine.stop_timeout_ms);
    plan.main_user = main_user;
    plan.users = accounts(
        input,
        text_of(base_files.get("etc/passwd")),
        text_of(base_files.get("etc/group")),
    )
    .homes;
    let search = ClosureSearch::new(input);

    if machine.ssh.enable {
        plan.ssh = Some(add_ssh(tree, input, &search)?);
    }
    plan.secrets = add_secrets(tree, input, known.as_ref())?;
    if machine.tailscale.enable {
        let find = |program| {
            find_program(input, &search, program).ok_or(MachineError::ProgramMissing {
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
    known: Option<&ImageAccounts>,
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
/// `libexec/`), else placed by `hostBinaries` or `copyToRoot`.
fn find_program(input: &RootfsInput<'_>, search: &ClosureSearch<'_>, name: &str) -> Option<String> {
    ["bin", "sbin", "libexec"]
        .iter()
        .find_map(|dir| search.find(&format!("{dir}/{name}")))
        .or_else(|| {
            input
                .host_files
                .iter()
                .map(|file| file.image_path.clone())
                .chain(
                    input
                        .copy_to_root
                        .iter()
                        .map(|item| PathBuf::from(&item.dst)),
                )
                .find(|path| path.file_name().is_some_and(|file| file == name))
                .map(|path| path.to_string_lossy().into_owned())
        })
}

/// The image's accounts and groups as its `/etc/passwd` and `/etc/group` say.
struct ImageAccounts {
    /// Name, uid and primary gid.
    users: Vec<(String, String, String)>,
    /// Name and gid.
    groups: Vec<(String, String)>,
}

impl ImageAccounts {
    /// The top layer's files, else the base image's; `None` when neither has an
    /// `/etc/passwd` gpubox can read, so names cannot be checked here.
    fn read(tree: &Tree, base_files: &BTreeMap<String, LayerFile>) -> Option<ImageAccounts> {
        let text = |file: &str| -> Option<String> {
            let Some(entry) = tree.get(&image_path(file, &Origin::Generated).ok()?) else {
                return match base_files.get(file) {
                    Some(LayerFile::Text(text)) => Some(text.clone()),
                    _ => None,
                };
            };
            match &entry.kind {
                EntryKind::File {
                    source: FileSource::Bytes(bytes),
                    ..
                } => Some(String::from_utf8_lossy(bytes).into_owned()),
                EntryKind::File {
                    source: FileSource::Path(path),
                    ..
                } => std::fs::read_to_string(path).ok(),
                _ => None,
            }
        };
        let fields = |text: String, count: usize| -> Vec<Vec<String>> {
            text.lines()
                .map(|line| {
                    line.split(':')
                        .take(count)
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .filter(|fields| fields.len() == count)
                .collect()
        };
        let users = fields(text("etc/passwd")?, 4)
            .into_iter()
            .map(|f| (f[0].clone(), f[2].clone(), f[3].clone()))
            .collect();
        let groups = fields(text("etc/group").unwrap_or_default(), 3)
            .into_iter()
            .map(|f| (f[0].clone(), f[2].clone()))
            .collect();
        Some(ImageAccounts { users, groups })
    }

    fn primary_group(&self, user: &str) -> Option<String> {
        let (_, _, gid) = self
            .users
            .iter()
            .find(|(name, uid, _)| name == user || uid == user)?;
        self.groups
            .iter()
            .find(|(_, group_gid)| group_gid == gid)
            .map(|(name, _)| name.clone())
    }
}

/// Fails when `user` (a name or uid) is a name the image's `/etc/passwd` lacks; a
/// uid needs no entry.
fn check_user(
    known: Option<&ImageAccounts>,
    key: &str,
    user: &Item<String>,
) -> Result<(), MachineError> {
    let numeric = user.value.bytes().all(|b| b.is_ascii_digit());
    match known {
        Some(known) if !numeric && !known.users.iter().any(|(name, _, _)| *name == user.value) => {
            Err(MachineError::UnknownUser {
                key: key.to_owned(),
                user: user.value.clone(),
                span: user.span,
            })
        }
        _ => Ok(()),
    }
}

fn check_group(
    known: Option<&ImageAccounts>,
    key: &str,
    group: &Item<String>,
) -> Result<(), MachineError> {
    let numeric = group.value.bytes().all(|b| b.is_ascii_digit());
    match known {
        Some(known) if !numeric && !known.groups.iter().any(|(name, _)| *name == group.value) => {
            Err(MachineError::UnknownGroup {
                key: key.to_owned(),
                group: group.value.clone(),
                span: group.span,
            })
        }
        _ => Ok(()),
    }
}
