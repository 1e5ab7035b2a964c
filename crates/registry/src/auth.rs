//! Registry logins: explicit `USER:PASS`, the `auths` entries of podman's and
//! Docker's auth files, and Docker credential helpers (`credHelpers`,
//! `credsStore`) that those files name.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;

use crate::session::{PushError, PushOptions};

/// A user name and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.username)
    }
}

impl FromStr for Credentials {
    type Err = PushError;

    /// Parses `USER:PASS`.
    fn from_str(given: &str) -> Result<Credentials, PushError> {
        match given.split_once(':') {
            Some((user, pass)) if !user.is_empty() => Ok(Credentials {
                username: user.to_owned(),
                password: pass.to_owned(),
            }),
            _ => Err(PushError::BadCredentials),
        }
    }
}

/// The login gpubox uses for a registry and where it came from, so errors
/// can say whose login was refused without showing the secret.
#[derive(Clone, Debug)]
pub(crate) struct Login {
    pub auth: RegistryAuth,
    /// The user name, or `None` when anonymous or an identity token.
    pub username: Option<String>,
}

impl Login {
    pub fn anonymous(&self) -> bool {
        matches!(self.auth, RegistryAuth::Anonymous)
    }

    fn basic(creds: Credentials) -> Login {
        Login {
            username: Some(creds.username.clone()),
            auth: RegistryAuth::Basic(creds.username, creds.password),
        }
    }
}

/// Where users keep registry logins, in the order podman and skopeo read them:
/// `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`, then
/// Docker's `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. All share
/// the `auths` format.
pub fn default_auth_files() -> Vec<PathBuf> {
    auth_files_from(|name| std::env::var_os(name))
}

fn auth_files_from(lookup: impl Fn(&str) -> Option<std::ffi::OsString>) -> Vec<PathBuf> {
    let var = |name| lookup(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut files = Vec::new();
    files.extend(var("REGISTRY_AUTH_FILE"));
    files.extend(var("XDG_RUNTIME_DIR").map(|dir| dir.join("containers/auth.json")));
    match var("DOCKER_CONFIG") {
        Some(dir) => files.push(dir.join("config.json")),
        None => files.extend(var("HOME").map(|home| home.join(".docker/config.json"))),
    }
    files
}

/// The login for `registry`: `--creds` first; then, file by file, the
/// registry's `credHelpers` entry, its `auths` entry, the file's `credsStore`;
/// else anonymous.
pub(crate) fn registry_login(registry: &str, options: &PushOptions) -> Result<Login, PushError> {
    if let Some(creds) = &options.credentials {
        return Ok(Login::basic(creds.clone()));
    }
    for file in &options.auth_files {
        if let Some(login) = file_login(file, registry)? {
            return Ok(login);
        }
    }
    Ok(Login {
        auth: RegistryAuth::Anonymous,
        username: None,
    })
}

fn file_login(path: &Path, registry: &str) -> Result<Option<Login>, PushError> {
    let Some(config) = read_config(path)? else {
        return Ok(None);
    };
    let helper = config["credHelpers"]
        .as_object()
        .and_then(|helpers| {
            helpers
                .iter()
                .find(|(key, _)| host_of(key) == key_host(registry))
        })
        .and_then(|(_, name)| name.as_str());
    if let Some(helper) = helper {
        return helper_login(helper, path, registry);
    }
    if let Some(creds) = auths_entry(&config, path, registry)? {
        return Ok(Some(Login::basic(creds)));
    }
    match config["credsStore"].as_str() {
        Some(store) if !store.is_empty() => helper_login(store, path, registry),
        _ => Ok(None),
    }
}

fn read_config(path: &Path) -> Result<Option<serde_json::Value>, PushError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(config_error(path, e.to_string())),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| config_error(path, e.to_string()))
}

fn config_error(path: &Path, detail: String) -> PushError {
    PushError::DockerConfig {
        path: path.to_owned(),
        detail,
    }
}

/// Keys may carry a scheme and path, as `https://index.docker.io/v1/` does.
fn host_of(key: &str) -> &str {
    let key = key.split_once("://").map_or(key, |(_, rest)| rest);
    key.split('/').next().unwrap_or(key)
}

/// The host Docker's files use for `registry`.
fn key_host(registry: &str) -> &str {
    if registry == "docker.io" {
        "index.docker.io"
    } else {
        registry
    }
}

