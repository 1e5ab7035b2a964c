//! A RunPod pod template: the input of RunPod's GraphQL `saveTemplate` mutation,
//! documented at <https://docs.runpod.io/sdks/graphql/manage-pod-templates>.
//!
//! RunPod starts the image's own entrypoint, so `gpubox-init` stays PID 1. It puts the
//! account's SSH key into `PUBLIC_KEY`, which the init reads next to
//! `SSH_PUBLIC_KEYS`, so no key is needed here; it mounts the pod's volume at
//! `volumeMountPath` (one volume: the spec's first `volumes` entry) and proxies
//! `N/http` ports over HTTPS while `N/tcp` ports get a public TCP port.

use serde::Serialize;

use crate::secrets::SecretValue;
use crate::workload::{Protocol, Workload};
use crate::{DeployError, Options, Rendered};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Template {
    name: String,
    image_name: String,
    /// Empty: the image's `cmd` stays the command.
    docker_args: String,
    container_disk_in_gb: u64,
    volume_in_gb: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    volume_mount_path: Option<String>,
    ports: String,
    env: Vec<EnvVar>,
    is_serverless: bool,
    readme: String,
    /// The registry login saved in RunPod's settings, for a private image.
    #[serde(skip_serializing_if = "Option::is_none")]
    container_registry_auth_id: Option<String>,
}

#[derive(Serialize)]
struct EnvVar {
    key: String,
    value: String,
}

pub fn render(
    workload: &Workload,
    secrets: &[SecretValue],
    options: &Options,
) -> Result<Rendered, DeployError> {
    let mut notices = Vec::new();
    let mut ports = Vec::new();
    for port in &workload.ports {
        match port.protocol {
            Protocol::Tcp if port.ssh || options.tcp_ports.contains(&port.number) => {
                ports.push(format!("{}/tcp", port.number));
            }
            Protocol::Tcp => ports.push(format!("{}/http", port.number)),
            other => notices.push(format!(
                "RunPod exposes TCP and HTTP ports only: {}/{} is left out",
                port.number,
                other.docker()
            )),
        }
    }
    for number in &options.tcp_ports {
        if !workload.ports.iter().any(|port| port.number == *number) {
            return Err(DeployError::BadValue {
                what: "--tcp-port",
                value: number.to_string(),
                expected: "a port the spec exposes",
                fix: "name a port of `exposedPorts` (or the SSH port)",
            });
        }
    }
    let mut volumes = workload.persistent.iter().filter(|dir| !dir.small);
    let volume = volumes.next();
    for dir in volumes.chain(workload.persistent.iter().filter(|dir| dir.small)) {
        let kept = volume.map_or_else(
            || "none here".to_owned(),
            |volume| format!("at {}", volume.path),
        );
        notices.push(format!(
            "a RunPod pod has one volume ({kept}): {}, {}, is on the container disk, which a restart wipes",
            dir.path, dir.purpose
        ));
    }
    let template = Template {
        name: workload.name.clone(),
        image_name: workload.image.reference.clone(),
        docker_args: String::new(),
        container_disk_in_gb: workload.disk_gb(options.disk_gb),
        volume_in_gb: volume.map_or(0, |_| options.volume_gb()),
        volume_mount_path: volume.map(|dir| dir.path.clone()),
        ports: ports.join(","),
        env: secrets
            .iter()
            .map(|secret| EnvVar {
                key: secret.variable.to_owned(),
                value: secret.value.clone(),
            })
            .collect(),
        is_serverless: false,
        readme: crate::readme(workload, "RunPod"),
        container_registry_auth_id: options.pull_secret.clone(),
    };
    Rendered::json(&template, !secrets.is_empty(), notices)
}
