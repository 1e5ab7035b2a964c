//! `gpubox-deploy` writes what runs a pushed image elsewhere, from what the spec
//! already knows: Kubernetes manifests, a vast.ai template and a RunPod template
//! (`gpubox deploy`), and checks a Kubernetes manifest against the image, from the
//! start-up plan in it or from its spec (`gpubox doctor --k8s`).
//!
//! It owns the facts a deployment needs ([`Workload`]: ports, the keys and secrets
//! `gpubox-init` reads, folders that must outlive the container, readiness checks,
//! stop timeout, platforms, CUDA release), their rendering per [`Target`], and the
//! manifest check. It writes no file and reaches no registry: the CLI reads the
//! image's facts ([`ImageFacts`]) from the registry and writes the text where asked.
//! It reads only the secret files the user names ([`SecretSources`]).
//!
//! Choices, for the README's "Deploying" section:
//! - Kubernetes objects come from `k8s-openapi`'s typed API for 1.34, the release
//!   where DRA (`resource.k8s.io/v1`) became stable, and validate against newer ones.
//! - The probes run `gpubox-init ready`, one try of every service's readiness check,
//!   so any number of services make one probe; the startup probe allows
//!   [`Workload::startup_seconds`]: the services' timeouts (each waits for the ones
//!   before it), tailscaled's, and a minute for the steps before them.
//! - The ports and persistent folders are the pushed image's config's
//!   (`ExposedPorts`, `Volumes`), so a base image's count; the keys and readiness
//!   checks are the spec's.
//! - `terminationGracePeriodSeconds` is the stop timeout plus
//!   [`workload::GRACE_MARGIN_SECONDS`]; a Deployment uses the `Recreate` strategy, as
//!   a second pod could get neither the GPU nor the ReadWriteOnce volumes.
//! - Disk for rented machines: one and a half times the unpacked image, at least
//!   10 GB ([`Workload::disk_gb`]).
//!
//! ```
//! use gpubox_deploy::{render, ImageFacts, Options, SecretSources, Target, Workload};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = gpubox_spec::parse(
//!     "name = \"trainer\"\ncmd = [\"/bin/train\"]\nexposedPorts = [\"8888/tcp\"]\n",
//!     std::path::Path::new("/project/gpubox.toml"),
//! )?;
//! // As read from the registry; here, from the spec, with a size.
//! let image = ImageFacts {
//!     unpacked_bytes: Some(8_000_000_000),
//!     ..ImageFacts::from_spec(&spec, "registry.example/trainer@sha256:0123")
//! };
//! let workload = Workload::new(&spec, image, None)?;
//! let target: Target = "runpod".parse()?;
//! let secrets = SecretSources::default().read_for(&workload, target)?;
//! let template = render(target, &workload, &secrets, &Options::default())?;
//! assert!(template.text.contains("\"ports\": \"8888/http\""));
//! assert!(template.text.contains("\"containerDiskInGb\": 12"));
//! # Ok(())
//! # }
//! ```

mod check;
mod error;
mod kubernetes;
mod runpod;
mod secrets;
mod vast;
pub mod workload;

use std::str::FromStr;

pub use check::{check_manifest, manifest_image, Finding, Verdict};
pub use error::DeployError;
pub use kubernetes::{DEVICE_PLUGIN_RESOURCE, DRA_DEVICE_CLASS};
pub use secrets::{SecretSource, SecretSources, SecretValue};
pub use workload::{ImageFacts, Workload};

/// Where the deployment goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Kubernetes,
    Vast,
    Runpod,
}

impl Target {
    /// The names `gpubox deploy` takes.
    pub const NAMES: [&'static str; 4] = ["kubernetes", "k8s", "vast", "runpod"];

    /// The target's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Target::Kubernetes => "kubernetes",
            Target::Vast => "vast",
            Target::Runpod => "runpod",
        }
    }
}

impl FromStr for Target {
    type Err = DeployError;

