//! What all registry traffic shares: how to reach a registry
//! ([`PushOptions`]), the logged-in [`Session`] that pushes, pulls and
//! referrers open, a runtime to drive it ([`block_on`]), retrying transient
//! failures with a growing wait ([`retry`], [`is_transient`]), reading
//! references and manifests, and the wording of failures ([`PushError`]): a
//! refused or missing login, an untrusted certificate, a plain-HTTP registry
//! reached over HTTPS, else the registry's own error.

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::{Client, Reference, RegistryOperation};

use crate::auth::{registry_login, Credentials, Login};
use crate::blob_record::BlobRecord;

/// How many times a request is tried when the registry or network fails transiently.
const TRIES: u32 = 5;
/// The wait before the second try; it doubles for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the registry may stay silent while gpubox waits for an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an upload may go without the registry taking another chunk.
pub(crate) const STALL_TIMEOUT: Duration = Duration::from_secs(120);
pub(crate) const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// How to reach the registry, for a push, a pull or a referrer.
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

/// Why a push failed, or why a registry could not be reached or understood
/// for any request: a pull wraps it as
/// [`PullError::Registry`](crate::PullError::Registry).
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
    #[error("the registry at {registry} answers plain HTTP, not HTTPS; if that is expected (a local registry), pass --tls-verify=false")]
    PlainHttp { registry: String },
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

/// A logged-in client for one registry, and what errors need to name.
pub(crate) struct Session {
    pub client: Client,
    pub login: Login,
    pub registry: String,
    /// Where pushes note which blobs this repository received; `None`
    /// for pulls, or when nothing is remembered.
    pub record: Option<(PathBuf, BlobRecord)>,
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
                Err(e) if options.tls_verify && answers_plain_http(&registry, &e) => {
                    return Err(PushError::PlainHttp { registry });
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

/// Whether the TLS handshake with `registry` failed with `error` because the
/// server answered something that is not TLS (rustls: "received corrupt
/// message of type InvalidContentType"; Go: "server gave HTTP response to
/// HTTPS client"), and the server answers a plain HTTP request: then the
/// registry speaks plain HTTP.
fn answers_plain_http(registry: &str, error: &OciDistributionError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut not_tls = false;
    while let Some(e) = cause {
        let said = e.to_string().to_ascii_lowercase();
        not_tls |= said.contains("corrupt message")
            || said.contains("invalidcontenttype")
            || said.contains("http response to https");
        cause = e.source();
    }
    not_tls && speaks_http(registry)
}

/// Whether `registry` (`HOST[:PORT]`, port 443 when none is named) answers
/// a plain HTTP request with an HTTP response, within a few seconds.
fn speaks_http(registry: &str) -> bool {
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    // `[::1]` has colons but no port.
    let has_port = registry
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    let address = if has_port {
        registry.to_owned()
    } else {
        format!("{registry}:443")
    };
    let Some(socket) = address.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    let wait = Some(Duration::from_secs(5));
    let Ok(mut stream) = TcpStream::connect_timeout(&socket, Duration::from_secs(5)) else {
        return false;
    };
    let request = format!("GET /v2/ HTTP/1.0\r\nHost: {registry}\r\n\r\n");
    let mut head = [0; 5];
    stream.set_read_timeout(wait).is_ok()
        && stream.set_write_timeout(wait).is_ok()
        && stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && &head == b"HTTP/"
}

/// Whether `reference` starts with a registry host (`ghcr.io/...`,
/// `localhost:5000/...`): a first component with a `.` or a `:`, or
/// `localhost`, followed by a repository.
pub fn names_a_registry_host(reference: &str) -> bool {
    match reference.split_once('/') {
        Some((host, _)) => host.contains('.') || host.contains(':') || host == "localhost",
        None => false,
    }
}

/// Reads `HOST[:PORT]/REPO[:TAG]` or `HOST[:PORT]/REPO@sha256:HEX`; the host
/// must be named.
pub(crate) fn parse_reference(reference: &str) -> Result<Reference, PushError> {
    let bad = |detail: String| PushError::BadReference {
        reference: reference.to_owned(),
        detail,
    };
    // Without a host, `docker.io/library/` would be assumed silently.
    if !names_a_registry_host(reference) {
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

    /// A server on a free local port that answers every connection with
    /// `answer` (whatever was sent), until the test ends.
    fn answering(answer: &'static [u8]) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = [0; 512];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(answer);
            }
        });
        address
    }

    fn open_with_tls(registry: &str) -> Result<(), PushError> {
        let image = parse_reference(&format!("{registry}/x:y")).unwrap();
        let options = PushOptions {
            tls_verify: true,
            ..PushOptions::default()
        };
        block_on(Session::open(&image, RegistryOperation::Pull, &options)).map(drop)
    }

    #[test]
    fn a_registry_that_answers_plain_http_to_tls_is_named_with_the_fix() {
        let registry = answering(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        let said = open_with_tls(&registry).unwrap_err();
        assert!(
            matches!(&said, PushError::PlainHttp { registry: r } if *r == registry),
            "{said:?}"
        );
        assert_eq!(
            said.to_string(),
            format!(
                "the registry at {registry} answers plain HTTP, not HTTPS; if that is \
                 expected (a local registry), pass --tls-verify=false"
            )
        );
    }

    #[test]
    fn a_server_that_speaks_neither_tls_nor_http_is_not_called_plain_http() {
        let registry = answering(b"SSH-2.0-OpenSSH_9.2\r\n");
        let said = open_with_tls(&registry).unwrap_err();
        assert!(
            matches!(&said, PushError::Registry { registry: r, .. } if *r == registry),
            "{said:?}"
        );
    }
}