fn auths_entry(
    config: &serde_json::Value,
    path: &Path,
    registry: &str,
) -> Result<Option<Credentials>, PushError> {
    let Some(auths) = config["auths"].as_object() else {
        return Ok(None);
    };
    let Some(entry) = auths
        .iter()
        .find(|(key, _)| host_of(key) == key_host(registry))
        .and_then(|(_, entry)| entry["auth"].as_str())
        .filter(|auth| !auth.is_empty())
    else {
        return Ok(None);
    };
    let bad = |detail: String| config_error(path, detail);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry)
        .map_err(|e| bad(format!("the `auth` of `{registry}` is not base64: {e}")))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| bad(format!("the `auth` of `{registry}` is not UTF-8")))?;
    decoded
        .parse()
        .map(Some)
        .map_err(|_| bad(format!("the `auth` of `{registry}` is not USER:PASS")))
}

/// Asks `docker-credential-HELPER get` for `registry`'s login. The helper
/// saying it has none is not an error.
fn helper_login(helper: &str, config: &Path, registry: &str) -> Result<Option<Login>, PushError> {
    let program = format!("docker-credential-{helper}");
    let fail = |detail: String| PushError::CredentialHelper {
        program: program.clone(),
        config: config.to_owned(),
        registry: registry.to_owned(),
        detail,
    };
    let server = if registry == "docker.io" {
        "https://index.docker.io/v1/"
    } else {
        registry
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                fail("it is not on PATH".to_owned())
            } else {
                fail(e.to_string())
            }
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| fail(format!("cannot send it the registry: {e}")))?;
    }
    let output = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    // Its standard output holds the secret: it is never shown.
    let said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if !output.status.success() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        if stdout.contains("credentials not found") || said.contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!("it failed ({}): {said}", output.status)));
    }
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|_| fail("its answer is not the JSON {\"Username\",\"Secret\"}".to_owned()))?;
    let (Some(username), Some(secret)) = (answer["Username"].as_str(), answer["Secret"].as_str())
    else {
        return Err(fail("its answer lacks `Username` or `Secret`".to_owned()));
    };
    // Docker's convention: this user name marks an identity token.
    if username == "<token>" {
        return Ok(Some(Login {
            auth: RegistryAuth::Bearer(secret.to_owned()),
            username: None,
        }));
    }
    Ok(Some(Login::basic(Credentials {
        username: username.to_owned(),
        password: secret.to_owned(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_hide_the_password() {
        let creds: Credentials = "me:s3cret:x".parse().unwrap();
        assert_eq!(creds.password, "s3cret:x");
        assert!(!format!("{creds:?}").contains("s3cret"));
        assert!(matches!(
            "nopass".parse::<Credentials>(),
            Err(PushError::BadCredentials)
        ));
    }

    #[test]
    fn auth_files_follow_podman_then_docker() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let all = auth_files_from(env(&[
            ("REGISTRY_AUTH_FILE", "/etc/auth.json"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("DOCKER_CONFIG", "/cfg/docker"),
            ("HOME", "/home/u"),
        ]));
        assert_eq!(
            all,
            [
                PathBuf::from("/etc/auth.json"),
                PathBuf::from("/run/user/1000/containers/auth.json"),
                PathBuf::from("/cfg/docker/config.json"),
            ]
        );
        let home_only = auth_files_from(env(&[("HOME", "/home/u"), ("REGISTRY_AUTH_FILE", "")]));
        assert_eq!(home_only, [PathBuf::from("/home/u/.docker/config.json")]);
    }

    #[test]
    fn docker_config_auths_are_found_by_host() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("u:p");
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"reg.example:5000":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
        let found = file_login(&path, "reg.example:5000").unwrap().unwrap();
        assert_eq!(found.username.as_deref(), Some("u"));
        assert!(
            matches!(&found.auth, RegistryAuth::Basic(user, pass) if user == "u" && pass == "p")
        );
        assert!(file_login(&path, "docker.io").unwrap().is_some());
        assert!(file_login(&path, "other.example").unwrap().is_none());
        assert!(file_login(&dir.path().join("missing"), "x")
            .unwrap()
            .is_none());
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(
            file_login(&path, "x"),
            Err(PushError::DockerConfig { .. })
        ));
    }

    #[test]
    fn a_missing_helper_is_named_with_its_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"credHelpers":{"reg.example":"gpubox-no-such-helper"}}"#,
        )
        .unwrap();
        let options = PushOptions {
            auth_files: vec![path.clone()],
            ..PushOptions::default()
        };
        let error = registry_login("reg.example", &options).unwrap_err();
        let said = error.to_string();
        assert!(
            said.contains("docker-credential-gpubox-no-such-helper"),
            "{said}"
        );
        assert!(said.contains("not on PATH"), "{said}");
        assert!(said.contains(&path.display().to_string()), "{said}");
        // Other registries do not ask that helper.
        assert!(registry_login("other.example", &options)
            .unwrap()
            .anonymous());
    }
}
