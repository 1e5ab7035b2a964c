//! Where images go to and come from, named the way skopeo names transports:
//! `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker-archive:FILE`,
//! `docker-daemon:NAME[:TAG]`, `podman:NAME[:TAG]` and
//! `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`, which builds and pushes write to
//! and `fromImage`, `gpubox inspect` and `gpubox diff` read from.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use gpubox_registry::Engine;

/// An image location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An OCI image layout folder, the image tagged `tag` inside it.
    OciDir { dir: PathBuf, tag: Option<String> },
    /// A tar of an OCI image layout.
    OciArchive { file: PathBuf, tag: Option<String> },
    /// A `docker save` style tar.
    DockerArchive { file: PathBuf },
    /// An image in a local engine's storage, as `NAME[:TAG]`.
    Engine { engine: Engine, reference: String },
    /// An image in a registry, as `HOST[:PORT]/REPO[:TAG]` or
    /// `HOST[:PORT]/REPO@sha256:HEX`.
    Registry { reference: String },
}

/// A location gpubox cannot parse.
#[derive(Debug, thiserror::Error)]
pub enum BadTarget {
    #[error("`{0}` names no transport; use oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker-daemon:NAME:TAG or podman:NAME:TAG")]
    NoTransport(String),
    #[error("unknown transport `{transport}` in `{given}`; use oci:, oci-archive:, docker-archive:, docker-daemon: or podman:")]
    Unknown { transport: String, given: String },
    #[error("`{0}` names no path or image after the transport")]
    Empty(String),
    #[error("this command does not read images from a registry (`{0}`); copy the image to oci:DIR with `skopeo copy` and give that")]
    NotReadFromRegistry(String),
    #[error("`{0}` is not a registry; push to docker://HOST[:PORT]/REPO[:TAG]")]
    NotARegistry(String),
}

impl FromStr for Target {
    type Err = BadTarget;

    fn from_str(given: &str) -> Result<Target, BadTarget> {
        if let Some(reference) = given.strip_prefix("docker://") {
            if reference.is_empty() {
                return Err(BadTarget::Empty(given.to_owned()));
            }
            return Ok(Target::Registry {
                reference: reference.to_owned(),
            });
        }
        let (transport, rest) = given
            .split_once(':')
            .ok_or_else(|| BadTarget::NoTransport(given.to_owned()))?;
        if rest.is_empty() {
            return Err(BadTarget::Empty(given.to_owned()));
        }
        // Like skopeo, the first `:` after a path starts the tag, so paths for
        // these transports cannot contain `:`.
        let path_and_tag = || match rest.split_once(':') {
            Some((path, tag)) if !tag.is_empty() => (PathBuf::from(path), Some(tag.to_owned())),
            Some((path, _)) => (PathBuf::from(path), None),
            None => (PathBuf::from(rest), None),
        };
        Ok(match transport {
            "oci" => {
                let (dir, tag) = path_and_tag();
                Target::OciDir { dir, tag }
            }
            "oci-archive" => {
                let (file, tag) = path_and_tag();
                Target::OciArchive { file, tag }
            }
            "docker-archive" => Target::DockerArchive {
                file: path_and_tag().0,
            },
            "docker-daemon" => Target::Engine {
                engine: Engine::Docker,
                reference: rest.to_owned(),
            },
            "podman" | "containers-storage" => Target::Engine {
                engine: Engine::Podman,
                reference: rest.to_owned(),
            },
            _ => {
                return Err(BadTarget::Unknown {
                    transport: transport.to_owned(),
                    given: given.to_owned(),
                })
            }
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::OciDir { dir, tag } | Target::OciArchive { file: dir, tag } => {
                let transport = if matches!(self, Target::OciDir { .. }) {
                    "oci"
                } else {
                    "oci-archive"
                };
                write!(f, "{transport}:{}", dir.display())?;
                match tag {
                    Some(tag) => write!(f, ":{tag}"),
                    None => Ok(()),
                }
            }
            Target::DockerArchive { file } => write!(f, "docker-archive:{}", file.display()),
            Target::Engine {
                engine: Engine::Docker,
                reference,
            } => write!(f, "docker-daemon:{reference}"),
            Target::Engine {
                engine: Engine::Podman,
                reference,
            } => write!(f, "podman:{reference}"),
            Target::Registry { reference } => write!(f, "docker://{reference}"),
        }
    }
}

/// `reference` with `tag` appended when it has none (`NAME` -> `NAME:TAG`); a
/// `:` after the last `/` is a tag, one before it belongs to a registry port.
pub fn with_default_tag(reference: &str, tag: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') || last.contains('@') {
        reference.to_owned()
    } else {
        format!("{reference}:{tag}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_transport() {
        assert_eq!(
            "oci:out:v1".parse::<Target>().unwrap(),
            Target::OciDir {
                dir: "out".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            "oci:out".parse::<Target>().unwrap(),
            Target::OciDir {
                dir: "out".into(),
                tag: None
            }
        );
        assert_eq!(
            "oci-archive:/tmp/a.tar".parse::<Target>().unwrap(),
            Target::OciArchive {
                file: "/tmp/a.tar".into(),
                tag: None
            }
        );
        assert_eq!(
            "docker-archive:a.tar".parse::<Target>().unwrap(),
            Target::DockerArchive {
                file: "a.tar".into()
            }
        );
        assert_eq!(
            "podman:demo:1".parse::<Target>().unwrap(),
            Target::Engine {
                engine: Engine::Podman,
                reference: "demo:1".into()
            }
        );
        assert!(matches!(
            "foo".parse::<Target>(),
            Err(BadTarget::NoTransport(_))
        ));
        assert!(matches!(
            "zip:foo".parse::<Target>(),
            Err(BadTarget::Unknown { .. })
        ));
        assert_eq!(
            "docker://127.0.0.1:5000/x:v1".parse::<Target>().unwrap(),
            Target::Registry {
                reference: "127.0.0.1:5000/x:v1".into()
            }
        );
        assert!(matches!(
            "docker://".parse::<Target>(),
            Err(BadTarget::Empty(_))
        ));
        assert!(matches!("oci:".parse::<Target>(), Err(BadTarget::Empty(_))));
    }

    #[test]
    fn default_tags_respect_registry_ports() {
        assert_eq!(with_default_tag("demo", "latest"), "demo:latest");
        assert_eq!(with_default_tag("demo:v1", "latest"), "demo:v1");
        assert_eq!(
            with_default_tag("localhost:5000/demo", "v2"),
            "localhost:5000/demo:v2"
        );
    }
}
