//! What every target needs to know, taken once from the spec and the pushed image:
//! the ports, the keys and secrets the init reads, the folders that must outlive the
//! container, the readiness checks, the stop timeout, the platforms and the CUDA
//! release. The targets only render it.

use gpubox_cuda::{CudaVersion, DriverVersion};
use gpubox_initplan::variables;
use gpubox_initplan::{InitPlan, Readiness};
use gpubox_spec::Spec;

use crate::DeployError;

/// Seconds a pod gets past the image's stop timeout: the init stops the services
/// within that timeout, then reaps what is left and exits.
pub const GRACE_MARGIN_SECONDS: i64 = 5;

/// Seconds the startup probe allows for what the init does before the services
/// (host keys, secrets, the start-up script) on top of the services' and
/// tailscaled's readiness timeouts; `--startup-seconds` replaces the whole estimate.
pub const STARTUP_ALLOWANCE_SECONDS: u64 = 60;

/// The longest name a workload may have: a StatefulSet's pods carry a
/// `controller-revision-hash` label of the name and an 11-character hash, and label
/// values stop at 63 characters.
pub const MAX_NAME_LENGTH: usize = 52;

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
    /// The config's `ExposedPorts` (`22/tcp`), a base image's included.
    pub exposed_ports: Vec<String>,
    /// The config's `Volumes`, a base image's included.
    pub volumes: Vec<String>,
    /// Whether the entrypoint is `gpubox-init`: only then are the keys read and the
    /// probes answered.
    pub runs_init: bool,
}

impl ImageFacts {
    /// What the spec says the image `reference` is, for when its registry cannot be
    /// read: the platforms it builds (else this machine's), `cuda.version`, the
    /// spec's own ports and volumes (not a base image's), no size.
    pub fn from_spec(spec: &Spec, reference: &str) -> ImageFacts {
        ImageFacts {
            reference: reference.to_owned(),
            resolved_from: None,
            architectures: spec
                .platforms_to_build()
                .unwrap_or_default()
                .iter()
                .map(|platform| platform.architecture().to_owned())
                .collect(),
            unpacked_bytes: None,
            cuda: spec.cuda.version.as_deref().and_then(|v| v.parse().ok()),
            exposed_ports: spec.exposed_ports.clone(),
            volumes: spec.volumes.iter().map(|v| v.value.clone()).collect(),
            runs_init: spec.entrypoint.as_ref().is_none_or(|entrypoint| {
                entrypoint.first().map(String::as_str) == Some(gpubox_initplan::INIT_PATH)
            }),
        }
    }

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
    /// Where the facts came from, for messages and the file header: the spec file,
    /// or the start-up plan in the image.
    pub source: String,
    pub ports: Vec<Port>,
    pub secrets: Vec<NeededSecret>,
    pub persistent: Vec<PersistentDir>,
    /// Each service with a readiness check, by name.
    pub readiness: Vec<(String, Readiness)>,
    /// Whether tailscaled starts first (its own readiness wait adds to start-up).
    pub tailscale: bool,
    pub stop_timeout_ms: u64,
    pub image: ImageFacts,
}

/// What the init does that a deployment serves, from the spec or from the start-up
/// plan in the image: one shape, so both give the same [`Workload`].
struct Machine {
    ssh: Option<SshFacts>,
    age: Option<AgeFacts>,
    tailscale: Option<TailscaleFacts>,
    readiness: Vec<(String, Readiness)>,
    stop_timeout_ms: u64,
}

struct SshFacts {
    port: u16,
    host_key_dir: String,
    /// No key and no password login is built in: only a key handed over logs in.
    keyless: bool,
}

struct AgeFacts {
    /// The secrets that are not optional.
    needed: Vec<String>,
    /// Identities other than the SSH host keys are named.
    own_identities: bool,
}

struct TailscaleFacts {
    auth_key_file: Option<String>,
    state_dir: String,
}

