//! Pushing an image to a registry over the OCI distribution API: blobs the
//! registry lacks are mounted from another repository of the same registry
//! when an earlier push put them there, else go up a few at a time; then the
//! manifest, byte for byte as the caller gives it, so its digest is the one the
//! caller computed. Requests that fail transiently (5xx, dropped connections,
//! timeouts, stalled uploads) are tried again with a growing wait.

use std::future::Future;
use std::io::Read;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::Either;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use gpubox_oci::Digest;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::{Client, Reference, RegistryOperation};

use crate::auth::{registry_login, Credentials, Login};
use crate::blob_record::BlobRecord;

/// How many blobs go up at once.
const PARALLEL_UPLOADS: usize = 3;
/// How many times a request is tried when the registry or network fails transiently.
const TRIES: u32 = 5;
/// The wait before the second try; it doubles for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the registry may stay silent while gpubox waits for an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an upload may go without the registry taking another chunk.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);
pub(crate) const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A blob the manifest names: the config or a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:HEX`.
    pub digest: String,
    pub size: u64,
}

/// How to reach the registry.
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    /// When false, plain HTTP and unverified TLS certificates are accepted
    /// (for local and test registries).
    pub tls_verify: bool,
    /// A folder of `*.crt` CA certificates to trust for this registry, as
    /// skopeo's `--cert-dir`; without it, `/etc/containers/certs.d/HOST[:PORT]`
    /// and `/etc/docker/certs.d/HOST[:PORT]` are read when present.
    pub cert_dir: Option<PathBuf>,
    /// Explicit credentials; without them, the auth files are searched.
    pub credentials: Option<Credentials>,
    /// Files in the `auths` format, searched in order; see
    /// [`default_auth_files`](crate::default_auth_files).
    pub auth_files: Vec<PathBuf>,
    /// Where to remember which repositories received which blobs, so later
    /// pushes can mount them; `None` remembers nothing.
    pub blob_record: Option<PathBuf>,
}

/// A blob the registry copied from another of its repositories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountedBlob {
    pub digest: String,
    /// The repository it came from, on the same registry.
    pub from: String,
}

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushSummary {
    /// The pushed manifest's digest, `sha256:HEX`.
    pub manifest_digest: String,
    pub uploaded_blobs: usize,
    pub uploaded_bytes: u64,
    /// Blobs the repository already had.
    pub skipped_blobs: usize,
    /// Blobs mounted from other repositories instead of uploaded.
    pub mounted: Vec<MountedBlob>,
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
    #[error("the credential helper `{program}` (named in {}) gave no login for {registry}: {detail}; install it or log in again with `docker login {registry}`, or pass --creds USER:PASS", config.display())]
    CredentialHelper {
        program: String,
        config: PathBuf,
        registry: String,
        detail: String,
    },
    #[error("cannot use the certificates at {}: {detail}; --cert-dir takes a folder of PEM `*.crt` CA certificates", path.display())]
    CertDir { path: PathBuf, detail: String },
    #[error("{} is a client certificate or key, and gpubox cannot present client certificates yet; remove it from the certificate folder or push with skopeo", path.display())]
    ClientCertificate { path: PathBuf },
    #[error("the TLS certificate of registry {registry} is not trusted ({detail}); pass --cert-dir DIR with the CA certificate as DIR/ca.crt, or --tls-verify=false for a test registry")]
    UntrustedCertificate { registry: String, detail: String },
    #[error("registry {registry} requires a login; pass --creds USER:PASS or run `podman login {registry}`")]
    LoginRequired { registry: String },
    #[error(
        "registry {registry} refused the login for {username}; check --creds or your auth file"
    )]
    LoginRefused { registry: String, username: String },
    #[error("registry {registry} refused the identity token from the credential helper; log in again with `docker login {registry}` or pass --creds USER:PASS")]
    TokenRefused { registry: String },
    #[error("no destination was given, and the spec {} is missing or lists no `registries`; pass docker://HOST[:PORT]/REPO[:TAG] or add `registries = [\"docker://HOST/REPO:TAG\"]` to the spec", spec.display())]
    NoDestination { spec: PathBuf },
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
    #[error("uploading blob {digest} to registry {registry} stalled: nothing was taken for {} seconds, {TRIES} times; check the network or the registry", STALL_TIMEOUT.as_secs())]
    Stalled { registry: String, digest: String },
    #[error("{action} on registry {registry} failed: {source}; check the address, --creds and --tls-verify")]
    Registry {
        action: String,
        registry: String,
        source: OciDistributionError,
    },
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
    block_on(async {
        let session = Session::open(&image, RegistryOperation::Push, options).await?;
        let sent = session.send_blobs(&image, blobs, &read_blob).await?;
        let manifest_digest = session.put_manifest(&image, manifest).await?;
        session.remember(&image, blobs);
        Ok(PushSummary {
            manifest_digest,
            uploaded_blobs: sent.uploaded.len(),
            uploaded_bytes: sent.uploaded.iter().sum(),
            skipped_blobs: sent.skipped,
            mounted: sent.mounted,
        })
    })
}

