//! The SSH step: host keys (generated once, kept when present), authorized keys from
//! the plan and the environment rented GPU hosts set, root's password only when the
//! plan allows password login, and sshd as a service; then, once the startup script has
//! run, the sshd config sshd is started with ([`write_session_config`]): the build's,
//! after a `SetEnv` line that hands SSH sessions the container's environment.

use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use gpubox_atomic::partial;
use gpubox_initplan::{variables, InitPlan, Restart, ServicePlan, SshPlan};
use sha_crypt::{PasswordHasher, ShaCrypt};

use super::files;
use super::{root_path, StepFailure};

/// Variables rented GPU hosts (RunPod, vast.ai, ...) put public keys in, one a line.
const KEY_VARIABLES: [&str; 2] = [variables::SSH_PUBLIC_KEYS, variables::PUBLIC_KEY];
pub const PASSWORD_VARIABLE: &str = "ROOT_PASSWORD";
const SHADOW: &str = "/etc/shadow";
/// The config sshd is started with, written at every start by [`write_session_config`].
const SESSION_CONFIG: &str = "/run/gpubox/sshd_config";
/// Variables sshd sets for each session itself (from the account and the client), or
/// that describe the init's own shell, which sessions must not get.
const SESSION_OWN_VARIABLES: [&str; 10] = [
    "HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "SHLVL", "_", "TERM", "MAIL",
];
/// The init's own settings (`GPUBOX_INIT_ROOT`, `GPUBOX_INIT_DEBUG`, ...).
const INIT_VARIABLE_PREFIX: &str = "GPUBOX_INIT_";

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(transparent)]
    Path(#[from] super::PathError),
    #[error("cannot run `{program}` to generate the {key_type} host key {}: {error}; add openssh to the image", path.display())]
    KeygenNotRun {
        program: String,
        key_type: String,
        path: PathBuf,
        error: io::Error,
    },
    #[error("`{program}` could not generate the {key_type} host key {} ({status}): {stderr}", path.display())]
    KeygenFailed {
        program: String,
        key_type: String,
        path: PathBuf,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("cannot hash {PASSWORD_VARIABLE}: {0}")]
    Hash(String),
    #[error("cannot read the image's sshd config {}: {error}; the image is damaged, rebuild it", path.display())]
    ConfigUnreadable { path: PathBuf, error: io::Error },
}

/// Runs the step; returns the sshd service.
pub fn run(plan: &SshPlan) -> Result<ServicePlan, SshError> {
    let key_dir = root_path(&plan.host_key_dir);
    files::create_dir_all(&key_dir, 0o755).map_err(super::PathError::new(
        "create the host key folder",
        &key_dir,
    ))?;
    for key_type in &plan.host_key_types {
        host_key(plan, &key_dir, key_type)?;
    }
    let keys = authorized_keys(plan, |name| std::env::var(name).ok());
    if keys.is_empty() {
        notice!(
            "no SSH public keys: set SSH_PUBLIC_KEYS (one key a line) or `ssh.authorizedKeys` to log in over SSH"
        );
    }
    let mut contents = keys.join("\n");
    if !contents.is_empty() {
        contents.push('\n');
    }
    for user in &plan.login_users {
        let path = root_path(&authorized_keys_path(&plan.authorized_keys_file, user));
        if let Some(parent) = path.parent() {
            files::create_dir_all(parent, 0o755).map_err(super::PathError::new(
                "create the authorized keys folder",
                parent,
            ))?;
        }
        files::write_atomic(&path, contents.as_bytes(), 0o644, None)
            .map_err(super::PathError::new("write authorized keys", &path))?;
    }
    root_password(plan.password_login)?;
    Ok(super::system_service(
        "sshd",
        vec![
            plan.sshd.clone(),
            "-D".to_owned(),
            "-e".to_owned(),
            "-f".to_owned(),
            root_path(SESSION_CONFIG).to_string_lossy().into_owned(),
        ],
        Restart::Always,
        super::SYSTEM_RESTART_DELAY_MS,
    ))
}