impl Machine {
    fn of_spec(spec: &Spec) -> Machine {
        let machine = &spec.machine;
        let ssh = &machine.ssh;
        let age = &machine.age;
        Machine {
            ssh: ssh.enable.then(|| SshFacts {
                port: ssh.port,
                host_key_dir: ssh.host_key_dir.clone(),
                keyless: ssh.authorized_keys.is_empty() && !ssh.password_login,
            }),
            age: (!age.secrets.is_empty()).then(|| AgeFacts {
                needed: age
                    .secrets
                    .iter()
                    .filter(|secret| !secret.value.optional)
                    .map(|secret| secret.value.name.clone())
                    .collect(),
                own_identities: !age.identity_paths.is_empty(),
            }),
            tailscale: machine.tailscale.enable.then(|| TailscaleFacts {
                auth_key_file: machine.tailscale.auth_key_file.clone(),
                state_dir: machine.tailscale.state_dir.clone(),
            }),
            readiness: machine
                .services
                .iter()
                .filter_map(|service| {
                    let service = &service.value;
                    let readiness = service.readiness.clone()?;
                    Some((service.name.clone(), readiness))
                })
                .collect(),
            stop_timeout_ms: machine.stop_timeout_ms,
        }
    }

    /// The plan the build wrote: sshd's port is its config's first `Port` (22
    /// without one), and the secrets' identities are the spec's own when any lies
    /// outside the host key folder.
    fn of_plan(plan: &InitPlan) -> Machine {
        let ssh = plan.ssh.as_ref();
        let host_keys = ssh.map(|ssh| ssh.host_key_dir.trim_end_matches('/').to_owned());
        Machine {
            ssh: ssh.map(|ssh| {
                let port = ssh
                    .config
                    .lines()
                    .filter_map(|line| {
                        let mut words = line.split_whitespace();
                        let keyword = words.next()?;
                        keyword.eq_ignore_ascii_case("port").then(|| words.next())?
                    })
                    .find_map(|port| port.parse().ok())
                    .unwrap_or(22);
                SshFacts {
                    port,
                    host_key_dir: ssh.host_key_dir.clone(),
                    keyless: ssh.authorized_keys.is_empty() && !ssh.password_login,
                }
            }),
            age: (!plan.secrets.secrets.is_empty()).then(|| AgeFacts {
                needed: plan
                    .secrets
                    .secrets
                    .iter()
                    .filter(|secret| !secret.optional)
                    .map(|secret| secret.name.clone())
                    .collect(),
                own_identities: plan.secrets.identity_paths.iter().any(|path| {
                    host_keys
                        .as_deref()
                        .is_none_or(|dir| !path.starts_with(&format!("{dir}/")))
                }),
            }),
            tailscale: plan.tailscale.as_ref().map(|tailscale| TailscaleFacts {
                auth_key_file: tailscale.auth_key_file.clone(),
                state_dir: tailscale.state_dir.clone(),
            }),
            readiness: plan
                .services
                .iter()
                .filter_map(|service| Some((service.name.clone(), service.readiness.clone()?)))
                .collect(),
            stop_timeout_ms: plan.stop_timeout_ms,
        }
    }
}

impl Workload {
    /// Reads what the deployment needs from `spec`; `name` replaces the spec's name.
    pub fn new(
        spec: &Spec,
        image: ImageFacts,
        name: Option<&str>,
    ) -> Result<Workload, DeployError> {
        let name = workload_name(&spec.name, name)?;
        Ok(Workload::assemble(
            Machine::of_spec(spec),
            name,
            spec.file.display().to_string(),
            image,
        ))
    }

    /// Reads what the deployment needs from the start-up plan in the image
    /// (`/etc/gpubox/init.json`), for a manifest checked without the spec.
    pub fn from_plan(plan: &InitPlan, image: ImageFacts, name: &str) -> Workload {
        let source = format!(
            "docker://{}:/{}",
            image.reference,
            gpubox_initplan::PLAN_PATH
        );
        Workload::assemble(Machine::of_plan(plan), name.to_owned(), source, image)
    }