    fn from_str(text: &str) -> Result<Target, DeployError> {
        match text.to_ascii_lowercase().as_str() {
            "kubernetes" | "k8s" => Ok(Target::Kubernetes),
            "vast" | "vast.ai" | "vastai" => Ok(Target::Vast),
            "runpod" => Ok(Target::Runpod),
            _ => Err(DeployError::UnknownTarget {
                given: text.to_owned(),
                suggestion: Target::NAMES
                    .into_iter()
                    .map(|name| (strsim::jaro_winkler(name, text), name))
                    .filter(|(score, _)| *score > 0.7)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, name)| name),
            }),
        }
    }
}

/// What runs the pod on Kubernetes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WorkloadKind {
    #[default]
    Deployment,
    StatefulSet,
    Job,
}

/// How a pod asks Kubernetes for GPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GpuApi {
    /// `nvidia.com/gpu: N` in the container's limits (NVIDIA's device plugin).
    #[default]
    DevicePlugin,
    /// A `ResourceClaimTemplate` (`resource.k8s.io/v1`) of NVIDIA's DRA driver.
    Dra,
}

/// The Kubernetes Service's type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ServiceType {
    #[default]
    ClusterIp,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIp => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// How to deploy, beyond what the spec and the image say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How many GPUs (0: none).
    pub gpus: u32,
    /// The rented machine's disk in GB, in place of [`Workload::disk_gb`]'s estimate.
    pub disk_gb: Option<u64>,
    /// The size of each `volumes` folder's storage, in GiB (RunPod: GB); `None`:
    /// [`DEFAULT_VOLUME_GB`].
    pub volume_gb: Option<u64>,
    /// RunPod: ports served as raw TCP rather than through RunPod's HTTP proxy.
    pub tcp_ports: Vec<u16>,
    pub kind: WorkloadKind,
    pub gpu_api: GpuApi,
    /// `runtimeClassName`, only when asked (e.g. `nvidia` where the GPU runtime is
    /// not the default).
    pub runtime_class: Option<String>,
    pub namespace: Option<String>,
    /// The container's CPU request (a quantity).
    pub cpu: Option<String>,
    /// The container's memory request and limit (a quantity).
    pub memory: Option<String>,
    pub storage_class: Option<String>,
    pub service_type: ServiceType,
    /// Kubernetes: how long the startup probe waits, in place of
    /// [`Workload::startup_seconds`]'s estimate.
    pub startup_seconds: Option<u64>,
    /// Kubernetes: a memory-backed `/dev/shm` of this size (a quantity), for data
    /// loaders that share tensors through it (the runtime's default is 64 MiB).
    pub shm_size: Option<String>,
    /// The login for a private registry: a Kubernetes `imagePullSecrets` Secret,
    /// or RunPod's `containerRegistryAuthId`.
    pub pull_secret: Option<String>,
}

/// [`Options::volume_gb`] when not given.
pub const DEFAULT_VOLUME_GB: u64 = 20;

impl Default for Options {
    fn default() -> Options {
        Options {
            gpus: 1,
            disk_gb: None,
            volume_gb: None,
            tcp_ports: Vec::new(),
            kind: WorkloadKind::default(),
            gpu_api: GpuApi::default(),
            runtime_class: None,
            namespace: None,
            cpu: None,
            memory: None,
            storage_class: None,
            service_type: ServiceType::default(),
            startup_seconds: None,
            shm_size: None,
            pull_secret: None,
        }
    }
}

impl Options {
    /// [`Options::volume_gb`], or its default.
    pub fn volume_gb(&self) -> u64 {
        self.volume_gb.unwrap_or(DEFAULT_VOLUME_GB)
    }