/// Writes the config sshd is started with when the plan has SSH: a `SetEnv` line with
/// the init's environment as it is now (after the startup script, so its exports are
/// in), then the build's config as it is. sshd builds each session's environment
/// afresh, and without this, SSH sessions would lack the image's PATH, the CUDA and
/// NVIDIA variables and what the startup script exported. sshd keeps the first value
/// it reads for a keyword, so the line comes first (and a `SetEnv` of the build's
/// config is not used); `SetEnv` needs OpenSSH 7.8 or later.
pub fn write_session_config(plan: &InitPlan) -> Result<(), StepFailure> {
    let Some(ssh) = &plan.ssh else {
        return Ok(());
    };
    let failed = |error: SshError| StepFailure::new("ssh", error);
    let build_config = root_path(&ssh.config);
    let build_text = std::fs::read_to_string(&build_config).map_err(|error| {
        failed(SshError::ConfigUnreadable {
            path: build_config.clone(),
            error,
        })
    })?;
    let environment = session_environment(std::env::vars_os());
    for reason in &environment.left_out {
        notice!("{reason}");
    }
    let mut contents = environment.line;
    contents.push_str(&build_text);
    let path = root_path(SESSION_CONFIG);
    if let Some(parent) = path.parent() {
        files::create_dir_all(parent, 0o755)
            .map_err(super::PathError::new(
                "create the sshd config folder",
                parent,
            ))
            .map_err(|error| failed(error.into()))?;
    }
    // Private to root (sshd reads it as root): the environment may hold tokens that
    // other users of the container must not read.
    files::write_atomic(&path, contents.as_bytes(), 0o600, None)
        .map_err(super::PathError::new("write the sshd config", &path))
        .map_err(|error| failed(error.into()))
}

/// What sessions get from the init's environment: the `SetEnv` line, and why each
/// variable that could not be passed on was left out.
#[derive(Debug, Default, PartialEq, Eq)]
struct SessionEnvironment {
    /// `SetEnv "NAME=VALUE" ...` and a line break, in name order; empty when there are no
    /// variables (sshd refuses a `SetEnv` without values).
    line: String,
    /// One sentence per variable left out, naming it.
    left_out: Vec<String>,
}

/// The `SetEnv` line for `variables`. Each `NAME=VALUE` is one double-quoted word, with
/// `"` and `\` written `\"` and `\\`: sshd splits the line as OpenSSH's `argv_split`
/// does, which reads those escapes inside quotes, so any value passes but one holding a
/// line break (a config line cannot) or not UTF-8. Those are left out and named, never
/// dropped silently. The session's own variables (`HOME`, `USER`, ...) are not passed.
fn session_environment(
    variables: impl IntoIterator<Item = (impl AsRef<OsStr>, impl AsRef<OsStr>)>,
) -> SessionEnvironment {
    let mut words: Vec<(String, String)> = Vec::new();
    let mut left_out = Vec::new();
    for (name, value) in variables {
        let (name, value) = (name.as_ref(), value.as_ref());
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            left_out.push(format!(
                "{} is not passed to SSH sessions: sshd_config holds UTF-8 text only",
                name.to_string_lossy().escape_debug()
            ));
            continue;
        };
        if SESSION_OWN_VARIABLES.contains(&name) || name.starts_with(INIT_VARIABLE_PREFIX) {
            continue;
        }
        let line_break = |c: char| matches!(c, '\n' | '\r');
        if name.is_empty() || name.contains(line_break) || value.contains(line_break) {
            left_out.push(format!(
                "{} is not passed to SSH sessions: its value holds a line break, which an \
                 sshd_config line cannot; services still get it",
                name.escape_debug()
            ));
            continue;
        }
        words.push((name.to_owned(), value.to_owned()));
    }
    if words.is_empty() {
        return SessionEnvironment {
            line: String::new(),
            left_out,
        };
    }
    words.sort();
    let mut line = "SetEnv".to_owned();
    for (name, value) in words {
        let word = format!("{name}={value}")
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        line.push_str(&format!(" \"{word}\""));
    }
    line.push('\n');
    SessionEnvironment { line, left_out }
}

