//! Kubernetes manifests: the workload (a Deployment, StatefulSet or Job), a Service
//! for the exposed ports, a Secret for the keys the init reads, PersistentVolumeClaims
//! for the folders that must outlive the pod, and with DRA a ResourceClaimTemplate.
//! Built from `k8s-openapi`'s typed API (1.34) and written as YAML documents, the
//! objects a workload needs first, so `kubectl apply -f` creates them in order.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, StatefulSet, StatefulSetSpec,
};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction,
    LocalObjectReference, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodResourceClaim, PodSpec, PodTemplateSpec, Probe, ResourceClaim, ResourceRequirements, Secret,
    SecretKeySelector, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::resource::v1::{
    CELDeviceSelector, DeviceClaim, DeviceRequest, DeviceSelector, ExactDeviceRequest,
    ResourceClaimSpec, ResourceClaimTemplate, ResourceClaimTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use crate::secrets::SecretValue;
use crate::workload::Workload;
use crate::{DeployError, GpuApi, Options, Rendered, WorkloadKind};

/// The resource NVIDIA's device plugin advertises.
pub const DEVICE_PLUGIN_RESOURCE: &str = "nvidia.com/gpu";
/// The DeviceClass NVIDIA's DRA driver installs for whole GPUs.
pub const DRA_DEVICE_CLASS: &str = "gpu.nvidia.com";
/// The name of the pod's claim, and of its request, for the GPUs.
const GPU_CLAIM: &str = "gpus";
/// Small state (host keys, tailscale's state) gets this much storage.
const SMALL_VOLUME: &str = "100Mi";
/// The pod's volume for `--shm-size`.
const SHM_VOLUME: &str = "dshm";
/// The label every object carries and the workload selects its pods by.
const NAME_LABEL: &str = "app.kubernetes.io/name";

/// The manifest for `workload`.
pub fn render(
    workload: &Workload,
    secrets: &[SecretValue],
    options: &Options,
) -> Result<Rendered, DeployError> {
    check_options(options)?;
    let name = &workload.name;
    let mut notices = Vec::new();
    let mut documents: Vec<String> = Vec::new();
    let secret_name = format!("{name}-keys");
    if !secrets.is_empty() {
        documents.push(yaml(&Secret {
            metadata: metadata(options, name, &secret_name),
            type_: Some("Opaque".to_owned()),
            string_data: Some(
                secrets
                    .iter()
                    .map(|s| (s.variable.to_owned(), s.value.clone()))
                    .collect(),
            ),
            ..Secret::default()
        })?);
    }
    let claims: Vec<(String, PersistentVolumeClaim)> = workload
        .persistent
        .iter()
        .map(|dir| {
            let size = if dir.small {
                SMALL_VOLUME.to_owned()
            } else {
                format!("{}Gi", options.volume_gb())
            };
            (
                dir.name.clone(),
                claim(options, name, &format!("{name}-{}", dir.name), &size),
            )
        })
        .collect();
    if options.kind != WorkloadKind::StatefulSet {
        for (_, pvc) in &claims {
            documents.push(yaml(pvc)?);
        }
    }
    let dra = options.gpus > 0 && options.gpu_api == GpuApi::Dra;
    if dra {
        documents.push(yaml(&resource_claim_template(workload, options))?);
    }
    let service_name = name.clone();
    let has_service = !workload.ports.is_empty() || options.kind == WorkloadKind::StatefulSet;
    if has_service {
        documents.push(yaml(&service(workload, options, &service_name))?);
    }
    let mut pod = pod_spec(workload, secrets, options, &secret_name, &claims);
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(name)),
            ..ObjectMeta::default()
        }),
        spec: None,
    };
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([(NAME_LABEL.to_owned(), name.clone())])),
        ..LabelSelector::default()
    };
    let workload_document = match options.kind {
        WorkloadKind::Deployment => yaml(&Deployment {
            metadata: metadata(options, name, name),
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                selector,
                // One GPU and ReadWriteOnce volumes: a rolling update would wait
                // forever for a second pod that cannot get either.
                strategy: Some(DeploymentStrategy {
                    type_: Some("Recreate".to_owned()),
                    ..DeploymentStrategy::default()
                }),
                template: PodTemplateSpec {
                    spec: Some(pod),
                    ..template
                },
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        })?,
        WorkloadKind::StatefulSet => yaml(&StatefulSet {
            metadata: metadata(options, name, name),
            spec: Some(StatefulSetSpec {
                replicas: Some(1),
                selector,
                service_name: Some(service_name),
                template: PodTemplateSpec {
                    spec: Some(pod),
                    ..template
                },
                volume_claim_templates: Some(
                    claims
                        .iter()
                        .map(|(volume, pvc)| PersistentVolumeClaim {
                            metadata: ObjectMeta {
                                name: Some(volume.clone()),
                                ..ObjectMeta::default()
                            },
                            ..pvc.clone()
                        })
                        .collect(),
                )
                .filter(|claims: &Vec<_>| !claims.is_empty()),
                ..StatefulSetSpec::default()
            }),
            ..StatefulSet::default()
        })?,
        WorkloadKind::Job => {
            // The main command's status is the job's result; a failure is retried
            // in the same pod (so on the same GPU node) a few times.
            pod.restart_policy = Some("OnFailure".to_owned());
            yaml(&Job {
                metadata: metadata(options, name, name),
                spec: Some(JobSpec {
                    backoff_limit: Some(3),
                    template: PodTemplateSpec {
                        spec: Some(pod),
                        ..template
                    },
                    ..JobSpec::default()
                }),
                ..Job::default()
            })?
        }
    };
    documents.push(workload_document);
    if workload.image.cuda.is_some() && options.gpus == 0 {
        notices.push(format!(
            "the image needs CUDA {} but --gpus 0 asks for no GPU: the pod gets none",
            workload
                .image
                .cuda
                .map(|c| c.to_string())
                .unwrap_or_default()
        ));
    }
    let mut text = header(workload, options);
    text.push_str(&documents.join("---\n"));
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(Rendered {
        text,
        holds_secrets: !secrets.is_empty(),
        notices,
    })
}

