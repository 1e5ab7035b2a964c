//! A pull logs in for pulling only. A real `docker-registry` sends clients to
//! a token service (its `silly` access controller challenges for a bearer
//! token and lets any token through), and the token service here acts as a
//! public registry's does: anyone gets a pull token, only the writer a push
//! token. So an anonymous pull works, an anonymous push is refused, and the
//! token service sees the pull ask for `pull` alone.
//!
//! htpasswd alone cannot test this: with basic logins the registry lets every
//! user it knows do everything, and no token names an operation.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use gpubox_oci::blob::BlobStore;
use gpubox_registry::{pull, push, Blob, Credentials, PullScope, PushError, PushOptions};

const WRITER: &str = "writer";
const WRITER_PASSWORD: &str = "push-pw-9876";

/// Whether `docker-registry` is here; under `CI=true` its absence fails.
fn have_registry() -> bool {
    let found = Command::new("docker-registry")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    gpubox_testkit::found("docker-registry", found)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free local port")
        .port()
}

/// A token service on a free port: what it answers, and the scopes it was
/// asked for.
struct TokenService {
    port: u16,
    scopes: Arc<Mutex<Vec<String>>>,
}

impl TokenService {
    /// Serves on a thread for the rest of the test process.
    fn start() -> TokenService {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free local port");
        let port = listener.local_addr().expect("a bound port").port();
        let scopes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&scopes);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                answer(stream, &seen);
            }
        });
        TokenService { port, scopes }
    }
}

/// Grants a token for pulling to anyone, and for pushing only to the writer.
fn answer(stream: TcpStream, scopes: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(&stream);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        head.push(line.trim().to_owned());
    }
    let target = head
        .first()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_owned();
    let scope = target
        .split(['?', '&'])
        .find_map(|pair| pair.strip_prefix("scope="))
        .map(percent_decoded)
        .unwrap_or_default();
    scopes.lock().expect("scopes").push(scope.clone());
    let writer = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{WRITER}:{WRITER_PASSWORD}"))
    );
    let is_writer = head.iter().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("authorization") && value.trim() == writer
        })
    });
    let response = if scope.contains("push") && !is_writer {
        let body = r#"{"errors":[{"code":"DENIED","message":"push access denied"}]}"#;
        format!(
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        let body = r#"{"token":"opaque-test-token"}"#;
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    // The client may have hung up; the test sees that as its own failure.
    let _ = (&stream).write_all(response.as_bytes());
}

/// `text` with its `%XX` escapes decoded.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| text.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                at += 3;
            }
            None => {
                decoded.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// A `docker-registry serve` whose clients need a token from `tokens`;
/// killed when dropped.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path, tokens: &TokenService) -> Registry {
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\nauth:\n  silly:\n    realm: http://127.0.0.1:{}/token\n    service: gpubox-test\n",
            dir.join("storage").display(),
            tokens.port
        );
        let config_file = dir.join("config.yml");
        std::fs::write(&config_file, config).expect("write the registry config");
        let log = File::create(dir.join("registry.log")).expect("create the registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log twice"))
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        let registry = Registry { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on port {port}; see {}",
                dir.join("registry.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // It may have exited already; nothing else to do then.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn options(credentials: Option<Credentials>) -> PushOptions {
    PushOptions {
        tls_verify: false,
        credentials,
        ..PushOptions::default()
    }
}

#[test]
fn an_anonymous_pull_works_where_an_anonymous_push_is_refused() {
    if !have_registry() {
        return;
    }
    let work = tempfile::tempdir().expect("a temp folder");
    let tokens = TokenService::start();
    let registry = Registry::start(work.path(), &tokens);
    let reference = format!("127.0.0.1:{}/public/app:v1", registry.port);

    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = b"not really a tar, but a blob all the same".to_vec();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        digest(config),
        config.len(),
        digest(&layer),
        layer.len()
    );
    let blobs = [
        Blob {
            digest: digest(config),
            size: config.len() as u64,
            mount_from: None,
        },
        Blob {
            digest: digest(&layer),
            size: layer.len() as u64,
            mount_from: None,
        },
    ];
    let read_blob = |blob: &Blob| {
        let bytes = if blob.digest == blobs[0].digest {
            config.to_vec()
        } else {
            layer.clone()
        };
        Ok::<_, std::io::Error>(Box::new(Cursor::new(bytes)) as Box<dyn Read>)
    };
    let writer = Credentials {
        username: WRITER.to_owned(),
        password: WRITER_PASSWORD.to_owned(),
    };
    let pushed = push(
        &reference,
        manifest.as_bytes(),
        &blobs,
        read_blob,
        &options(Some(writer)),
    )
    .expect("the writer may push");
    assert_eq!(pushed.manifest_digest, digest(manifest.as_bytes()));

    // Anonymous: the pull gets what was pushed, asking only to pull.
    tokens.scopes.lock().expect("scopes").clear();
    // The metadata alone: the config comes down, the layer stays in the registry.
    let metadata_store = BlobStore::open(&work.path().join("metadata")).expect("a blob store");
    let metadata = pull(
        &reference,
        "amd64",
        &metadata_store,
        &options(None),
        PullScope::Metadata,
    )
    .expect("the metadata");
    assert_eq!(metadata.manifest, manifest.as_bytes());
    assert_eq!(metadata.downloaded_blobs, 1);
    assert!(!metadata_store
        .path(&digest(&layer).parse().expect("a digest"))
        .exists());
    let store = BlobStore::open(&work.path().join("blobs")).expect("the blob store");
    let pulled = pull(
        &reference,
        "amd64",
        &store,
        &options(None),
        PullScope::Image,
    )
    .expect("anyone may pull");
    assert_eq!(pulled.manifest, manifest.as_bytes());
    assert_eq!(
        pulled.manifest_digest.to_string(),
        digest(manifest.as_bytes())
    );
    assert_eq!(pulled.downloaded_blobs, 2);
    assert_eq!(
        std::fs::read(store.path(&digest(&layer).parse().expect("a digest")))
            .expect("the layer is in the store"),
        layer
    );
    let scopes = tokens.scopes.lock().expect("scopes").clone();
    assert!(
        scopes.iter().any(|s| s == "repository:public/app:pull"),
        "{scopes:?}"
    );
    assert!(!scopes.iter().any(|s| s.contains("push")), "{scopes:?}");
    // The pull says what it fetched, config first, for the caller to record.
    let fetched: Vec<(String, u64)> = pulled
        .blobs
        .iter()
        .map(|blob| (blob.digest.to_string(), blob.size))
        .collect();
    assert_eq!(
        fetched,
        blobs
            .iter()
            .map(|blob| (blob.digest.clone(), blob.size))
            .collect::<Vec<_>>()
    );
    // A second pull into the same store downloads nothing but the manifest.
    let again = pull(
        &reference,
        "amd64",
        &store,
        &options(None),
        PullScope::Image,
    )
    .expect("a second pull");
    assert_eq!((again.downloaded_blobs, again.cached_blobs), (0, 2));
    assert_eq!(again.blobs, pulled.blobs);

    // Anonymous pushes are refused, and gpubox says a login is needed.
    let refused = push(
        &format!("127.0.0.1:{}/public/app:v2", registry.port),
        manifest.as_bytes(),
        &blobs,
        read_blob,
        &options(None),
    );
    assert!(
        matches!(refused, Err(PushError::LoginRequired { .. })),
        "{refused:?}"
    );
}
