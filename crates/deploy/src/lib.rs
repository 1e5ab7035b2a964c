//! `gpubox-deploy` writes what runs a pushed image elsewhere, from what the spec
//! already knows: Kubernetes manifests, a vast.ai template and a RunPod template
//! (`gpubox deploy`), and checks a Kubernetes manifest against the spec and the image
//! (`gpubox doctor --k8s`).
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
//!   so any number of services make one probe; a startup probe allows the sum of their
//!   timeouts, as each waits for the ones before it.
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
//! let image = ImageFacts {
//!     reference: "registry.example/trainer@sha256:0123".to_owned(),
//!     resolved_from: None,
//!     architectures: vec!["amd64".to_owned()],
//!     unpacked_bytes: Some(8_000_000_000),
//!     cuda: "12.4".parse().ok(),
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

    /// Whether the output is YAML (else JSON).
    pub fn writes_yaml(self) -> bool {
        self == Target::Kubernetes
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
    /// The size of each `volumes` folder's storage, in GiB (RunPod: GB).
    pub volume_gb: u64,
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
}

impl Default for Options {
    fn default() -> Options {
        Options {
            gpus: 1,
            disk_gb: None,
            volume_gb: 20,
            tcp_ports: Vec::new(),
            kind: WorkloadKind::default(),
            gpu_api: GpuApi::default(),
            runtime_class: None,
            namespace: None,
            cpu: None,
            memory: None,
            storage_class: None,
            service_type: ServiceType::default(),
        }
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

/// The deployment of `workload` on `target`, with `secrets` from
/// [`SecretSources::read_for`].
pub fn render(
    target: Target,
    workload: &Workload,
    secrets: &[SecretValue],
    options: &Options,
) -> Result<Rendered, DeployError> {
    let mut rendered = match target {
        Target::Kubernetes => kubernetes::render(workload, secrets, options)?,
        Target::Vast => vast::render(workload, secrets, options)?,
        Target::Runpod => runpod::render(workload, secrets, options)?,
    };
    if target != Target::Kubernetes {
        let kubernetes_only = [
            (options.kind != WorkloadKind::default(), "--kind"),
            (options.gpu_api != GpuApi::default(), "--gpu-api"),
            (options.runtime_class.is_some(), "--runtime-class"),
            (options.namespace.is_some(), "--namespace"),
            (options.cpu.is_some(), "--cpu"),
            (options.memory.is_some(), "--memory"),
            (options.storage_class.is_some(), "--storage-class"),
            (
                options.service_type != ServiceType::default(),
                "--service-type",
            ),
        ];
        for (_, option) in kubernetes_only.iter().filter(|(given, _)| *given) {
            rendered.notices.push(format!(
                "{option} applies to kubernetes only; it is not used here"
            ));
        }
    }
    if target == Target::Runpod && options.gpus != 1 {
        rendered.notices.push(format!(
            "a RunPod template holds no GPU count: choose {} GPU(s) when you create the pod",
            options.gpus
        ));
    }
    Ok(rendered)
}

/// The template's readme: what the image needs and how to reach it.
fn readme(workload: &Workload, platform: &str) -> String {
    let mut lines = vec![format!(
        "Built with gpubox from {}; image {}.",
        workload.spec_file.file_name().map_or_else(
            || workload.spec_file.display().to_string(),
            |f| f.to_string_lossy().into_owned()
        ),
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
}