/// Generates the host key of `key_type` when missing (ssh-keygen writes it under an
/// unfinished name, and it is saved from there through [`files::write_atomic`]); a key
/// already there (a mounted volume) is kept, made private to root if it was not, since
/// sshd refuses a key others can read.
fn host_key(plan: &SshPlan, key_dir: &Path, key_type: &str) -> Result<(), SshError> {
    let path = key_dir.join(format!("ssh_host_{key_type}_key"));
    if path.exists() {
        let mode = std::fs::metadata(&path)
            .map_err(super::PathError::new("read host key", &path))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(super::PathError::new("make the host key private", &path))?;
        }
        return Ok(());
    }
    // What a start killed mid-generation left; the init is PID 1 every time.
    partial::remove_own(key_dir);
    let generated = key_dir.join(partial::unique_name());
    let output = Command::new(&plan.ssh_keygen)
        .args(["-q", "-t", key_type, "-N", "", "-C", "", "-f"])
        .arg(&generated)
        .output();
    let saved = match output {
        Err(error) => Err(SshError::KeygenNotRun {
            program: plan.ssh_keygen.clone(),
            key_type: key_type.to_owned(),
            path: path.clone(),
            error,
        }),
        Ok(output) if !output.status.success() => Err(SshError::KeygenFailed {
            program: plan.ssh_keygen.clone(),
            key_type: key_type.to_owned(),
            path: path.clone(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        }),
        Ok(_) => save_host_key(&generated, &path),
    };
    let _ = std::fs::remove_file(&generated);
    let _ = std::fs::remove_file(with_pub(&generated));
    saved
}

/// Saves the key pair ssh-keygen wrote at `generated` (and `.pub`) to `path`, the
/// public half first: the private key's presence is what says "generated".
fn save_host_key(generated: &Path, path: &Path) -> Result<(), SshError> {
    let read = |file: &Path| {
        std::fs::read(file).map_err(super::PathError::new("read the generated host key", file))
    };
    let public = read(&with_pub(generated))?;
    let private = read(generated)?;
    files::write_atomic(&with_pub(path), &public, 0o644, None)
        .map_err(super::PathError::new("save host key", path))?;
    files::write_atomic(path, &private, 0o600, None)
        .map_err(super::PathError::new("save host key", path))?;
    Ok(())
}

fn with_pub(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// `AuthorizedKeysFile`'s tokens: `%u` the user, `%%` a percent sign.
fn authorized_keys_path(pattern: &str, user: &str) -> String {
    pattern
        .split("%%")
        .map(|part| part.replace("%u", user))
        .collect::<Vec<_>>()
        .join("%")
}

/// The plan's keys, then those of [`KEY_VARIABLES`], each once, in that order. Lines
/// that are not public keys are skipped with a notice naming where they came from.
fn authorized_keys(plan: &SshPlan, var: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let mut add = |source: &str, text: &str| {
        for key in parse_keys(source, text) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    };
    for key in &plan.authorized_keys {
        add("ssh.authorizedKeys", key);
    }
    for variable in KEY_VARIABLES {
        if let Some(value) = var(variable) {
            add(variable, &value);
        }
    }
    keys
}

/// Keys in `text`, one a line. Liberal about what hosts and web forms produce: `\r`,
/// literal `\n` sequences, and several keys on one line separated by commas.
fn parse_keys(source: &str, text: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let text = text.replace("\\n", "\n");
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Several keys split by commas read as one key whose comment holds the others,
        // so the split is tried first; options (`no-pty,from=...`) are not keys.
        let pieces: Vec<&str> = line
            .split(',')
            .map(str::trim)
            .filter(|piece| !piece.is_empty())
            .collect();
        if pieces.len() > 1 && pieces.iter().all(|piece| is_public_key(piece)) {
            keys.extend(pieces.into_iter().map(str::to_owned));
        } else if is_public_key(line) {
            keys.push(line.to_owned());
        } else {
            notice!(
                "skipping line {} of {source}: it is not an SSH public key (`TYPE BASE64 [COMMENT]`)",
                number + 1
            );
        }
    }
    keys
}

