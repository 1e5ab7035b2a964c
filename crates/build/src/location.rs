//! Where images go to and come from, named the way skopeo names transports:
//! `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker-archive:FILE`,
//! `docker-daemon:NAME[:TAG]`, `podman:NAME[:TAG]` and
//! `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`, which builds and pushes write to
//! and `fromImage`, `gpubox inspect` and `gpubox diff` read from.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use gpubox_engines::Engine;

/// An image location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageLocation {
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
pub enum BadLocation {
    #[error("`{given}` names no transport; {meant}", given = .0, meant = likely_meant(.0))]
    NoTransport(String),
    #[error(
        "unknown transport `{transport}` in `{given}`; {}",
        likely_meant(given)
    )]
    Unknown { transport: String, given: String },
    #[error("`{0}` names no path or image after the transport")]
    Empty(String),
    #[error("this command does not read images from a registry (`{0}`); copy the image to oci:DIR with `skopeo copy` and give that")]
    NotReadFromRegistry(String),
    #[error("`{0}` is not a registry; push to docker://HOST[:PORT]/REPO[:TAG]")]
    NotARegistry(String),
}

/// What a location without a known transport most likely meant, and the list.
fn likely_meant(given: &str) -> String {
    const ALL: &str = "oci:DIR[:TAG], oci-archive:FILE[:NAME:TAG], docker-archive:FILE, \
                       docker-daemon:NAME:TAG, podman:NAME:TAG or docker://HOST/REPO:TAG";
    let guess = if given.ends_with(".tar") || given.ends_with(".tar.gz") {
        format!("oci-archive:{given} (or docker-archive:{given} for `docker load`)")
    } else if given.contains('/') && !given.contains(':') || Path::new(given).is_dir() {
        format!("oci:{given}")
    } else {
        format!("podman:{given} or docker-daemon:{given}")
    };
    format!("did you mean {guess}? The transports: {ALL}")
}

impl FromStr for ImageLocation {
    type Err = BadLocation;

    fn from_str(given: &str) -> Result<ImageLocation, BadLocation> {
        if let Some(reference) = given.strip_prefix("docker://") {
            if reference.is_empty() {
                return Err(BadLocation::Empty(given.to_owned()));
            }
            return Ok(ImageLocation::Registry {
                reference: reference.to_owned(),
            });
        }
        let (transport, rest) = given
            .split_once(':')
            .ok_or_else(|| BadLocation::NoTransport(given.to_owned()))?;
        if rest.is_empty() {
            return Err(BadLocation::Empty(given.to_owned()));
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
                ImageLocation::OciDir { dir, tag }
            }
            "oci-archive" => {
                let (file, tag) = path_and_tag();
                ImageLocation::OciArchive { file, tag }
            }
            "docker-archive" => ImageLocation::DockerArchive {
                file: path_and_tag().0,
            },
            "docker-daemon" => ImageLocation::Engine {
                engine: Engine::Docker,
                reference: rest.to_owned(),
            },
            "podman" | "containers-storage" => ImageLocation::Engine {
                engine: Engine::Podman,
                reference: rest.to_owned(),
            },
            _ => {
                return Err(BadLocation::Unknown {
                    transport: transport.to_owned(),
                    given: given.to_owned(),
                })
            }
        })
    }
}

impl fmt::Display for ImageLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageLocation::OciDir { dir, tag } | ImageLocation::OciArchive { file: dir, tag } => {
                let transport = if matches!(self, ImageLocation::OciDir { .. }) {
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
            ImageLocation::DockerArchive { file } => write!(f, "docker-archive:{}", file.display()),
            ImageLocation::Engine {
                engine: Engine::Docker,
                reference,
            } => write!(f, "docker-daemon:{reference}"),
            ImageLocation::Engine {
                engine: Engine::Podman,
                reference,
            } => write!(f, "podman:{reference}"),
            ImageLocation::Registry { reference } => write!(f, "docker://{reference}"),
        }
    }
}

impl ImageLocation {
    /// Parses `given`, where a bare `NAME[:TAG]` (no known transport, and no file or
    /// folder of that name here) is a local engine's image: podman's when podman has
    /// it, else Docker's when Docker has it, else podman's (whose error then says it
    /// has no such image). A bare path keeps its error, which names the transport
    /// it likely needs.
    pub fn parse_or_local(given: &str) -> Result<ImageLocation, BadLocation> {
        match given.parse::<ImageLocation>() {
            Err(BadLocation::NoTransport(_) | BadLocation::Unknown { .. })
                if !Path::new(given).exists() =>
            {
                let engine = [Engine::Podman, Engine::Docker]
                    .into_iter()
                    .find(|engine| gpubox_engines::image_env(*engine, given).is_ok())
                    .unwrap_or(Engine::Podman);
                Ok(ImageLocation::Engine {
                    engine,
                    reference: given.to_owned(),
                })
            }
            parsed => parsed,
        }
    }

