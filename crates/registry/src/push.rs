//! Pushing an image to a registry over the OCI distribution API: blobs the
//! registry lacks go up a few at a time, then the manifest, byte for byte as
//! the caller gives it, so its digest is the one the caller computed.

use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest as _, Sha256};

/// How many blobs go up at once.
const PARALLEL_UPLOADS: usize = 3;
/// How many times a request is tried when the registry or network fails transiently.
const TRIES: u32 = 3;
/// The wait before the second try; it doubles for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A blob the manifest names: the config or a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:HEX`.
    pub digest: String,
    pub size: u64,
}

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

/// How to reach the registry.
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    /// When false, plain HTTP and unverified TLS certificates are accepted
    /// (for local and test registries).
    pub tls_verify: bool,
    /// Explicit credentials; without them, the first of `auth_files` with an
    /// `auths` entry for the registry is used, if any.
    pub credentials: Option<Credentials>,
    /// Files in the `auths` format, searched in order; see [`default_auth_files`].
    pub auth_files: Vec<PathBuf>,
}

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushSummary {
    /// The pushed manifest's digest, `sha256:HEX`.
    pub manifest_digest: String,
    pub uploaded_blobs: usize,
    pub uploaded_bytes: u64,
    /// Blobs the registry already had.
    pub skipped_blobs: usize,
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("`{reference}` is not a registry image reference: {detail}; write docker://HOST[:PORT]/REPO[:TAG]")]
    BadReference { reference: String, detail: String },
    #[error("credentials must be given as USER:PASS")]
    BadCredentials,
    #[error("cannot read the Docker config {}: {detail}; fix or remove it, or pass --creds USER:PASS", path.display())]
    DockerConfig { path: PathBuf, detail: String },
    #[error("the manifest to push is not valid JSON: {0}")]
    Manifest(serde_json::Error),
    #[error("the manifest's mediaType `{0}` cannot be sent as a Content-Type header")]
    ManifestMediaType(String),
    #[error("cannot start the network runtime: {0}")]
    Runtime(std::io::Error),
    #[error("reading blob {digest} to push failed: {source}")]
    ReadBlob {
        digest: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("blob {digest} is {actual} bytes, but the manifest says {expected}")]
    BlobSize {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("{action} on registry {registry} failed: {source}; check the address, --creds and --tls-verify")]
    Registry {
        action: String,
        registry: String,
        source: OciDistributionError,
    },
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

/// Pushes the image whose manifest is `manifest` (exactly these bytes) to
/// `reference` (`HOST[:PORT]/REPO[:TAG]`). `blobs` are the config and layers
/// the manifest names; `read_blob` gives the bytes of one. Blobs the registry
/// already has are not read or sent; the manifest goes up after all blobs.
pub fn push<'r, E>(
    reference: &str,
    manifest: &[u8],
    blobs: &[Blob],
    read_blob: impl Fn(&Blob) -> Result<Box<dyn Read + 'r>, E>,
    options: &PushOptions,
) -> Result<PushSummary, PushError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let image = parse_reference(reference)?;
    let media_type = manifest_media_type(manifest)?;
    let auth = registry_auth(image.resolve_registry(), options)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PushError::Runtime)?;
    runtime.block_on(async {
        let registry = image.resolve_registry().to_owned();
        let fail = |action: String| {
            let registry = registry.clone();
            move |source| PushError::Registry {
                action,
                registry,
                source,
            }
        };
        let client = connect(&image, &auth, options.tls_verify)
            .await
            .map_err(fail("logging in".to_owned()))?;
        let results: Vec<Option<u64>> = stream::iter(blobs)
            .map(|blob| {
                let (client, image, read_blob, fail) = (&client, &image, &read_blob, &fail);
                async move {
                    let exists = retry(|| client.blob_exists(image, &blob.digest), is_transient)
                        .await
                        .map_err(fail(format!("checking for blob {}", blob.digest)))?;
                    if exists {
                        return Ok(None);
                    }
                    retry(
                        || upload_once(client, image, blob, read_blob),
                        |failure| matches!(failure, UploadFailure::Registry(e) if is_transient(e)),
                    )
                    .await
                    .map_err(|failure| match failure {
                        UploadFailure::Read(e) => e,
                        UploadFailure::Registry(e) => {
                            fail(format!("uploading blob {}", blob.digest))(e)
                        }
                    })?;
                    Ok(Some(blob.size))
                }
            })
            .buffer_unordered(PARALLEL_UPLOADS)
            .try_collect()
            .await?;
        let content_type = http::HeaderValue::from_str(&media_type)
            .map_err(|_| PushError::ManifestMediaType(media_type.clone()))?;
        retry(
            || client.push_manifest_raw(&image, manifest.to_vec(), content_type.clone()),
            is_transient,
        )
        .await
        .map_err(fail(format!("uploading the manifest for {reference}")))?;
        let uploaded: Vec<u64> = results.iter().flatten().copied().collect();
        Ok(PushSummary {
            manifest_digest: format!("sha256:{}", hex::encode(Sha256::digest(manifest))),
            uploaded_blobs: uploaded.len(),
            uploaded_bytes: uploaded.iter().sum(),
            skipped_blobs: results.len() - uploaded.len(),
        })
    })
}

