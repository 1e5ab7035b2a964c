//! A real `docker-registry` on a free local port, for the tests that push to or
//! pull from a registry: plain HTTP without logins ([`Registry::start`]), or
//! with TLS from a CA the test makes and htpasswd users
//! ([`Registry::start_with`]); and skopeo, reading images back from it.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{build_hello, have, hello_ref, run_ok, tempdir};

/// Whether the registry tests' real parts, `docker-registry` and `skopeo`,
/// are usable (see [`have`]).
pub fn have_registry_and_skopeo() -> bool {
    have("docker-registry") && have("skopeo")
}

/// Where most push tests start: a fresh folder WORK, a plain-HTTP
/// [`Registry`] in `WORK/registry` and the bundled example built into a
/// layout ([`build_hello`]), in that order; bound so, the registry stops
/// before its folder goes. `None` where the test is skipped
/// ([`have_registry_and_skopeo`] is false).
pub fn registry_and_hello() -> Option<(tempfile::TempDir, Registry, PathBuf)> {
    if !have_registry_and_skopeo() {
        return None;
    }
    let work = tempdir();
    let registry = Registry::start(&work.path().join("registry"));
    let built = build_hello(work.path());
    Some((work, registry, built))
}

/// How a test registry is set up beyond the plain default.
#[derive(Default)]
pub struct RegistrySetup {
    /// Serve HTTPS with a certificate for 127.0.0.1 signed by a fresh CA.
    pub tls: bool,
    /// `(user, password)` pairs; when any, every request needs a login.
    pub users: Vec<(String, String)>,
}

/// A `docker-registry serve` process, killed when dropped.
pub struct Registry {
    child: Child,
    /// Its own folder: storage, configuration and `registry.log`.
    dir: PathBuf,
    pub port: u16,
    /// With TLS: a folder holding only the CA certificate `ca.crt`, as
    /// `--cert-dir` wants it.
    pub cert_dir: Option<PathBuf>,
}

impl Registry {
    /// A registry over plain HTTP that anyone may push to, kept in `dir`
    /// (made if missing).
    pub fn start(dir: &Path) -> Registry {
        Registry::start_with(dir, RegistrySetup::default())
    }

    pub fn start_with(dir: &Path, setup: RegistrySetup) -> Registry {
        std::fs::create_dir_all(dir).expect("the registry's folder");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free local port")
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("storage").display()
        );
        let cert_dir = setup.tls.then(|| {
            let (certificate, key) = make_certificates(dir);
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                certificate.display(),
                key.display()
            ));
            dir.join("certs")
        });
        if !setup.users.is_empty() {
            let htpasswd = dir.join("htpasswd");
            let lines: String = setup
                .users
                .iter()
                .map(|(user, password)| {
                    let hash = bcrypt::hash_with_result(password, 4)
                        .unwrap()
                        .format_for_version(bcrypt::Version::TwoY);
                    format!("{user}:{hash}\n")
                })
                .collect();
            std::fs::write(&htpasswd, lines).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: gpubox-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_file = dir.join("config.yml");
        std::fs::write(&config_file, config).unwrap();
        let log = File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        let plain = !setup.tls && setup.users.is_empty();
        let registry = Registry {
            child,
            dir: dir.to_path_buf(),
            port,
            cert_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        // TLS and logins stop a bare GET from telling; a listening port does.
        while !(if plain {
            registry.answers()
        } else {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        }) {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on port {port}; see {}",
                dir.join("registry.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }

    /// Whether `GET /v2/` answers 200.
    fn answers(&self) -> bool {
        self.get("/v2/").is_some_and(|(status, _)| status == 200)
    }

    /// `GET path` over plain HTTP without a login: the status and body.
    pub fn get(&self, path: &str) -> Option<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let mut response = Vec::new();
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .and_then(|()| stream.read_to_end(&mut response))
            .ok()?;
        let head_end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&response[..head_end]);
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, response[head_end + 4..].to_vec()))
    }

    /// `HOST:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn image(&self, name: &str) -> String {
        format!("docker://127.0.0.1:{}/{name}", self.port)
    }

    /// What the registry has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).expect("the registry's log")
    }

    /// `skopeo inspect` of `name` (`REPO:TAG` or `REPO@DIGEST`) over plain HTTP.
    pub fn skopeo_inspect(&self, name: &str) -> serde_json::Value {
        let out = run_ok(
            Command::new("skopeo")
                .args(["inspect", "--tls-verify=false"])
                .arg(self.image(name)),
        );
        serde_json::from_slice(&out.stdout).expect("skopeo inspect prints JSON")
    }

    /// Copies `name` over plain HTTP with skopeo into the OCI layout `dir`, as
    /// [`hello_ref`] names it.
    pub fn skopeo_copy_to_layout(&self, name: &str, dir: &Path) {
        run_ok(
            Command::new("skopeo")
                .args(["copy", "--src-tls-verify=false"])
                .arg(self.image(name))
                .arg(hello_ref(dir)),
        );
    }
}

/// Writes a CA (`DIR/certs/ca.crt`) and a server certificate for 127.0.0.1
/// signed by it; returns the server certificate and key files.
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gpubox test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let mut server_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    server_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = server_params.signed_by(&server_key, &ca).unwrap();
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca.crt"), ca.pem()).unwrap();
    let certificate = dir.join("server.crt");
    let key = dir.join("server.key");
    std::fs::write(&certificate, server.pem()).unwrap();
    std::fs::write(&key, server_key.serialize_pem()).unwrap();
    (certificate, key)
}

impl Drop for Registry {
    fn drop(&mut self) {
        // The process may already have exited; nothing else to do then.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
