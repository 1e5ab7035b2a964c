//! Certificates for talking to a registry over TLS, found as skopeo finds
//! them: `--cert-dir DIR`, else `/etc/containers/certs.d/HOST[:PORT]` and
//! `/etc/docker/certs.d/HOST[:PORT]`. `*.crt` files are extra CA roots;
//! `*.cert` + `*.key` pairs are client certificates.

use std::path::{Path, PathBuf};

use oci_client::client::{Certificate, CertificateEncoding};

use crate::session::PushError;

/// The folders skopeo and podman read a registry's certificates from when no
/// `--cert-dir` is given.
const SYSTEM_CERT_DIRS: &[&str] = &["/etc/containers/certs.d", "/etc/docker/certs.d"];

/// The extra CA roots for `registry`, one [`Certificate`] per PEM block.
pub(crate) fn extra_roots(
    cert_dir: Option<&Path>,
    registry: &str,
) -> Result<Vec<Certificate>, PushError> {
    let dirs: Vec<PathBuf> = match cert_dir {
        Some(dir) => vec![dir.to_owned()],
        None => SYSTEM_CERT_DIRS
            .iter()
            .map(|root| Path::new(root).join(registry))
            .filter(|dir| dir.is_dir())
            .collect(),
    };
    let mut roots = Vec::new();
    for dir in dirs {
        roots.extend(dir_roots(&dir)?);
    }
    Ok(roots)
}

fn dir_roots(dir: &Path) -> Result<Vec<Certificate>, PushError> {
    let bad = |path: &Path, detail: String| PushError::CertDir {
        path: path.to_owned(),
        detail,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| bad(dir, e.to_string()))?;
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| bad(dir, e.to_string()))?;
    files.sort();
    let mut roots = Vec::new();
    for file in &files {
        match file.extension().and_then(|e| e.to_str()) {
            Some("crt") => {
                let text = std::fs::read_to_string(file).map_err(|e| bad(file, e.to_string()))?;
                let blocks = pem_certificates(&text);
                if blocks.is_empty() {
                    return Err(bad(file, "it holds no PEM certificate".to_owned()));
                }
                roots.extend(blocks.into_iter().map(|data| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data,
                }));
            }
            // The TLS library gpubox uses cannot present a client certificate,
            // and going on without it would only fail later and less clearly.
            Some("cert") | Some("key") => {
                return Err(PushError::ClientCertificate { path: file.clone() })
            }
            _ => {}
        }
    }
    Ok(roots)
}

/// Each `CERTIFICATE` PEM block of `text`, markers included.
fn pem_certificates(text: &str) -> Vec<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let Some(length) = rest[start..].find(END) else {
            break;
        };
        let end = start + length + END.len();
        blocks.push(format!("{}\n", &rest[start..end]).into_bytes());
        rest = &rest[end..];
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_split_into_certificates() {
        let one = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----";
        let text = format!("comment\n{one}\n{one}\ntrailing");
        let blocks = pem_certificates(&text);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0], format!("{one}\n").into_bytes());
        assert!(pem_certificates("no certificate").is_empty());
    }

    #[test]
    fn cert_dirs_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(extra_roots(Some(dir.path()), "r").unwrap().is_empty());
        std::fs::write(dir.path().join("empty.crt"), "nothing").unwrap();
        let error = extra_roots(Some(dir.path()), "r").unwrap_err();
        assert!(error.to_string().contains("empty.crt"), "{error}");
        std::fs::remove_file(dir.path().join("empty.crt")).unwrap();
        std::fs::write(dir.path().join("me.key"), "secret").unwrap();
        let error = extra_roots(Some(dir.path()), "r").unwrap_err();
        assert!(error.to_string().contains("me.key"), "{error}");
        let missing = dir.path().join("missing");
        let error = extra_roots(Some(&missing), "r").unwrap_err();
        assert!(error.to_string().contains("missing"), "{error}");
    }
}