/// Bytes of a blob read and sent at a time; with [`CHUNKS_IN_FLIGHT`] this
/// bounds what an upload holds in memory, whatever the layer's size.
const CHUNK: usize = 1 << 20;
const CHUNKS_IN_FLIGHT: usize = 4;

/// Streams `reader` into a blob upload: returns how many bytes were read (or
/// the read error) and the registry's answer.
async fn stream_blob(
    client: &Client,
    image: &Reference,
    blob: &Blob,
    mut reader: Box<dyn Read + '_>,
) -> (std::io::Result<u64>, Result<String, OciDistributionError>) {
    let (chunks, received) =
        tokio::sync::mpsc::channel::<Result<bytes::Bytes, OciDistributionError>>(CHUNKS_IN_FLIGHT);
    let producer = async move {
        let mut sent = 0u64;
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                match reader.read(&mut chunk[filled..])? {
                    0 => break,
                    n => filled += n,
                }
            }
            if filled == 0 {
                return Ok(sent);
            }
            chunk.truncate(filled);
            sent += filled as u64;
            // The upload stopped early; its error is the one to report.
            if chunks.send(Ok(bytes::Bytes::from(chunk))).await.is_err() {
                return Ok(sent);
            }
        }
    };
    let stream = stream::unfold(received, |mut received| async move {
        received.recv().await.map(|item| (item, received))
    });
    let upload = client.push_blob_stream(image, stream, &blob.digest, Some(blob.size));
    futures_util::join!(producer, upload)
}

fn parse_reference(reference: &str) -> Result<Reference, PushError> {
    let bad = |detail: String| PushError::BadReference {
        reference: reference.to_owned(),
        detail,
    };
    let first = reference.split('/').next().unwrap_or_default();
    // Without a host, `docker.io/library/` would be assumed silently.
    if !reference.contains('/')
        || !(first.contains('.') || first.contains(':') || first == "localhost")
    {
        return Err(bad("it names no registry host".to_owned()));
    }
    Reference::from_str(reference).map_err(|e| bad(e.to_string()))
}

/// The manifest's own `mediaType`, else OCI's.
fn manifest_media_type(manifest: &[u8]) -> Result<String, PushError> {
    let value: serde_json::Value = serde_json::from_slice(manifest).map_err(PushError::Manifest)?;
    Ok(value["mediaType"]
        .as_str()
        .unwrap_or(OCI_MANIFEST_MEDIA_TYPE)
        .to_owned())
}

fn registry_auth(registry: &str, options: &PushOptions) -> Result<RegistryAuth, PushError> {
    if let Some(creds) = &options.credentials {
        return Ok(RegistryAuth::Basic(
            creds.username.clone(),
            creds.password.clone(),
        ));
    }
    for file in &options.auth_files {
        if let Some(c) = docker_config_credentials(file, registry)? {
            return Ok(RegistryAuth::Basic(c.username, c.password));
        }
    }
    Ok(RegistryAuth::Anonymous)
}

