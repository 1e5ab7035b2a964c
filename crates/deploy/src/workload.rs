//! What every target needs to know, taken once from the spec and the pushed image:
//! the ports, the keys and secrets the init reads, the folders that must outlive the
//! container, the readiness checks, the stop timeout, the platforms and the CUDA
//! release. The targets only render it.

use gpubox_cuda::{CudaVersion, DriverVersion};
use gpubox_initplan::variables;
use gpubox_initplan::Readiness;
use gpubox_spec::Spec;

use crate::DeployError;

/// Seconds a pod gets past the image's stop timeout: the init stops the services
/// within that timeout, then reaps what is left and exits.
pub const GRACE_MARGIN_SECONDS: i64 = 5;

/// Where `gpubox-init` is in every gpubox image; the probes run it.
pub const INIT_PATH: &str = "/bin/gpubox-init";

/// The pushed image, as read from its registry (or from the spec when the registry
/// could not be read and the reference already names a digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFacts {
    /// What the deployment names: `NAME@sha256:…` for a resolved tag, or the
    /// `NAME[:TAG]@sha256:…` reference as the user gave it.
    pub reference: String,
    /// The tag that was resolved to the digest, for the file's header.
    pub resolved_from: Option<String>,
    /// The platforms' architectures (GOARCH names: `amd64`, `arm64`), in order.
    pub architectures: Vec<String>,
    /// The unpacked size of the largest platform's image; `None` when unknown.
    pub unpacked_bytes: Option<u64>,
    /// The CUDA release the image needs (`NVIDIA_REQUIRE_CUDA` / `CUDA_VERSION`).
    pub cuda: Option<CudaVersion>,
}

impl ImageFacts {
    /// The digest part of [`ImageFacts::reference`] (`sha256:…`), when it has one.
    pub fn digest(&self) -> Option<&str> {
        self.reference.split_once('@').map(|(_, digest)| digest)
    }

    /// The oldest Linux driver that runs the image's CUDA release.
    pub fn minimum_driver(&self) -> Option<DriverVersion> {
        self.cuda.and_then(gpubox_cuda::minimum_driver)
    }
}

/// A network protocol of an exposed port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Kubernetes' spelling: `TCP`, `UDP`, `SCTP`.
    pub fn kubernetes(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// Docker's spelling: `tcp`, `udp`, `sctp`.
    pub fn docker(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A port the container serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub number: u16,
    pub protocol: Protocol,
    /// A Kubernetes port name (at most 15 characters): `ssh`, or `tcp-8888`.
    pub name: String,
    /// Whether this is sshd's port.
    pub ssh: bool,
}

/// A value the init reads from the environment that the deployment must hand over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeededSecret {
    /// The variable: `SSH_PUBLIC_KEYS`, `AGE_IDENTITY` or `TAILSCALE_AUTHKEY`.
    pub variable: &'static str,
    /// Whether the container cannot do its job without it.
    pub required: bool,
    /// Why the spec needs it, naming the spec keys.
    pub why: String,
    /// The `gpubox deploy` option that gives it.
    pub option: &'static str,
}

/// A folder whose contents must outlive the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistentDir {
    /// A Kubernetes volume name (a DNS label): `ssh-host-keys`, `vol-workspace`.
    pub name: String,
    /// The folder in the container.
    pub path: String,
    /// What is kept there, for messages: a noun phrase naming the spec key.
    pub purpose: &'static str,
    /// Whether it holds only a few small files (keys, state), not user data.
    pub small: bool,
}

/// Everything a target renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// A DNS label for the objects and the template: from `--name` or the spec's name.
    pub name: String,
    /// The spec file, for messages and the file header.
    pub spec_file: std::path::PathBuf,
    pub ports: Vec<Port>,
    pub secrets: Vec<NeededSecret>,
    pub persistent: Vec<PersistentDir>,
    /// Each service with a readiness check, by name.
    pub readiness: Vec<(String, Readiness)>,
    pub stop_timeout_ms: u64,
    pub image: ImageFacts,
}