/// Comment lines saying what the file is and where it came from.
fn header(workload: &Workload, options: &Options) -> String {
    let mut lines = vec![format!(
        "# Written by `gpubox deploy kubernetes` from {}: apply with `kubectl apply -f`.",
        workload.source
    )];
    if let Some(tag) = &workload.image.resolved_from {
        lines.push(format!("# Image {tag}, pinned by digest."));
    }
    if let (Some(cuda), Some(driver)) = (workload.image.cuda, workload.image.minimum_driver()) {
        lines.push(format!(
            "# Needs CUDA {cuda}: an NVIDIA driver {driver} or newer on the node."
        ));
    }
    if options.gpu_api == GpuApi::Dra && options.gpus > 0 {
        lines.push(format!(
            "# GPUs through DRA (resource.k8s.io/v1, device class {DRA_DEVICE_CLASS}): needs NVIDIA's DRA driver."
        ));
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Refuses values Kubernetes would refuse, before anything is written.
fn check_options(options: &Options) -> Result<(), DeployError> {
    for (what, value) in [
        ("--cpu", &options.cpu),
        ("--memory", &options.memory),
        ("--shm-size", &options.shm_size),
    ] {
        if let Some(value) = value {
            if !is_quantity(value) {
                return Err(DeployError::BadValue {
                    what,
                    value: value.clone(),
                    expected: "a Kubernetes quantity",
                    fix: "write a number with an optional suffix: 500m, 4, 16Gi, 512Mi",
                });
            }
        }
    }
    for (what, value) in [
        ("--namespace", &options.namespace),
        ("--runtime-class", &options.runtime_class),
        ("--storage-class", &options.storage_class),
        ("--pull-secret", &options.pull_secret),
    ] {
        if let Some(value) = value {
            if crate::workload::dns_label(value).as_deref() != Some(value.as_str()) {
                return Err(DeployError::BadValue {
                    what,
                    value: value.clone(),
                    expected: "a Kubernetes name",
                    fix: "use lowercase letters, digits and `-`, starting and ending with a letter or digit",
                });
            }
        }
    }
    Ok(())
}

/// A number (decimal, optionally with an exponent) and an optional SI or binary suffix.
fn is_quantity(text: &str) -> bool {
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let number_ok = !number.is_empty() && number.parse::<f64>().is_ok_and(|n| n >= 0.0);
    let suffix_ok = matches!(
        suffix,
        "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"
    ) || (suffix.starts_with(['e', 'E']) && suffix[1..].parse::<i32>().is_ok());
    number_ok && suffix_ok
}

fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_owned(), name.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "gpubox".to_owned(),
        ),
    ])
}

