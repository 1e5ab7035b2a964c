//! The keys and secrets a deployment hands to `gpubox-init`, read from the files or
//! environment variables the user names, checked, and never put into the image.

use std::path::PathBuf;
use std::str::FromStr;

use gpubox_initplan::variables;

use crate::workload::{NeededSecret, Workload};
use crate::{DeployError, Target};

/// Where a value comes from: `FILE`, or `env:NAME` for a variable of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

impl FromStr for SecretSource {
    type Err = String;

    fn from_str(text: &str) -> Result<SecretSource, String> {
        match text.strip_prefix("env:") {
            Some("") => Err("`env:` needs a variable's name, e.g. env:SSH_PUBLIC_KEYS".to_owned()),
            Some(name) => Ok(SecretSource::Env(name.to_owned())),
            None if text.is_empty() => Err("name a file, or env:NAME".to_owned()),
            None => Ok(SecretSource::File(PathBuf::from(text))),
        }
    }
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(path) => write!(f, "{}", path.display()),
            SecretSource::Env(name) => write!(f, "${name}"),
        }
    }
}

/// The sources the user named, by what they hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretSources {
    /// `--ssh-keys`: authorized keys (`SSH_PUBLIC_KEYS`).
    pub ssh_keys: Option<SecretSource>,
    /// `--age-identity`: an age identity or SSH private key (`AGE_IDENTITY`).
    pub age_identity: Option<SecretSource>,
    /// `--tailscale-authkey`: tailscale's auth key (`TAILSCALE_AUTHKEY`).
    pub tailscale_authkey: Option<SecretSource>,
}

/// A value read and checked, with the variable it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretValue {
    pub variable: &'static str,
    pub value: String,
}

/// Each variable a deployment hands to the init, the `gpubox deploy` option that
/// gives it, and the spec keys that make the init read it.
const SECRET_VARIABLES: [(&str, &str, &str); 3] = [
    (variables::SSH_PUBLIC_KEYS, "--ssh-keys", "ssh.enable"),
    (variables::AGE_IDENTITY, "--age-identity", "age.secrets"),
    (
        variables::TAILSCALE_AUTHKEY,
        "--tailscale-authkey",
        "tailscale.enable",
    ),
];

/// The option that gives `variable`.
pub(crate) fn option_for(variable: &str) -> &'static str {
    SECRET_VARIABLES
        .iter()
        .find(|(known, _, _)| *known == variable)
        .map_or("", |(_, option, _)| option)
}

impl SecretSources {
    fn source(&self, variable: &str) -> Option<&SecretSource> {
        match variable {
            variables::SSH_PUBLIC_KEYS => self.ssh_keys.as_ref(),
            variables::AGE_IDENTITY => self.age_identity.as_ref(),
            variables::TAILSCALE_AUTHKEY => self.tailscale_authkey.as_ref(),
            _ => None,
        }
    }

    /// Reads every value `workload` can use; refuses when one it requires is not
    /// given, except the SSH keys on RunPod, which sets `PUBLIC_KEY` from the account.
    /// A source given for something the spec does not use is refused too, so nothing
    /// the user passed is dropped unseen.
    pub fn read_for(
        &self,
        workload: &Workload,
        target: Target,
    ) -> Result<Vec<SecretValue>, DeployError> {
        for (variable, option, enabled_by) in SECRET_VARIABLES {
            let unused = !workload.secrets.iter().any(|n| n.variable == variable);
            if let (Some(source), true) = (self.source(variable), unused) {
                return Err(DeployError::UnusedSecret {
                    option,
                    source_name: source.to_string(),
                    variable,
                    enabled_by,
                });
            }
        }
        let mut values = Vec::new();
        for needed in &workload.secrets {
            match self.source(needed.variable) {
                Some(source) => values.push(SecretValue {
                    variable: needed.variable,
                    value: read(needed, source, target)?,
                }),
                None if needed.required && !provided_by(target, needed.variable) => {
                    return Err(missing(workload, needed));
                }
                None => {}
            }
        }
        Ok(values)
    }
}

/// Whether `target` sets `variable` itself.
fn provided_by(target: Target, variable: &str) -> bool {
    target == Target::Runpod && variable == variables::SSH_PUBLIC_KEYS
}