    /// The file or folder the image is in; engines and registries have none.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ImageLocation::OciDir { dir, .. } => Some(dir),
            ImageLocation::OciArchive { file, .. } | ImageLocation::DockerArchive { file } => {
                Some(file)
            }
            ImageLocation::Engine { .. } | ImageLocation::Registry { .. } => None,
        }
    }

    /// A relative path is taken as relative to `dir` (how `fromImage` is
    /// read: relative to the spec's folder).
    pub fn relative_to(self, dir: &Path) -> ImageLocation {
        match self {
            ImageLocation::OciDir { dir: path, tag } => ImageLocation::OciDir {
                dir: dir.join(path),
                tag,
            },
            ImageLocation::OciArchive { file, tag } => ImageLocation::OciArchive {
                file: dir.join(file),
                tag,
            },
            ImageLocation::DockerArchive { file } => ImageLocation::DockerArchive {
                file: dir.join(file),
            },
            other @ (ImageLocation::Engine { .. } | ImageLocation::Registry { .. }) => other,
        }
    }
}

pub use gpubox_oci::image::with_default_tag;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_transport() {
        assert_eq!(
            "oci:out:v1".parse::<ImageLocation>().unwrap(),
            ImageLocation::OciDir {
                dir: "out".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            "oci:out".parse::<ImageLocation>().unwrap(),
            ImageLocation::OciDir {
                dir: "out".into(),
                tag: None
            }
        );
        assert_eq!(
            "oci-archive:/tmp/a.tar".parse::<ImageLocation>().unwrap(),
            ImageLocation::OciArchive {
                file: "/tmp/a.tar".into(),
                tag: None
            }
        );
        assert_eq!(
            "docker-archive:a.tar".parse::<ImageLocation>().unwrap(),
            ImageLocation::DockerArchive {
                file: "a.tar".into()
            }
        );
        assert_eq!(
            "podman:demo:1".parse::<ImageLocation>().unwrap(),
            ImageLocation::Engine {
                engine: Engine::Podman,
                reference: "demo:1".into()
            }
        );
        assert!(matches!(
            "foo".parse::<ImageLocation>(),
            Err(BadLocation::NoTransport(_))
        ));
        assert!(matches!(
            "zip:foo".parse::<ImageLocation>(),
            Err(BadLocation::Unknown { .. })
        ));
        assert_eq!(
            "docker://127.0.0.1:5000/x:v1"
                .parse::<ImageLocation>()
                .unwrap(),
            ImageLocation::Registry {
                reference: "127.0.0.1:5000/x:v1".into()
            }
        );
        assert!(matches!(
            "docker://".parse::<ImageLocation>(),
            Err(BadLocation::Empty(_))
        ));
        assert!(matches!(
            "oci:".parse::<ImageLocation>(),
            Err(BadLocation::Empty(_))
        ));
    }

    #[test]
    fn bare_names_are_podman_images_and_paths_follow_the_spec() {
        assert_eq!(
            ImageLocation::parse_or_local("demo:1").unwrap(),
            ImageLocation::Engine {
                engine: Engine::Podman,
                reference: "demo:1".into()
            }
        );
        assert!(matches!(
            ImageLocation::parse_or_local("oci:"),
            Err(BadLocation::Empty(_))
        ));
        // A path here is no image name: its error names the transport it needs.
        let folder = ImageLocation::parse_or_local("/tmp")
            .unwrap_err()
            .to_string();
        assert!(folder.contains("did you mean oci:/tmp?"), "{folder}");
        let archive = "out/m.tar"
            .parse::<ImageLocation>()
            .unwrap_err()
            .to_string();
        assert!(
            archive.contains("did you mean oci-archive:out/m.tar (or docker-archive:out/m.tar"),
            "{archive}"
        );
        let named = "gpubox-hello:latest"
            .parse::<ImageLocation>()
            .unwrap_err()
            .to_string();
        assert!(
            named.contains(
                "did you mean podman:gpubox-hello:latest or docker-daemon:gpubox-hello:latest?"
            ),
            "{named}"
        );
        let base: ImageLocation = "oci-archive:base.tar:v1".parse().unwrap();
        assert_eq!(
            base.relative_to(Path::new("/specs")),
            ImageLocation::OciArchive {
                file: "/specs/base.tar".into(),
                tag: Some("v1".into())
            }
        );
        let absolute: ImageLocation = "oci:/images/base".parse().unwrap();
        assert_eq!(absolute.clone().relative_to(Path::new("/specs")), absolute);
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