impl Workload {
    /// Reads what the deployment needs from `spec`; `name` replaces the spec's name.
    pub fn new(
        spec: &Spec,
        image: ImageFacts,
        name: Option<&str>,
    ) -> Result<Workload, DeployError> {
        let name = match name {
            // A name the user chose is used as given, or refused.
            Some(given) if dns_label(given).as_deref() == Some(given) => given.to_owned(),
            Some(given) => {
                return Err(DeployError::BadValue {
                    what: "--name",
                    value: given.to_owned(),
                    expected: "a DNS label",
                    fix: "use at most 63 lowercase letters, digits and `-`, starting and ending with a letter or digit",
                })
            }
            // The spec's name may be `org/app` or hold capitals: its last part, made a label.
            None => {
                let last = spec.name.rsplit('/').next().unwrap_or(&spec.name);
                dns_label(last).ok_or_else(|| DeployError::NoName {
                    name: spec.name.clone(),
                })?
            }
        };
        let machine = &spec.machine;
        let mut ports = Vec::new();
        if machine.ssh.enable {
            ports.push(Port {
                number: machine.ssh.port,
                protocol: Protocol::Tcp,
                name: "ssh".to_owned(),
                ssh: true,
            });
        }
        for written in &spec.exposed_ports {
            let Some(port) = parse_port(written) else {
                continue;
            };
            if !ports
                .iter()
                .any(|p| p.number == port.number && p.protocol == port.protocol)
            {
                ports.push(port);
            }
        }
        let mut secrets = Vec::new();
        if machine.ssh.enable {
            let keyless = machine.ssh.authorized_keys.is_empty() && !machine.ssh.password_login;
            secrets.push(NeededSecret {
                variable: variables::SSH_PUBLIC_KEYS,
                required: keyless,
                why: if keyless {
                    "`ssh.enable` is set with no `ssh.authorizedKeys` and no password login: without a key nobody can log in".to_owned()
                } else {
                    "`ssh.enable` is set; keys given here are added to `ssh.authorizedKeys`".to_owned()
                },
                option: "--ssh-keys",
            });
        }
        let age = &machine.age;
        if !age.secrets.is_empty() {
            let needed: Vec<&str> = age
                .secrets
                .iter()
                .filter(|secret| !secret.value.optional)
                .map(|secret| secret.value.name.as_str())
                .collect();
            let required = !needed.is_empty() && age.identity_paths.is_empty();
            secrets.push(NeededSecret {
                variable: variables::AGE_IDENTITY,
                required,
                why: if required {
                    format!(
                        "`age.secrets` ({}) are decrypted at start and `age.identityPaths` is empty, so the identity would be the SSH host keys, which a new pod generates afresh",
                        needed.join(", ")
                    )
                } else {
                    "`age.secrets` are decrypted at start; an identity given here is tried before `age.identityPaths`".to_owned()
                },
                option: "--age-identity",
            });
        }
        if machine.tailscale.enable && machine.tailscale.auth_key_file.is_none() {
            secrets.push(NeededSecret {
                variable: variables::TAILSCALE_AUTHKEY,
                required: true,
                why: "`tailscale.enable` is set with no `tailscale.authKeyFile`, so the first start logs in with the auth key".to_owned(),
                option: "--tailscale-authkey",
            });
        }
        let mut persistent = Vec::new();
        if machine.ssh.enable {
            persistent.push(PersistentDir {
                name: "ssh-host-keys".to_owned(),
                path: machine.ssh.host_key_dir.clone(),
                purpose: "the SSH host keys (`ssh.hostKeyDir`)",
                small: true,
            });
        }
        if machine.tailscale.enable {
            persistent.push(PersistentDir {
                name: "tailscale-state".to_owned(),
                path: machine.tailscale.state_dir.clone(),
                purpose: "tailscale's state (`tailscale.stateDir`)",
                small: true,
            });
        }
        for volume in &spec.volumes {
            let base =
                dns_label(&format!("vol-{}", volume.value)).unwrap_or_else(|| "vol".to_owned());
            let mut name = base.clone();
            let mut number = 2;
            while persistent
                .iter()
                .any(|dir: &PersistentDir| dir.name == name)
            {
                name = format!("{}-{number}", truncate(&base, 60));
                number += 1;
            }
            persistent.push(PersistentDir {
                name,
                path: volume.value.clone(),
                purpose: "a folder of `volumes`",
                small: false,
            });
        }
        let readiness = machine
            .services
            .iter()
            .filter_map(|service| {
                let service = &service.value;
                service
                    .readiness
                    .clone()
                    .map(|readiness| (service.name.clone(), readiness))
            })
            .collect();
        Ok(Workload {
            name,
            spec_file: spec.file.clone(),
            ports,
            secrets,
            persistent,
            readiness,
            stop_timeout_ms: machine.stop_timeout_ms,
            image,
        })
    }