    /// The options given that `target` does not read, by name.
    fn unused_by(&self, target: Target) -> Vec<&'static str> {
        use Target::{Kubernetes, Runpod, Vast};
        let given: [(&'static str, bool, &[Target]); 14] = [
            (
                "--kind",
                self.kind != WorkloadKind::default(),
                &[Kubernetes],
            ),
            (
                "--gpu-api",
                self.gpu_api != GpuApi::default(),
                &[Kubernetes],
            ),
            (
                "--runtime-class",
                self.runtime_class.is_some(),
                &[Kubernetes],
            ),
            ("--namespace", self.namespace.is_some(), &[Kubernetes]),
            ("--cpu", self.cpu.is_some(), &[Kubernetes]),
            ("--memory", self.memory.is_some(), &[Kubernetes]),
            (
                "--storage-class",
                self.storage_class.is_some(),
                &[Kubernetes],
            ),
            (
                "--service-type",
                self.service_type != ServiceType::default(),
                &[Kubernetes],
            ),
            (
                "--startup-seconds",
                self.startup_seconds.is_some(),
                &[Kubernetes],
            ),
            ("--shm-size", self.shm_size.is_some(), &[Kubernetes]),
            ("--disk-gb", self.disk_gb.is_some(), &[Vast, Runpod]),
            ("--tcp-port", !self.tcp_ports.is_empty(), &[Runpod]),
            (
                "--volume-gb",
                self.volume_gb.is_some(),
                &[Kubernetes, Runpod],
            ),
            (
                "--pull-secret",
                self.pull_secret.is_some(),
                &[Kubernetes, Runpod],
            ),
        ];
        given
            .into_iter()
            .filter(|(_, given, readers)| *given && !readers.contains(&target))
            .map(|(option, _, _)| option)
            .collect()
    }
}

/// A written deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// Whether the text holds secret values (write it readable by its owner only).
    pub holds_secrets: bool,
    /// What the target cannot carry, or what the user must do, for the CLI to say.
    pub notices: Vec<String>,
}

impl Rendered {
    /// A template as pretty JSON with a final newline.
    fn json(
        template: &impl serde::Serialize,
        holds_secrets: bool,
        notices: Vec<String>,
    ) -> Result<Rendered, DeployError> {
        let mut text =
            serde_json::to_string_pretty(template).map_err(|error| DeployError::Render {
                reason: error.to_string(),
            })?;
        text.push('\n');
        Ok(Rendered {
            text,
            holds_secrets,
            notices,
        })
    }
}

/// The deployment of `workload` on `target`, with `secrets` from
/// [`SecretSources::read_for`].
pub fn render(
    target: Target,
    workload: &Workload,
    secrets: &[SecretValue],
    options: &Options,
) -> Result<Rendered, DeployError> {
    if options.volume_gb == Some(0) {
        return Err(DeployError::BadValue {
            what: "--volume-gb",
            value: "0".to_owned(),
            expected: "a size",
            fix: "give each `volumes` folder at least 1 GB, or leave --volume-gb out (20)",
        });
    }
    let mut rendered = match target {
        Target::Kubernetes => kubernetes::render(workload, secrets, options)?,
        Target::Vast => vast::render(workload, secrets, options)?,
        Target::Runpod => runpod::render(workload, secrets, options)?,
    };
    for option in options.unused_by(target) {
        rendered.notices.push(format!(
            "{option} is not used by {}: it is ignored",
            target.name()
        ));
    }
    if !workload.image.runs_init {
        rendered.notices.push(
            "the image's entrypoint is not gpubox-init: nothing reads the keys handed over, and no probe is written"
                .to_owned(),
        );
    }
    if target == Target::Runpod {
        match options.gpus {
            1 => {}
            0 => rendered.notices.push(
                "a RunPod template holds no GPU count: create the pod as a CPU pod".to_owned(),
            ),
            gpus => rendered.notices.push(format!(
                "a RunPod template holds no GPU count: choose {gpus} GPUs when you create the pod"
            )),
        }
    }
    Ok(rendered)
}