/// An object's name, namespace and the workload's labels (`app` is the workload's name).
fn metadata(options: &Options, app: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: options.namespace.clone(),
        labels: Some(labels(app)),
        ..ObjectMeta::default()
    }
}

fn claim(options: &Options, app: &str, name: &str, size: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: metadata(options, app, name),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(size.to_owned()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            storage_class_name: options.storage_class.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

fn service(workload: &Workload, options: &Options, name: &str) -> Service {
    let ports: Vec<ServicePort> = workload
        .ports
        .iter()
        .map(|port| ServicePort {
            name: Some(port.name.clone()),
            port: i32::from(port.number),
            target_port: Some(IntOrString::String(port.name.clone())),
            protocol: Some(port.protocol.kubernetes().to_owned()),
            ..ServicePort::default()
        })
        .collect();
    let headless = ports.is_empty();
    Service {
        metadata: metadata(options, &workload.name, name),
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([(
                NAME_LABEL.to_owned(),
                workload.name.clone(),
            )])),
            // A StatefulSet without ports still needs its governing Service.
            cluster_ip: headless.then(|| "None".to_owned()),
            type_: (!headless).then(|| options.service_type.as_str().to_owned()),
            ports: (!headless).then_some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The GPUs as a DRA claim: exactly `--gpus` devices of NVIDIA's class, whose driver
/// supports the image's CUDA release when the image names one.
fn resource_claim_template(workload: &Workload, options: &Options) -> ResourceClaimTemplate {
    let selectors = workload.image.cuda.map(|cuda| {
        vec![DeviceSelector {
            cel: Some(CELDeviceSelector {
                expression: format!(
                    "device.attributes[\"{DRA_DEVICE_CLASS}\"].cudaDriverVersion.compareTo(semver(\"{}.{}.0\")) >= 0",
                    cuda.major, cuda.minor
                ),
            }),
        }]
    });
    ResourceClaimTemplate {
        metadata: metadata(
            options,
            &workload.name,
            &format!("{}-{GPU_CLAIM}", workload.name),
        ),
        spec: ResourceClaimTemplateSpec {
            metadata: None,
            spec: ResourceClaimSpec {
                devices: Some(DeviceClaim {
                    requests: Some(vec![DeviceRequest {
                        name: GPU_CLAIM.to_owned(),
                        exactly: Some(ExactDeviceRequest {
                            device_class_name: DRA_DEVICE_CLASS.to_owned(),
                            allocation_mode: Some("ExactCount".to_owned()),
                            count: Some(i64::from(options.gpus)),
                            selectors,
                            ..ExactDeviceRequest::default()
                        }),
                        ..DeviceRequest::default()
                    }]),
                    ..DeviceClaim::default()
                }),
            },
        },
    }
}

fn pod_spec(
    workload: &Workload,
    secrets: &[SecretValue],
    options: &Options,
    secret_name: &str,
    claims: &[(String, PersistentVolumeClaim)],
) -> PodSpec {
    let dra = options.gpus > 0 && options.gpu_api == GpuApi::Dra;
    let mut limits = BTreeMap::new();
    if options.gpus > 0 && options.gpu_api == GpuApi::DevicePlugin {
        limits.insert(
            DEVICE_PLUGIN_RESOURCE.to_owned(),
            Quantity(options.gpus.to_string()),
        );
    }
    let mut requests = BTreeMap::new();
    if let Some(cpu) = &options.cpu {
        requests.insert("cpu".to_owned(), Quantity(cpu.clone()));
    }
    if let Some(memory) = &options.memory {
        requests.insert("memory".to_owned(), Quantity(memory.clone()));
        // Memory is not compressible: past its request a pod is the first evicted.
        limits.insert("memory".to_owned(), Quantity(memory.clone()));
    }
    let probe = |period: i32, failures: i32| Probe {
        exec: Some(ExecAction {
            command: Some(workload.probe_command()),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let probes = !workload.readiness.is_empty() && workload.image.runs_init;
    // Probed every 5 s for as long as the container may take to start.
    let startup = options
        .startup_seconds
        .unwrap_or_else(|| workload.startup_seconds());
    let startup_failures = i32::try_from(startup.div_ceil(5).max(1)).unwrap_or(i32::MAX);
    let container = Container {
        name: workload.name.clone(),
        image: Some(workload.image.reference.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        ports: Some(
            workload
                .ports
                .iter()
                .map(|port| ContainerPort {
                    name: Some(port.name.clone()),
                    container_port: i32::from(port.number),
                    protocol: Some(port.protocol.kubernetes().to_owned()),
                    ..ContainerPort::default()
                })
                .collect(),
        )
        .filter(|ports: &Vec<_>| !ports.is_empty()),
        env: Some(
            secrets
                .iter()
                .map(|secret| EnvVar {
                    name: secret.variable.to_owned(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: secret_name.to_owned(),
                            key: secret.variable.to_owned(),
                            optional: None,
                        }),
                        ..EnvVarSource::default()
                    }),
                    ..EnvVar::default()
                })
                .collect(),
        )
        .filter(|env: &Vec<_>| !env.is_empty()),
        resources: Some(ResourceRequirements {
            limits: Some(limits).filter(|l| !l.is_empty()),
            requests: Some(requests).filter(|r| !r.is_empty()),
            claims: dra.then(|| {
                vec![ResourceClaim {
                    name: GPU_CLAIM.to_owned(),
                    request: None,
                }]
            }),
        })
        .filter(|r| r.limits.is_some() || r.requests.is_some() || r.claims.is_some()),
        startup_probe: probes.then(|| probe(5, startup_failures)),
        readiness_probe: probes.then(|| probe(10, 3)),
        liveness_probe: probes.then(|| probe(30, 3)),
        volume_mounts: Some(
            workload
                .persistent
                .iter()
                .map(|dir| VolumeMount {
                    name: dir.name.clone(),
                    mount_path: dir.path.clone(),
                    ..VolumeMount::default()
                })
                .chain(options.shm_size.as_ref().map(|_| VolumeMount {
                    name: SHM_VOLUME.to_owned(),
                    mount_path: "/dev/shm".to_owned(),
                    ..VolumeMount::default()
                }))
                .collect(),
        )
        .filter(|mounts: &Vec<_>| !mounts.is_empty()),
        ..Container::default()
    };
    let mut volumes: Vec<Volume> = Vec::new();
    if options.kind != WorkloadKind::StatefulSet {
        volumes.extend(claims.iter().map(|(volume, pvc)| Volume {
            name: volume.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: pvc.metadata.name.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Volume::default()
        }));
    }
    if let Some(size) = &options.shm_size {
        volumes.push(Volume {
            name: SHM_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_owned()),
                size_limit: Some(Quantity(size.clone())),
            }),
            ..Volume::default()
        });
    }
    let architectures = &workload.image.architectures;
    let (node_selector, affinity) = match architectures.as_slice() {
        [] => (None, None),
        [one] => (
            Some(BTreeMap::from([
                ("kubernetes.io/arch".to_owned(), one.clone()),
                ("kubernetes.io/os".to_owned(), "linux".to_owned()),
            ])),
            None,
        ),
        several => (
            Some(BTreeMap::from([(
                "kubernetes.io/os".to_owned(),
                "linux".to_owned(),
            )])),
            Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "kubernetes.io/arch".to_owned(),
                                operator: "In".to_owned(),
                                values: Some(several.to_vec()),
                            }]),
                            ..NodeSelectorTerm::default()
                        }],
                    }),
                    ..NodeAffinity::default()
                }),
                ..Affinity::default()
            }),
        ),
    };
    PodSpec {
        containers: vec![container],
        termination_grace_period_seconds: Some(workload.grace_seconds()),
        runtime_class_name: options.runtime_class.clone(),
        node_selector,
        affinity,
        volumes: Some(volumes).filter(|volumes| !volumes.is_empty()),
        image_pull_secrets: options
            .pull_secret
            .as_ref()
            .map(|name| vec![LocalObjectReference { name: name.clone() }]),
        resource_claims: dra.then(|| {
            vec![PodResourceClaim {
                name: GPU_CLAIM.to_owned(),
                resource_claim_template_name: Some(format!("{}-{GPU_CLAIM}", workload.name)),
                ..PodResourceClaim::default()
            }]
        }),
        ..PodSpec::default()
    }
}