/// Runs `work` on a single-threaded runtime.
pub(crate) fn block_on<T>(
    work: impl Future<Output = Result<T, PushError>>,
) -> Result<T, PushError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PushError::Runtime)?
        .block_on(work)
}

/// What happened to each blob of a push.
pub(crate) struct SentBlobs {
    uploaded: Vec<u64>,
    skipped: usize,
    mounted: Vec<MountedBlob>,
}

enum BlobOutcome {
    Present,
    Mounted(MountedBlob),
    Uploaded(u64),
}

/// A logged-in client for one registry, and what errors need to name.
pub(crate) struct Session {
    pub client: Client,
    pub login: Login,
    pub registry: String,
    record: Option<(PathBuf, BlobRecord)>,
}

impl Session {
    /// Logs in to `image`'s registry for `operation`: a pull asks only for
    /// pull access, which registries grant where they refuse pushes (a public
    /// repository, anonymously). Without TLS verification, HTTPS (any
    /// certificate) is tried first, then plain HTTP.
    pub async fn open(
        image: &Reference,
        operation: RegistryOperation,
        options: &PushOptions,
    ) -> Result<Session, PushError> {
        let registry = image.resolve_registry().to_owned();
        let login = registry_login(&registry, options)?;
        let roots = crate::tls::extra_roots(options.cert_dir.as_deref(), &registry)?;
        let protocols = if options.tls_verify {
            vec![ClientProtocol::Https]
        } else {
            vec![ClientProtocol::Https, ClientProtocol::Http]
        };
        // Only pushes mount blobs; a pull has no use for the record.
        let record = options
            .blob_record
            .as_ref()
            .filter(|_| matches!(operation, RegistryOperation::Push))
            .map(|path| (path.clone(), BlobRecord::load(path)));
        let mut last_error = None;
        for protocol in protocols {
            let client = Client::new(ClientConfig {
                protocol,
                accept_invalid_certificates: !options.tls_verify,
                extra_root_certificates: roots.clone(),
                connect_timeout: Some(CONNECT_TIMEOUT),
                read_timeout: Some(READ_TIMEOUT),
                ..ClientConfig::default()
            });
            match retry(|| client.auth(image, &login.auth, operation), is_transient).await {
                Ok(_) => {
                    client.store_auth_if_needed(&registry, &login.auth).await;
                    return Ok(Session {
                        client,
                        login,
                        registry,
                        record,
                    });
                }
                Err(OciDistributionError::RequestError(e))
                    if !options.tls_verify && (e.is_connect() || e.is_request()) =>
                {
                    last_error = Some(OciDistributionError::RequestError(e));
                }
                Err(e) => return Err(failure(&registry, &login, "logging in".to_owned(), e)),
            }
        }
        let source = last_error.unwrap_or(OciDistributionError::GenericError(None));
        Err(failure(&registry, &login, "logging in".to_owned(), source))
    }

    /// The error to report when `action` failed with `source`.
    pub fn fail(&self, action: impl Into<String>) -> impl Fn(OciDistributionError) -> PushError {
        let (registry, login, action) = (self.registry.clone(), self.login.clone(), action.into());
        move |source| failure(&registry, &login, action.clone(), source)
    }