fn missing(workload: &Workload, needed: &NeededSecret) -> DeployError {
    DeployError::MissingSecret {
        source_name: workload.source.clone(),
        variable: needed.variable,
        why: needed.why.clone(),
        fix: format!(
            "pass {option} FILE (or {option} env:NAME to read a variable); the value goes into the deployment's Secret or environment, never into the image",
            option = option_for(needed.variable)
        ),
    }
}

/// Reads and checks one value, trimmed, for `target`.
fn read(
    needed: &NeededSecret,
    source: &SecretSource,
    target: Target,
) -> Result<String, DeployError> {
    let option = option_for(needed.variable);
    let fail = |reason: String, fix: &str| DeployError::SecretSource {
        variable: needed.variable,
        source_name: source.to_string(),
        reason,
        fix: fix.to_owned(),
    };
    let text = match source {
        SecretSource::File(path) => std::fs::read_to_string(path).map_err(|error| {
            fail(
                error.to_string(),
                &format!("check the path given to {option}"),
            )
        })?,
        SecretSource::Env(name) => std::env::var(name).map_err(|_| {
            fail(
                "the variable is not set (or not UTF-8)".to_owned(),
                &format!("export {name}, or give {option} a file"),
            )
        })?,
    };
    let text = text.trim().to_owned();
    // vast.ai splits its `env` at quotes without escapes: one `'` would end the value
    // and swallow every flag after it.
    if target == Target::Vast && text.contains('\'') {
        return Err(fail(
            "it holds a `'`, which vast.ai's `env` cannot carry".to_owned(),
            "remove the quote (from an SSH key's comment, say), or set the value in the instance",
        ));
    }
    if text.is_empty() {
        return Err(fail(
            "it is empty".to_owned(),
            "give a file or variable that holds the value",
        ));
    }
    match needed.variable {
        variables::SSH_PUBLIC_KEYS => {
            if text.contains("PRIVATE KEY") {
                return Err(fail(
                    "it holds a private key".to_owned(),
                    "give the public key (the `.pub` file); a private key must never leave your machine",
                ));
            }
            let keys: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .collect();
            if keys.iter().any(|line| !looks_like_public_key(line)) {
                return Err(fail(
                    "a line is not an SSH public key (`TYPE BASE64 [COMMENT]`)".to_owned(),
                    "give an authorized_keys file or a `.pub` file",
                ));
            }
            Ok(keys.join("\n"))
        }
        variables::AGE_IDENTITY => {
            if !text.contains("AGE-SECRET-KEY-") && !text.contains("-----BEGIN") {
                return Err(fail(
                    "it is neither an age identity (AGE-SECRET-KEY-1…) nor an SSH private key".to_owned(),
                    "give the identity file made by `age-keygen`, or an unencrypted SSH private key",
                ));
            }
            // An age identity file's comments (creation time, public key) are not
            // needed to decrypt, and would only lengthen the variable.
            if text.contains("AGE-SECRET-KEY-") {
                return Ok(text
                    .lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty() && !line.starts_with('#'))
                    .collect::<Vec<_>>()
                    .join("\n"));
            }
            Ok(text)
        }
        _ => {
            if text.lines().count() > 1 {
                return Err(fail(
                    "it holds more than one line".to_owned(),
                    "give a file holding only the auth key (tskey-…)",
                ));
            }
            Ok(text)
        }
    }
}

/// `[OPTIONS ]TYPE BASE64[ COMMENT]` with a key type sshd knows.
fn looks_like_public_key(line: &str) -> bool {
    line.split_whitespace().any(|word| {
        word.starts_with("ssh-") || word.starts_with("ecdsa-sha2-") || word.starts_with("sk-")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!("env:KEYS".parse(), Ok(SecretSource::Env("KEYS".to_owned())));
        assert_eq!(
            "keys.pub".parse(),
            Ok(SecretSource::File(PathBuf::from("keys.pub")))
        );
        assert!("env:".parse::<SecretSource>().is_err());
    }

    #[test]
    fn public_keys_are_told_from_private_ones() {
        assert!(looks_like_public_key("ssh-ed25519 AAAAC3Nza me@host"));
        assert!(looks_like_public_key("no-pty ssh-rsa AAAAB3 me"));
        assert!(!looks_like_public_key("AGE-SECRET-KEY-1XYZ"));
    }
}