/// One object as a YAML document.
fn yaml(object: &impl Serialize) -> Result<String, DeployError> {
    serde_norway::to_string(object).map_err(|error| DeployError::Render {
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::ImageFacts;
    use crate::Target;

    fn workload(toml: &str, architectures: &[&str]) -> Workload {
        let spec = gpubox_spec::parse(toml, std::path::Path::new("/p/gpubox.toml")).unwrap();
        let image = ImageFacts {
            architectures: architectures.iter().map(|a| (*a).to_owned()).collect(),
            cuda: "12.4".parse().ok(),
            ..ImageFacts::from_spec(&spec, "r.example/app@sha256:aa")
        };
        Workload::new(&spec, image, None).unwrap()
    }

    fn documents(rendered: &Rendered) -> Vec<serde_json::Value> {
        use serde::Deserialize;
        serde_norway::Deserializer::from_str(&rendered.text)
            .map(|d| serde_json::Value::deserialize(d).unwrap())
            .collect()
    }

    #[test]
    fn an_index_is_scheduled_on_any_of_its_architectures() {
        let workload = workload("name = \"app\"\ncmd = [\"/x\"]\n", &["amd64", "arm64"]);
        let rendered =
            crate::render(Target::Kubernetes, &workload, &[], &Options::default()).unwrap();
        let documents = documents(&rendered);
        let pod = &documents.last().unwrap()["spec"]["template"]["spec"];
        assert_eq!(
            pod["nodeSelector"],
            serde_json::json!({ "kubernetes.io/os": "linux" })
        );
        let term = &pod["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
            ["matchExpressions"][0];
        assert_eq!(term["values"], serde_json::json!(["amd64", "arm64"]));
        assert!(rendered.text.ends_with('\n'));
    }

    #[test]
    fn no_gpu_is_asked_for_with_zero_and_that_is_said_for_a_cuda_image() {
        let workload = workload("name = \"app\"\ncmd = [\"/x\"]\n", &["amd64"]);
        let options = Options {
            gpus: 0,
            ..Options::default()
        };
        let rendered = crate::render(Target::Kubernetes, &workload, &[], &options).unwrap();
        let documents = documents(&rendered);
        let container = &documents.last().unwrap()["spec"]["template"]["spec"]["containers"][0];
        assert!(container.get("resources").is_none(), "{container}");
        assert!(
            rendered.notices[0].contains("needs CUDA 12.4"),
            "{:?}",
            rendered.notices
        );
    }

    #[test]
    fn a_statefulset_without_ports_gets_a_headless_service() {
        let workload = workload("name = \"app\"\ncmd = [\"/x\"]\n", &["amd64"]);
        let options = Options {
            kind: WorkloadKind::StatefulSet,
            ..Options::default()
        };
        let rendered = crate::render(Target::Kubernetes, &workload, &[], &options).unwrap();
        let documents = documents(&rendered);
        let service = documents.iter().find(|d| d["kind"] == "Service").unwrap();
        assert_eq!(service["spec"]["clusterIP"], "None");
        assert!(service["spec"].get("ports").is_none());
        let set = documents
            .iter()
            .find(|d| d["kind"] == "StatefulSet")
            .unwrap();
        assert_eq!(set["spec"]["serviceName"], "app");
    }

    #[test]
    fn names_and_quantities_kubernetes_would_refuse_are_refused_first() {
        let workload = workload("name = \"app\"\ncmd = [\"/x\"]\n", &["amd64"]);
        for options in [
            Options {
                namespace: Some("Team A".to_owned()),
                ..Options::default()
            },
            Options {
                memory: Some("32GB".to_owned()),
                ..Options::default()
            },
            Options {
                runtime_class: Some("-nvidia".to_owned()),
                ..Options::default()
            },
        ] {
            let error = crate::render(Target::Kubernetes, &workload, &[], &options).unwrap_err();
            assert!(matches!(error, DeployError::BadValue { .. }), "{error}");
        }
    }

    #[test]
    fn quantities() {
        for good in ["4", "500m", "16Gi", "0.5", "1e3", "512Mi"] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["", "Gi", "16GB", "lots", "-1"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