/// The `auths` entry for `registry` in the Docker config at `path`; a missing
/// file means none.
pub fn docker_config_credentials(
    path: &Path,
    registry: &str,
) -> Result<Option<Credentials>, PushError> {
    let bad = |detail: String| PushError::DockerConfig {
        path: path.to_owned(),
        detail,
    };
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let config: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    let Some(auths) = config["auths"].as_object() else {
        return Ok(None);
    };
    // Keys may carry a scheme and path, as `https://index.docker.io/v1/` does.
    let host_of = |key: &str| {
        let key = key.split_once("://").map_or(key, |(_, rest)| rest);
        key.split('/').next().unwrap_or(key).to_owned()
    };
    let wanted = if registry == "docker.io" {
        "index.docker.io"
    } else {
        registry
    };
    let Some(entry) = auths
        .iter()
        .find(|(key, _)| host_of(key) == wanted)
        .and_then(|(_, entry)| entry["auth"].as_str())
    else {
        return Ok(None);
    };
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

/// A client that has logged in to the registry. Without TLS verification,
/// HTTPS (any certificate) is tried first, then plain HTTP.
async fn connect(
    image: &Reference,
    auth: &RegistryAuth,
    tls_verify: bool,
) -> Result<Client, OciDistributionError> {
    let protocols = if tls_verify {
        vec![ClientProtocol::Https]
    } else {
        vec![ClientProtocol::Https, ClientProtocol::Http]
    };
    let mut last_error = None;
    for protocol in protocols {
        let client = Client::new(ClientConfig {
            protocol,
            accept_invalid_certificates: !tls_verify,
            ..ClientConfig::default()
        });
        match retry(
            || client.auth(image, auth, RegistryOperation::Push),
            is_transient,
        )
        .await
        {
            Ok(_) => {
                client
                    .store_auth_if_needed(image.resolve_registry(), auth)
                    .await;
                return Ok(client);
            }
            Err(OciDistributionError::RequestError(e)) if e.is_connect() || e.is_request() => {
                last_error = Some(OciDistributionError::RequestError(e));
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or(OciDistributionError::GenericError(None)))
}

/// Runs `attempt` up to [`TRIES`] times while it fails transiently.
async fn retry<T, E, F, Fut>(attempt: F, transient: impl Fn(&E) -> bool) -> Result<T, E>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut wait = FIRST_BACKOFF;
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e) if tries < TRIES && transient(&e) => {
                tokio::time::sleep(wait).await;
                wait *= 2;
                tries += 1;
            }
            result => return result,
        }
    }
}

/// Why one try at uploading a blob failed: reading it (final) or the registry
/// (retried when transient).
enum UploadFailure {
    Read(PushError),
    Registry(OciDistributionError),
}

/// Reads `blob` afresh and streams it to the registry once.
async fn upload_once<'r, E>(
    client: &Client,
    image: &Reference,
    blob: &Blob,
    read_blob: &impl Fn(&Blob) -> Result<Box<dyn Read + 'r>, E>,
) -> Result<(), UploadFailure>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let read_error = |source: Box<dyn std::error::Error + Send + Sync>| {
        UploadFailure::Read(PushError::ReadBlob {
            digest: blob.digest.clone(),
            source,
        })
    };
    let reader = read_blob(blob).map_err(|e| read_error(Box::new(e)))?;
    let (sent, pushed) = stream_blob(client, image, blob, reader).await;
    let sent = sent.map_err(|e| read_error(Box::new(e)))?;
    if sent != blob.size {
        return Err(UploadFailure::Read(PushError::BlobSize {
            digest: blob.digest.clone(),
            expected: blob.size,
            actual: sent,
        }));
    }
    pushed.map(drop).map_err(UploadFailure::Registry)
}

/// Server errors, timeouts and dropped connections; a connection refused
/// outright is not worth waiting for.
fn is_transient(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ServerError { code, .. } => *code >= 500,
        OciDistributionError::RequestError(e) => {
            e.status().is_some_and(|s| s.is_server_error())
                || e.is_timeout()
                || (e.is_request() && !e.is_connect())
                || e.is_body()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_must_name_a_host() {
        assert!(parse_reference("127.0.0.1:5000/hello:v1").is_ok());
        assert!(parse_reference("localhost/a/b").is_ok());
        assert!(matches!(
            parse_reference("hello:v1"),
            Err(PushError::BadReference { .. })
        ));
        assert!(matches!(
            parse_reference("library/hello"),
            Err(PushError::BadReference { .. })
        ));
    }

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
        let found = docker_config_credentials(&path, "reg.example:5000").unwrap();
        assert_eq!(found.map(|c| c.username), Some("u".to_owned()));
        assert!(docker_config_credentials(&path, "docker.io")
            .unwrap()
            .is_some());
        assert!(docker_config_credentials(&path, "other.example")
            .unwrap()
            .is_none());
        assert!(docker_config_credentials(&dir.path().join("missing"), "x")
            .unwrap()
            .is_none());
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(
            docker_config_credentials(&path, "x"),
            Err(PushError::DockerConfig { .. })
        ));
    }

    #[test]
    fn manifests_keep_their_media_type() {
        assert_eq!(
            manifest_media_type(
                br#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#
            )
            .unwrap(),
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        assert_eq!(manifest_media_type(b"{}").unwrap(), OCI_MANIFEST_MEDIA_TYPE);
        assert!(manifest_media_type(b"nope").is_err());
    }
}