    /// Makes sure the repository of `image` has every blob: present, mounted
    /// from a repository the record names, or uploaded.
    pub async fn send_blobs<'r, E>(
        &self,
        image: &Reference,
        blobs: &[Blob],
        read_blob: &impl Fn(&Blob) -> Result<Box<dyn Read + 'r>, E>,
    ) -> Result<SentBlobs, PushError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let outcomes: Vec<BlobOutcome> = stream::iter(blobs)
            .map(|blob| self.send_blob(image, blob, read_blob))
            .buffer_unordered(PARALLEL_UPLOADS)
            .try_collect()
            .await?;
        let mut sent = SentBlobs {
            uploaded: Vec::new(),
            skipped: 0,
            mounted: Vec::new(),
        };
        for outcome in outcomes {
            match outcome {
                BlobOutcome::Present => sent.skipped += 1,
                BlobOutcome::Mounted(mounted) => sent.mounted.push(mounted),
                BlobOutcome::Uploaded(size) => sent.uploaded.push(size),
            }
        }
        Ok(sent)
    }

    async fn send_blob<'r, E>(
        &self,
        image: &Reference,
        blob: &Blob,
        read_blob: &impl Fn(&Blob) -> Result<Box<dyn Read + 'r>, E>,
    ) -> Result<BlobOutcome, PushError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let exists = retry(
            || self.client.blob_exists(image, &blob.digest),
            is_transient,
        )
        .await
        .map_err(self.fail(format!("checking for blob {}", blob.digest)))?;
        if exists {
            return Ok(BlobOutcome::Present);
        }
        if let Some(from) = self.mount(image, &blob.digest).await {
            return Ok(BlobOutcome::Mounted(MountedBlob {
                digest: blob.digest.clone(),
                from,
            }));
        }
        retry(
            || upload_once(&self.client, image, blob, read_blob),
            |failure| match failure {
                UploadFailure::Registry(e) => is_transient(e),
                UploadFailure::Stalled => true,
                UploadFailure::Read(_) => false,
            },
        )
        .await
        .map_err(|failure| match failure {
            UploadFailure::Read(e) => e,
            UploadFailure::Stalled => PushError::Stalled {
                registry: self.registry.clone(),
                digest: blob.digest.clone(),
            },
            UploadFailure::Registry(e) => self.fail(format!("uploading blob {}", blob.digest))(e),
        })?;
        Ok(BlobOutcome::Uploaded(blob.size))
    }

    /// Asks the registry to mount `digest` from a repository that received it
    /// in an earlier push; the first that works names where it came from.
    /// A refused mount is no error: the blob is uploaded instead.
    async fn mount(&self, image: &Reference, digest: &str) -> Option<String> {
        let (_, record) = self.record.as_ref()?;
        for from in record.holders(&self.registry, digest, image.repository()) {
            let source = Reference::with_tag(self.registry.clone(), from.clone(), "latest".into());
            if retry(
                || self.client.mount_blob(image, &source, digest),
                is_transient,
            )
            .await
            .is_ok()
            {
                return Some(from);
            }
        }
        None
    }

    /// Sends `manifest` (its exact bytes, with its own mediaType) to `image`;
    /// returns its digest.
    pub async fn put_manifest(
        &self,
        image: &Reference,
        manifest: &[u8],
    ) -> Result<String, PushError> {
        let media_type = manifest_media_type(manifest)?;
        let content_type = http::HeaderValue::from_str(&media_type)
            .map_err(|_| PushError::ManifestMediaType(media_type.clone()))?;
        retry(
            || {
                self.client
                    .push_manifest_raw(image, manifest.to_vec(), content_type.clone())
            },
            is_transient,
        )
        .await
        .map_err(self.fail(format!("uploading the manifest for {image}")))?;
        Ok(Digest::of(manifest).to_string())
    }

    /// Notes in the blob record that `image`'s repository holds `blobs`.
    pub fn remember(&self, image: &Reference, blobs: &[Blob]) {
        if let Some((path, _)) = &self.record {
            // Re-read, so pushes running beside this one keep most of theirs.
            let mut record = BlobRecord::load(path);
            record.add(
                &self.registry,
                image.repository(),
                blobs.iter().map(|b| b.digest.as_str()),
            );
            record.save(path);
        }
    }
}

/// Says what went wrong in words a user can act on: a refused or missing
/// login, an untrusted certificate, else the registry's own error.
fn failure(
    registry: &str,
    login: &Login,
    action: String,
    source: OciDistributionError,
) -> PushError {
    let registry = registry.to_owned();
    if is_unauthorized(&source) {
        return match &login.username {
            _ if login.anonymous() => PushError::LoginRequired { registry },
            Some(username) => PushError::LoginRefused {
                registry,
                username: username.clone(),
            },
            None => PushError::TokenRefused { registry },
        };
    }
    if let Some(detail) = certificate_problem(&source) {
        return PushError::UntrustedCertificate { registry, detail };
    }
    PushError::Registry {
        action,
        registry,
        source,
    }
}

fn is_unauthorized(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::ServerError { code, .. } => matches!(code, 401 | 403),
        OciDistributionError::RequestError(e) => e.status().is_some_and(|s| {
            s == http::StatusCode::UNAUTHORIZED || s == http::StatusCode::FORBIDDEN
        }),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        _ => false,
    }
}

/// The TLS library's complaint about the registry's certificate, if that is
/// why the request failed.
fn certificate_problem(error: &OciDistributionError) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        let said = e.to_string();
        if said.contains("certificate") {
            return Some(said);
        }
        cause = e.source();
    }
    None
}