/// Whether `line` is an authorized-keys line: optional options, then a key type and
/// its base64 blob, which must name the same type (as every SSH key blob does).
fn is_public_key(line: &str) -> bool {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    tokens.windows(2).any(|pair| {
        let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(pair[1]) else {
            return false;
        };
        let type_name = pair[0].as_bytes();
        blob.len() >= 4 + type_name.len()
            && blob[..4] == u32::try_from(type_name.len()).unwrap_or(0).to_be_bytes()
            && &blob[4..4 + type_name.len()] == type_name
    })
}

/// Sets root's password from `ROOT_PASSWORD` when password login is on; otherwise the
/// variable is ignored (key-only is the default, and a password from the environment
/// must not quietly open the machine).
fn root_password(password_login: bool) -> Result<(), SshError> {
    let Some(password) = std::env::var(PASSWORD_VARIABLE)
        .ok()
        .filter(|password| !password.is_empty())
    else {
        return Ok(());
    };
    if !password_login {
        notice!(
            "ignoring {PASSWORD_VARIABLE}: password login is off; log in with a key from SSH_PUBLIC_KEYS, or set `ssh.passwordLogin = true`"
        );
        return Ok(());
    }
    // 12 random bytes make the 16-character salt glibc uses: with a longer one its
    // crypt(3) truncates the salt and the stored hash never compares equal.
    let mut salt = [0u8; 12];
    // SAFETY: getrandom writes at most `salt.len()` bytes into `salt`.
    let filled = unsafe { libc::getrandom(salt.as_mut_ptr().cast(), salt.len(), 0) };
    if usize::try_from(filled).ok() != Some(salt.len()) {
        return Err(SshError::Hash(format!(
            "no random salt: {}",
            io::Error::last_os_error()
        )));
    }
    let hash = ShaCrypt::SHA512
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|error| SshError::Hash(error.to_string()))?;
    set_shadow_password(&root_path(SHADOW), "root", hash.as_str())
}