    /// The pod's `terminationGracePeriodSeconds`: the stop timeout, rounded up, plus
    /// [`GRACE_MARGIN_SECONDS`].
    pub fn grace_seconds(&self) -> i64 {
        self.stop_timeout_seconds() + GRACE_MARGIN_SECONDS
    }

    /// The image's stop timeout in whole seconds, rounded up.
    pub fn stop_timeout_seconds(&self) -> i64 {
        i64::try_from(self.stop_timeout_ms.div_ceil(1000)).unwrap_or(i64::MAX)
    }

    /// The longest start-up the services' readiness checks allow, in seconds: each
    /// waits for the ones before it, so their timeouts add up.
    pub fn startup_seconds(&self) -> u64 {
        let total: u64 = self
            .readiness
            .iter()
            .map(|(_, readiness)| readiness.timeout_ms)
            .sum();
        total.div_ceil(1000)
    }

    /// The command the pod's probes run: one try of every readiness check.
    pub fn probe_command(&self) -> Vec<String> {
        vec![INIT_PATH.to_owned(), "ready".to_owned()]
    }

    /// The disk a rented machine needs, in GB: `given`, else one and a half times the
    /// unpacked image (room for what the workload writes), at least 10 GB, or 20 GB
    /// when the image's size is unknown.
    pub fn disk_gb(&self, given: Option<u64>) -> u64 {
        if let Some(given) = given {
            return given;
        }
        match self.image.unpacked_bytes {
            Some(bytes) => (bytes.saturating_mul(3) / 2)
                .div_ceil(1_000_000_000)
                .max(10),
            None => 20,
        }
    }
}

/// `HOST/REPO` of `HOST/REPO[:TAG][@DIGEST]`.
pub fn repository_of(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    }
}

/// "22/tcp" as the spec normalised it.
fn parse_port(text: &str) -> Option<Port> {
    let (number, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    let number: u16 = number.parse().ok()?;
    let protocol = match protocol {
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => Protocol::Tcp,
    };
    Some(Port {
        number,
        protocol,
        name: format!("{}-{number}", protocol.docker()),
        ssh: false,
    })
}

/// `text` as a DNS label (RFC 1123, at most 63 characters): lowercase letters and
/// digits, anything else becoming one `-`, no `-` at either end; `None` when nothing
/// is left.
pub fn dns_label(text: &str) -> Option<String> {
    let mut label = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            label.push(c.to_ascii_lowercase());
        } else if !label.ends_with('-') && !label.is_empty() {
            label.push('-');
        }
    }
    let label = truncate(label.trim_matches('-'), 63)
        .trim_end_matches('-')
        .to_owned();
    (!label.is_empty()).then_some(label)
}

fn truncate(text: &str, at: usize) -> &str {
    &text[..text.len().min(at)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_dns_labels() {
        assert_eq!(dns_label("My_App.v2").as_deref(), Some("my-app-v2"));
        assert_eq!(dns_label("--x--").as_deref(), Some("x"));
        assert_eq!(dns_label("/workspace").as_deref(), Some("workspace"));
        assert_eq!(dns_label("___"), None);
        assert_eq!(dns_label(&"a".repeat(80)).map(|l| l.len()), Some(63));
    }

    #[test]
    fn repositories() {
        assert_eq!(
            repository_of("127.0.0.1:5000/app:v1@sha256:ab"),
            "127.0.0.1:5000/app"
        );
        assert_eq!(repository_of("127.0.0.1:5000/app"), "127.0.0.1:5000/app");
        assert_eq!(repository_of("app:v1"), "app");
    }

    #[test]
    fn ports_keep_their_protocol() {
        let port = parse_port("53/udp").unwrap();
        assert_eq!(
            (port.number, port.protocol, port.name.as_str()),
            (53, Protocol::Udp, "udp-53")
        );
        assert_eq!(parse_port("8888/tcp").unwrap().name, "tcp-8888");
    }
}