/// Bytes of a blob read and sent at a time; with [`CHUNKS_IN_FLIGHT`] this
/// bounds what an upload holds in memory, whatever the layer's size.
const CHUNK: usize = 1 << 20;
const CHUNKS_IN_FLIGHT: usize = 4;
/// What the count of taken chunks becomes once the upload has taken them all.
const ALL_TAKEN: u64 = u64::MAX;

/// Streams `reader` into a blob upload: returns how many bytes were read (or
/// the read error) and the registry's answer, or `None` when the registry
/// stopped taking data for [`STALL_TIMEOUT`].
async fn stream_blob(
    client: &Client,
    image: &Reference,
    blob: &Blob,
    mut reader: Box<dyn Read + '_>,
) -> Option<(std::io::Result<u64>, Result<String, OciDistributionError>)> {
    let (chunks, received) =
        tokio::sync::mpsc::channel::<Result<bytes::Bytes, OciDistributionError>>(CHUNKS_IN_FLIGHT);
    // Chunks the upload has taken so far, or ALL_TAKEN.
    let taken = std::sync::Arc::new(AtomicU64::new(0));
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
    let counter = taken.clone();
    let stream = stream::unfold(received, move |mut received| {
        let counter = counter.clone();
        async move {
            let Some(item) = received.recv().await else {
                counter.store(ALL_TAKEN, Ordering::Relaxed);
                return None;
            };
            counter.fetch_add(1, Ordering::Relaxed);
            Some((item, received))
        }
    });
    let upload = client.push_blob_stream(image, stream, &blob.digest, Some(blob.size));
    let transfer = std::pin::pin!(async { futures_util::join!(producer, upload) });
    // Once every chunk is taken, only the answer is awaited: READ_TIMEOUT bounds that.
    let watchdog = std::pin::pin!(async {
        let mut seen = None;
        loop {
            let now = taken.load(Ordering::Relaxed);
            if now == ALL_TAKEN {
                std::future::pending::<()>().await;
            }
            if seen == Some(now) {
                return;
            }
            seen = Some(now);
            tokio::time::sleep(STALL_TIMEOUT).await;
        }
    });
    match futures_util::future::select(transfer, watchdog).await {
        Either::Left((done, _)) => Some(done),
        Either::Right(((), _)) => None,
    }
}

pub(crate) fn parse_reference(reference: &str) -> Result<Reference, PushError> {
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
pub(crate) fn manifest_media_type(manifest: &[u8]) -> Result<String, PushError> {
    let value: serde_json::Value = serde_json::from_slice(manifest).map_err(PushError::Manifest)?;
    Ok(value["mediaType"]
        .as_str()
        .unwrap_or(OCI_MANIFEST_MEDIA_TYPE)
        .to_owned())
}

/// Runs `attempt` up to [`TRIES`] times while it fails transiently.
pub(crate) async fn retry<T, E, F, Fut>(attempt: F, transient: impl Fn(&E) -> bool) -> Result<T, E>
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

/// Why one try at uploading a blob failed: reading it (final), the registry
/// (retried when transient) or a stall (retried).
enum UploadFailure {
    Read(PushError),
    Registry(OciDistributionError),
    Stalled,
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
    let (sent, pushed) = stream_blob(client, image, blob, reader)
        .await
        .ok_or(UploadFailure::Stalled)?;
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

/// Whether the registry said it has no such repository, manifest or blob.
pub(crate) fn is_not_found(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        _ => false,
    }
}

/// Server errors, timeouts and dropped or reset connections; a connection
/// refused outright is not worth waiting for.
pub(crate) fn is_transient(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| e.code == OciErrorCode::Toomanyrequests),
        OciDistributionError::RequestError(e) => {
            e.status().is_some_and(|s| s.is_server_error())
                || e.is_timeout()
                || (e.is_request() && !e.is_connect())
                || e.is_body()
        }
        OciDistributionError::IoError(_) => true,
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

    #[test]
    fn refused_logins_name_the_user_and_never_the_password() {
        let refused = OciDistributionError::ServerError {
            code: 401,
            url: "https://r/v2/".to_owned(),
            message: String::new(),
        };
        let login = Login {
            auth: oci_client::secrets::RegistryAuth::Basic("me".into(), "hunter2".into()),
            username: Some("me".into()),
        };
        let said = failure("r:5000", &login, "x".into(), refused).to_string();
        assert!(said.contains("refused the login for me"), "{said}");
        assert!(!said.contains("hunter2"), "{said}");
        let anonymous = Login {
            auth: oci_client::secrets::RegistryAuth::Anonymous,
            username: None,
        };
        let said = failure(
            "r:5000",
            &anonymous,
            "x".into(),
            OciDistributionError::UnauthorizedError { url: String::new() },
        )
        .to_string();
        assert!(said.contains("requires a login"), "{said}");
    }
}