/// Replaces `user`'s password field in the shadow file (adding the entry, or the file,
/// when missing), keeping the file's permissions and owner.
fn set_shadow_password(path: &Path, user: &str, hash: &str) -> Result<(), SshError> {
    let (text, mode, owner) = match std::fs::metadata(path) {
        Ok(metadata) => {
            let text = std::fs::read_to_string(path)
                .map_err(super::PathError::new("read the shadow file", path))?;
            (
                text,
                metadata.mode() & 0o7777,
                Some((metadata.uid(), metadata.gid())),
            )
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => (String::new(), 0o600, None),
        Err(error) => return Err(super::PathError::new("read the shadow file", path)(error).into()),
    };
    let prefix = format!("{user}:");
    let mut found = false;
    let mut lines: Vec<String> = text
        .lines()
        .map(|line| match line.strip_prefix(&prefix) {
            Some(rest) => {
                found = true;
                let after_password = rest.split_once(':').map_or("", |(_, after)| after);
                format!("{user}:{hash}:{after_password}")
            }
            None => line.to_owned(),
        })
        .collect();
    if !found {
        lines.push(format!("{user}:{hash}:0:0:99999:7:::"));
    }
    let mut contents = lines.join("\n");
    contents.push('\n');
    files::write_atomic(path, contents.as_bytes(), mode, owner)
        .map_err(super::PathError::new("write the shadow file", path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHqc9cUbnFbAxFgMbgwMLOWs6HrtA6bzlbtgSLHJZ6CH alice@laptop";
    const RSA_START: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC";

    #[test]
    fn key_lines_are_recognised_with_options_and_refused_otherwise() {
        assert!(is_public_key(ED25519));
        assert!(is_public_key(&format!(
            "no-pty,from=\"10.0.0.1\" {ED25519}"
        )));
        assert!(!is_public_key("ssh-ed25519 not-base64 comment"));
        // A valid blob under another type name is not a key of that type.
        assert!(!is_public_key(&ED25519.replace("ssh-ed25519", "ssh-rsa")));
        assert!(!is_public_key(RSA_START));
        assert!(!is_public_key("-----BEGIN OPENSSH PRIVATE KEY-----"));
    }

    #[test]
    fn keys_come_one_a_line_or_comma_separated() {
        let second = ED25519.replace("alice@laptop", "bob");
        let text = format!("{ED25519}\r\n\n# comment\n{ED25519}, {second}\\nnonsense\n");
        let keys = parse_keys("SSH_PUBLIC_KEYS", &text);
        assert_eq!(keys, [ED25519, ED25519, &second]);
    }

    #[test]
    fn plan_and_environment_keys_are_merged_once_each() {
        let second = ED25519.replace("alice@laptop", "bob");
        let plan = SshPlan {
            sshd: "/bin/sshd".to_owned(),
            ssh_keygen: "/bin/ssh-keygen".to_owned(),
            config: "/etc/ssh/sshd_config".to_owned(),
            host_key_dir: "/etc/ssh".to_owned(),
            host_key_types: vec!["ed25519".to_owned()],
            authorized_keys: vec![ED25519.to_owned()],
            login_users: vec!["root".to_owned()],
            authorized_keys_file: "/etc/ssh/authorized_keys.d/%u".to_owned(),
            password_login: false,
        };
        let keys = authorized_keys(&plan, |name| match name {
            "SSH_PUBLIC_KEYS" => Some(format!("{ED25519}\n{second}")),
            "PUBLIC_KEY" => Some(second.clone()),
            _ => None,
        });
        assert_eq!(keys, [ED25519, &second]);
    }

    #[test]
    fn session_environment_passes_every_value_a_config_line_can_hold() {
        use std::os::unix::ffi::OsStrExt;
        let not_utf8 = OsStr::from_bytes(b"\xff");
        let environment = session_environment([
            (
                OsStr::new("PATH"),
                OsStr::new("/nix/store/abc-python/bin:/usr/bin"),
            ),
            (OsStr::new("CUDA_VERSION"), OsStr::new("12.4")),
            (OsStr::new("GREETING"), OsStr::new("hello world=1")),
            (OsStr::new("HOME"), OsStr::new("/root")),
            (OsStr::new("SHLVL"), OsStr::new("1")),
            (OsStr::new("_"), OsStr::new("/bin/gpubox-init")),
            (OsStr::new("GPUBOX_INIT_ROOT"), OsStr::new("/tmp/root")),
            (OsStr::new("TOKEN"), OsStr::new("a b\"c\\d")),
            (OsStr::new("COMMENT"), OsStr::new("#not a comment")),
            (OsStr::new("MULTI"), OsStr::new("one\ntwo")),
            (OsStr::new("BYTES"), not_utf8),
        ]);
        assert_eq!(
            environment.line,
            "SetEnv \"COMMENT=#not a comment\" \"CUDA_VERSION=12.4\" \"GREETING=hello world=1\" \
             \"PATH=/nix/store/abc-python/bin:/usr/bin\" \"TOKEN=a b\\\"c\\\\d\"\n"
        );
        assert_eq!(environment.left_out.len(), 2, "{:?}", environment.left_out);
        assert!(environment.left_out[0]
            .starts_with("MULTI is not passed to SSH sessions: its value holds a line break"));
        assert!(environment.left_out[1].starts_with("BYTES is not passed"));
        let no_variables: [(&str, &str); 1] = [("HOME", "/root")];
        assert_eq!(
            session_environment(no_variables),
            SessionEnvironment::default()
        );
    }

    #[test]
    fn authorized_keys_path_replaces_the_user_token() {
        assert_eq!(
            authorized_keys_path("/etc/ssh/authorized_keys.d/%u", "root"),
            "/etc/ssh/authorized_keys.d/root"
        );
        assert_eq!(authorized_keys_path("/k/%%u-%u", "ann"), "/k/%u-ann");
    }

    #[test]
    fn the_shadow_entry_gets_the_hash_and_keeps_its_other_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shadow");
        std::fs::write(&path, "root:*:19000:0:99999:7:::\nnobody:!:19000::::::\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        set_shadow_password(&path, "root", "$6$salt$hash").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "root:$6$salt$hash:19000:0:99999:7:::\nnobody:!:19000::::::\n"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o640);
        let missing = dir.path().join("new-shadow");
        set_shadow_password(&missing, "root", "$6$s$h").unwrap();
        assert_eq!(
            std::fs::read_to_string(&missing).unwrap(),
            "root:$6$s$h:0:0:99999:7:::\n"
        );
    }
}