/// The template's readme: what the image needs and how to reach it.
fn readme(workload: &Workload, platform: &str) -> String {
    let mut lines = vec![format!(
        "Built with gpubox from {}; image {}.",
        // The spec's file name: the machine that wrote the template is no concern
        // of the one that runs it.
        workload
            .source
            .rsplit('/')
            .next()
            .unwrap_or(&workload.source),
        workload.image.reference
    )];
    if let (Some(cuda), Some(driver)) = (workload.image.cuda, workload.image.minimum_driver()) {
        lines.push(format!(
            "Needs CUDA {cuda}: pick a {platform} machine whose NVIDIA driver is {driver} or newer."
        ));
    }
    if let Some(ssh) = workload.ports.iter().find(|port| port.ssh) {
        lines.push(format!(
            "SSH on port {}, keys only: from PUBLIC_KEY or SSH_PUBLIC_KEYS.",
            ssh.number
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_their_suggestions() {
        assert_eq!("k8s".parse::<Target>().ok(), Some(Target::Kubernetes));
        assert_eq!("RunPod".parse::<Target>().ok(), Some(Target::Runpod));
        match "kubernets".parse::<Target>() {
            Err(DeployError::UnknownTarget { suggestion, .. }) => {
                assert_eq!(suggestion, Some("kubernetes"))
            }
            other => panic!("{other:?}"),
        }
        match "nomad".parse::<Target>() {
            Err(DeployError::UnknownTarget { suggestion, .. }) => assert_eq!(suggestion, None),
            other => panic!("{other:?}"),
        }
    }

    fn workload(toml: &str) -> Workload {
        let spec = gpubox_spec::parse(toml, std::path::Path::new("/p/gpubox.toml")).unwrap();
        Workload::new(
            &spec,
            ImageFacts::from_spec(&spec, "r.example/app@sha256:aa"),
            None,
        )
        .unwrap()
    }

    #[test]
    fn options_a_target_does_not_read_are_said_to_be_ignored() {
        let workload = workload("name = \"app\"\ncmd = [\"/x\"]\n");
        let options = Options {
            disk_gb: Some(50),
            tcp_ports: vec![22],
            namespace: Some("team".to_owned()),
            ..Options::default()
        };
        let rendered = render(Target::Kubernetes, &workload, &[], &options).unwrap();
        assert_eq!(
            rendered.notices,
            [
                "--disk-gb is not used by kubernetes: it is ignored",
                "--tcp-port is not used by kubernetes: it is ignored"
            ]
        );
        let rendered = render(Target::Vast, &workload, &[], &options).unwrap();
        assert!(rendered
            .notices
            .contains(&"--namespace is not used by vast: it is ignored".to_owned()));
        let zero = Options {
            volume_gb: Some(0),
            ..Options::default()
        };
        assert!(render(Target::Runpod, &workload, &[], &zero).is_err());
    }

    #[test]
    fn a_tailscale_key_file_makes_the_key_optional_not_unused() {
        let workload = workload(
            "name = \"app\"\ncmd = [\"/x\"]\nhostBinaries = [\"/bin/sh\"]\n[tailscale]\nenable = true\nauthKeyFile = \"/run/agenix/ts\"\n",
        );
        let needed = &workload.secrets[0];
        assert_eq!(needed.variable, "TAILSCALE_AUTHKEY");
        assert!(!needed.required);
        assert!(SecretSources::default()
            .read_for(&workload, Target::Kubernetes)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn vast_templates_are_private_and_refuse_what_env_cannot_carry() {
        let workload = workload("name = \"app\"\ncmd = [\"/x\"]\n[ssh]\nenable = true\n");
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys.pub");
        let key = |comment: &str| {
            format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEAnH3QKBriVVPlcPLK13M {comment}\n")
        };
        let sources = SecretSources {
            ssh_keys: Some(SecretSource::File(keys.clone())),
            ..SecretSources::default()
        };
        std::fs::write(&keys, key("me@host")).unwrap();
        let secrets = sources.read_for(&workload, Target::Vast).unwrap();
        let rendered = render(Target::Vast, &workload, &secrets, &Options::default()).unwrap();
        let template: serde_json::Value = serde_json::from_str(&rendered.text).unwrap();
        assert_eq!(template["private"], true);
        std::fs::write(&keys, key("it's me")).unwrap();
        let quoted = sources.read_for(&workload, Target::Vast).unwrap_err();
        assert!(quoted.to_string().contains("vast.ai"), "{quoted}");
        // Kubernetes and RunPod carry the quote.
        assert!(sources.read_for(&workload, Target::Kubernetes).is_ok());
        std::fs::write(&keys, key("me").repeat(20)).unwrap();
        let secrets = sources.read_for(&workload, Target::Vast).unwrap();
        let long = render(Target::Vast, &workload, &secrets, &Options::default()).unwrap_err();
        assert!(matches!(long, DeployError::TooLong { .. }), "{long}");
    }
}