    fn assemble(machine: Machine, name: String, source: String, image: ImageFacts) -> Workload {
        let mut ports = Vec::new();
        if let Some(ssh) = &machine.ssh {
            ports.push(Port {
                number: ssh.port,
                protocol: Protocol::Tcp,
                name: "ssh".to_owned(),
                ssh: true,
            });
        }
        for written in &image.exposed_ports {
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
        if let Some(ssh) = &machine.ssh {
            secrets.push(NeededSecret {
                variable: variables::SSH_PUBLIC_KEYS,
                required: ssh.keyless,
                why: if ssh.keyless {
                    "`ssh.enable` is set with no `ssh.authorizedKeys` and no password login: without a key nobody can log in".to_owned()
                } else {
                    "`ssh.enable` is set; keys given here are added to `ssh.authorizedKeys`".to_owned()
                },
            });
        }
        if let Some(AgeFacts {
            needed,
            own_identities,
        }) = &machine.age
        {
            let required = !needed.is_empty() && !own_identities;
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
            });
        }
        if let Some(tailscale) = &machine.tailscale {
            secrets.push(NeededSecret {
                variable: variables::TAILSCALE_AUTHKEY,
                required: tailscale.auth_key_file.is_none(),
                why: match &tailscale.auth_key_file {
                    None => "`tailscale.enable` is set with no `tailscale.authKeyFile`, so the first start logs in with the auth key".to_owned(),
                    Some(file) => format!("`tailscale.authKeyFile` is {file}; the init reads the key given here when that file is missing"),
                },
            });
        }
        let mut persistent = Vec::new();
        if let Some(ssh) = &machine.ssh {
            persistent.push(PersistentDir {
                name: "ssh-host-keys".to_owned(),
                path: ssh.host_key_dir.clone(),
                purpose: "the SSH host keys (`ssh.hostKeyDir`)",
                small: true,
            });
        }
        if let Some(tailscale) = &machine.tailscale {
            persistent.push(PersistentDir {
                name: "tailscale-state".to_owned(),
                path: tailscale.state_dir.clone(),
                purpose: "tailscale's state (`tailscale.stateDir`)",
                small: true,
            });
        }
        for volume in &image.volumes {
            let base = dns_label(&format!("vol-{volume}")).unwrap_or_else(|| "vol".to_owned());
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
                path: volume.clone(),
                purpose: "a folder of `volumes`",
                small: false,
            });
        }
        Workload {
            name,
            source,
            ports,
            secrets,
            persistent,
            readiness: machine.readiness,
            tailscale: machine.tailscale.is_some(),
            stop_timeout_ms: machine.stop_timeout_ms,
            image,
        }
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

    /// How long the container may take to start, in seconds: the services'
    /// readiness timeouts (each waits for the ones before it, so they add up),
    /// tailscaled's when tailscale starts, and [`STARTUP_ALLOWANCE_SECONDS`].
    pub fn startup_seconds(&self) -> u64 {
        let services: u64 = self
            .readiness
            .iter()
            .map(|(_, readiness)| readiness.timeout_ms)
            .sum();
        let tailscale = if self.tailscale {
            gpubox_initplan::TAILSCALED_READY_TIMEOUT_MS
        } else {
            0
        };
        (services + tailscale).div_ceil(1000) + STARTUP_ALLOWANCE_SECONDS
    }

    /// The command the pod's probes run: one try of every readiness check.
    pub fn probe_command(&self) -> Vec<String> {
        vec![gpubox_initplan::INIT_PATH.to_owned(), "ready".to_owned()]
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

/// The workload's name: `given` (`--name`) as it is, or refused; else the last
/// `/`-part of the spec's name made a DNS label (an RFC 1035 one: a Service's name
/// starts with a letter, so `app-` goes before a leading digit), at most
/// [`MAX_NAME_LENGTH`] characters.
pub fn workload_name(spec_name: &str, given: Option<&str>) -> Result<String, DeployError> {
    if let Some(given) = given {
        let valid = dns_label(given).as_deref() == Some(given)
            && given.len() <= MAX_NAME_LENGTH
            && given.starts_with(|c: char| c.is_ascii_lowercase());
        if !valid {
            return Err(DeployError::BadValue {
                what: "--name",
                value: given.to_owned(),
                expected: "a Kubernetes name",
                fix: "use at most 52 lowercase letters, digits and `-`, starting with a letter and ending with a letter or digit",
            });
        }
        return Ok(given.to_owned());
    }
    let last = spec_name.rsplit('/').next().unwrap_or(spec_name);
    let label = dns_label(last).ok_or_else(|| DeployError::NoName {
        name: spec_name.to_owned(),
    })?;
    let label = if label.starts_with(|c: char| c.is_ascii_digit()) {
        format!("app-{label}")
    } else {
        label
    };
    Ok(truncate(&label, MAX_NAME_LENGTH)
        .trim_end_matches('-')
        .to_owned())
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
    fn workload_names_are_service_names() {
        assert_eq!(workload_name("org/My_App", None).unwrap(), "my-app");
        assert_eq!(workload_name("3d-trainer", None).unwrap(), "app-3d-trainer");
        assert_eq!(
            workload_name(&"x".repeat(80), None).unwrap().len(),
            MAX_NAME_LENGTH
        );
        assert_eq!(workload_name("spec", Some("given")).unwrap(), "given");
        for bad in ["Given", "3d", "a_b", &"y".repeat(53)] {
            assert!(workload_name("spec", Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_plan_reads_as_its_spec_does() {
        let plan = |config: &str, identity: &str| {
            let mut plan = InitPlan::new(45_000);
            plan.ssh = Some(gpubox_initplan::SshPlan {
                sshd: "/usr/sbin/sshd".to_owned(),
                ssh_keygen: "/usr/bin/ssh-keygen".to_owned(),
                config: config.to_owned(),
                host_key_dir: "/etc/ssh/host-keys".to_owned(),
                host_key_types: vec!["ed25519".to_owned()],
                authorized_keys: Vec::new(),
                login_users: vec!["root".to_owned()],
                authorized_keys_file: "/etc/ssh/authorized_keys.d/%u".to_owned(),
                password_login: false,
            });
            plan.secrets.identity_paths = vec![identity.to_owned()];
            plan.secrets.secrets.push(gpubox_initplan::SecretPlan {
                name: "token".to_owned(),
                file: "/etc/gpubox/secrets/token.age".to_owned(),
                path: "/run/agenix/token".to_owned(),
                mode: 0o400,
                owner: "root".to_owned(),
                group: "root".to_owned(),
                symlink: true,
                optional: false,
            });
            plan
        };
        let spec = gpubox_spec::parse(
            "name = \"app\"\ncmd = [\"/x\"]\n",
            std::path::Path::new("/p/gpubox.toml"),
        )
        .unwrap();
        let image = || ImageFacts::from_spec(&spec, "r.example/app@sha256:aa");
        let workload = |plan: &InitPlan| Workload::from_plan(plan, image(), "app");
        // The default config's port and the host keys as the identity: the key and
        // the identity must be handed over.
        let default = workload(&plan(
            "# gpubox\nPort 2222\nPermitRootLogin prohibit-password\n",
            "/etc/ssh/host-keys/ssh_host_ed25519_key",
        ));
        assert_eq!(default.ports[0].number, 2222);
        assert!(default.ports[0].ssh);
        assert_eq!(default.stop_timeout_ms, 45_000);
        let required: Vec<(&str, bool)> = default
            .secrets
            .iter()
            .map(|n| (n.variable, n.required))
            .collect();
        assert_eq!(
            required,
            [("SSH_PUBLIC_KEYS", true), ("AGE_IDENTITY", true)]
        );
        // No Port line: 22; an identity of the spec's own: the variable is optional.
        let own = workload(&plan("PermitRootLogin no\n", "/run/keys/age.txt"));
        assert_eq!(own.ports[0].number, 22);
        assert!(!own.secrets[1].required);
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
