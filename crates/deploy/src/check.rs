//! `gpubox doctor --k8s MANIFEST`: a Kubernetes manifest (written by `gpubox deploy`
//! or by hand) checked against what the image needs (a [`Workload`] from the
//! start-up plan in the image, or from its spec): the image pinned to
//! the pushed digest, the ports, the variables the init reads, the grace period, the
//! GPU request, the folders that must persist, the probes and the architecture.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde_json::Value;

use crate::workload::Workload;
use crate::{DeployError, DEVICE_PLUGIN_RESOURCE};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

/// One check's verdict, what was found, and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub name: &'static str,
    pub verdict: Verdict,
    pub message: String,
    pub fix: Option<String>,
}

impl Finding {
    fn pass(name: &'static str, message: String) -> Finding {
        Finding {
            name,
            verdict: Verdict::Pass,
            message,
            fix: None,
        }
    }

    fn problem(name: &'static str, verdict: Verdict, message: String, fix: String) -> Finding {
        Finding {
            name,
            verdict,
            message,
            fix: Some(fix),
        }
    }
}

/// The objects of a manifest that the checks look at.
struct Manifest {
    /// The workload's kind and name.
    workload: (String, String),
    pod: PodSpec,
    /// Secrets by name, with their keys.
    secrets: BTreeMap<String, BTreeSet<String>>,
    /// The pod template's labels, which a Service must select.
    pod_labels: BTreeMap<String, String>,
    /// Each Service's selector and its ports' targets.
    services: Vec<ServiceTargets>,
    /// The claim templates of a StatefulSet, by name.
    claim_templates: BTreeSet<String>,
}

/// What a Service selects and which container ports it sends to.
struct ServiceTargets {
    selector: BTreeMap<String, String>,
    /// (target, protocol): the `targetPort` (a number or a port name), else `port`.
    targets: Vec<(IntOrString, String)>,
}

/// Checks the manifest `text` (from `file`) against `workload`.
pub fn check_manifest(
    file: &Path,
    text: &str,
    workload: &Workload,
) -> Result<Vec<Finding>, DeployError> {
    let manifest = parse(file, text)?;
    let bad = |reason: String| DeployError::Manifest {
        file: file.to_owned(),
        reason,
    };
    let container = pick_container(&manifest.pod, &workload.name).ok_or_else(|| {
        bad(format!(
            "the {} {} has no container",
            manifest.workload.0, manifest.workload.1
        ))
    })?;
    let mut findings = vec![
        image(container, workload),
        ports(container, &manifest, workload),
    ];
    findings.extend(secrets(container, &manifest, workload));
    findings.push(grace(&manifest.pod, workload));
    findings.push(gpu(container, &manifest.pod, workload));
    findings.extend(volumes(container, &manifest, workload));
    findings.push(probes(container, workload));
    findings.push(architecture(&manifest.pod, workload));
    Ok(findings)
}

fn parse(file: &Path, text: &str) -> Result<Manifest, DeployError> {
    let bad = |reason: String| DeployError::Manifest {
        file: file.to_owned(),
        reason,
    };
    let mut workload = None;
    let mut secrets = BTreeMap::new();
    let mut services = Vec::new();
    let mut pod_labels = BTreeMap::new();
    let mut claim_templates = BTreeSet::new();
    for (number, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document)
            .map_err(|error| bad(format!("document {} is not YAML: {error}", number + 1)))?;
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().unwrap_or_default().to_owned();
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match kind.as_str() {
            "Deployment" | "StatefulSet" | "Job" | "Pod" => {
                let (pod, labels) = if kind == "Pod" {
                    (&value["spec"], &value["metadata"]["labels"])
                } else {
                    (
                        &value["spec"]["template"]["spec"],
                        &value["spec"]["template"]["metadata"]["labels"],
                    )
                };
                pod_labels = string_map(labels);
                claim_templates = value["spec"]["volumeClaimTemplates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|claim| claim["metadata"]["name"].as_str().map(str::to_owned))
                    .collect();
                let pod: PodSpec = serde_json::from_value(pod.clone()).map_err(|error| {
                    bad(format!(
                        "the pod of the {kind} {name} is not a valid PodSpec: {error}"
                    ))
                })?;
                if workload.replace(((kind, name), pod)).is_some() {
                    return Err(bad(
                        "it holds more than one workload; check one at a time".to_owned()
                    ));
                }
            }
            "Secret" => {
                let keys = ["data", "stringData"]
                    .iter()
                    .filter_map(|field| value[field].as_object())
                    .flat_map(|map| map.keys().cloned())
                    .collect();
                secrets.insert(name, keys);
            }
            "Service" => {
                let targets = value["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|port| {
                        let protocol = port["protocol"].as_str().unwrap_or("TCP").to_owned();
                        let target = match &port["targetPort"] {
                            Value::String(name) => IntOrString::String(name.clone()),
                            Value::Number(number) => {
                                IntOrString::Int(i32::try_from(number.as_i64()?).ok()?)
                            }
                            _ => IntOrString::Int(i32::try_from(port["port"].as_i64()?).ok()?),
                        };
                        Some((target, protocol))
                    })
                    .collect();
                services.push(ServiceTargets {
                    selector: string_map(&value["spec"]["selector"]),
                    targets,
                });
            }
            _ => {}
        }
    }
    let (workload, pod) = workload
        .ok_or_else(|| bad("it holds no Deployment, StatefulSet, Job or Pod".to_owned()))?;
    Ok(Manifest {
        workload,
        pod,
        secrets,
        pod_labels,
        services,
        claim_templates,
    })
}

/// A YAML map of strings (labels, a selector); anything else gives an empty one.
fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
        .collect()
}

impl Manifest {
    /// Whether a Service that selects the pod sends to the container's port
    /// `number` (named `name`) over `protocol`.
    fn serves(&self, number: i32, name: Option<&str>, protocol: &str) -> bool {
        self.services
            .iter()
            .filter(|service| {
                !service.selector.is_empty()
                    && service
                        .selector
                        .iter()
                        .all(|(key, value)| self.pod_labels.get(key) == Some(value))
            })
            .flat_map(|service| &service.targets)
            .any(|(target, service_protocol)| {
                service_protocol == protocol
                    && match target {
                        IntOrString::Int(port) => *port == number,
                        IntOrString::String(port_name) => Some(port_name.as_str()) == name,
                    }
            })
    }
}

/// The manifest's workload's name and the image it runs: that of its container of
/// the same name (as `gpubox deploy` writes it), else of its first container.
pub fn manifest_image(file: &Path, text: &str) -> Result<(String, Option<String>), DeployError> {
    let manifest = parse(file, text)?;
    let name = manifest.workload.1.clone();
    let image = pick_container(&manifest.pod, &name).and_then(|c| c.image.clone());
    Ok((name, image))
}

/// The container named `name`, else the first.
fn pick_container<'a>(pod: &'a PodSpec, name: &str) -> Option<&'a Container> {
    pod.containers
        .iter()
        .find(|c| c.name == name)
        .or_else(|| pod.containers.first())
}

fn image(container: &Container, workload: &Workload) -> Finding {
    let named = container.image.clone().unwrap_or_default();
    let Some((_, digest)) = named.split_once('@') else {
        return Finding::problem(
            "image",
            Verdict::Fail,
            format!(
                "container {} runs {named:?}, named by tag: the tag can move to another image",
                container.name
            ),
            format!("pin the image by digest: {}", workload.image.reference),
        );
    };
    match workload.image.digest() {
        Some(expected) if expected != digest => Finding::problem(
            "image",
            Verdict::Fail,
            format!(
                "container {} runs {digest}, but the image is {expected}",
                container.name
            ),
            format!(
                "write `gpubox deploy` again, or set the image to {}",
                workload.image.reference
            ),
        ),
        _ => Finding::pass(
            "image",
            format!("container {} runs {named}", container.name),
        ),
    }
}

fn ports(container: &Container, manifest: &Manifest, workload: &Workload) -> Finding {
    let declared: BTreeSet<(i32, String)> = container
        .ports
        .iter()
        .flatten()
        .map(|p| {
            (
                p.container_port,
                p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
            )
        })
        .collect();
    let wanted: Vec<(i32, String, String)> = workload
        .ports
        .iter()
        .map(|p| {
            (
                i32::from(p.number),
                p.protocol.kubernetes().to_owned(),
                format!("{}/{}", p.number, p.protocol.docker()),
            )
        })
        .collect();
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(n, proto, _)| !declared.contains(&(*n, proto.clone())))
        .map(|(_, _, shown)| shown.as_str())
        .collect();
    if !missing.is_empty() {
        return Finding::problem(
            "ports",
            Verdict::Fail,
            format!(
                "container {} does not declare {}",
                container.name,
                missing.join(", ")
            ),
            "add them to the container's `ports` and to a Service".to_owned(),
        );
    }
    let port_name = |number: i32, protocol: &str| {
        container.ports.iter().flatten().find_map(|p| {
            (p.container_port == number && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                .then(|| p.name.clone())
                .flatten()
        })
    };
    let unserved: Vec<&str> = wanted
        .iter()
        .filter(|(n, proto, _)| !manifest.serves(*n, port_name(*n, proto).as_deref(), proto))
        .map(|(_, _, shown)| shown.as_str())
        .collect();
    if !unserved.is_empty() {
        return Finding::problem(
            "ports",
            Verdict::Warn,
            format!(
                "no Service in the manifest that selects the pod sends to {}",
                unserved.join(", ")
            ),
            "add a Service for them, or reach the pod some other way (kubectl port-forward)"
                .to_owned(),
        );
    }
    let shown: Vec<&str> = wanted.iter().map(|(_, _, s)| s.as_str()).collect();
    Finding::pass(
        "ports",
        if shown.is_empty() {
            "the image exposes no port".to_owned()
        } else {
            format!("{} declared and exposed by a Service", shown.join(", "))
        },
    )
}

/// One finding per variable the init reads for this spec.
fn secrets(container: &Container, manifest: &Manifest, workload: &Workload) -> Vec<Finding> {
    let mut findings = Vec::new();
    for needed in &workload.secrets {
        let variable = needed.variable;
        let direct = container.env.iter().flatten().find(|e| e.name == variable);
        let from_secret = container
            .env_from
            .iter()
            .flatten()
            .filter_map(|source| source.secret_ref.as_ref().map(|s| s.name.clone()))
            .find(|name| {
                manifest
                    .secrets
                    .get(name)
                    .is_some_and(|keys| keys.contains(variable))
            });
        let finding = match (direct, from_secret) {
            (Some(env), _) => match env
                .value_from
                .as_ref()
                .and_then(|from| from.secret_key_ref.as_ref())
            {
                Some(reference) => match manifest.secrets.get(&reference.name) {
                    Some(keys) if keys.contains(&reference.key) => Finding::pass(
                        "secrets",
                        format!("{variable} comes from Secret {} (key {})", reference.name, reference.key),
                    ),
                    Some(_) => Finding::problem(
                        "secrets",
                        Verdict::Fail,
                        format!("{variable} reads key {} of Secret {}, which has no such key", reference.key, reference.name),
                        format!("add {} to the Secret", reference.key),
                    ),
                    None => Finding::problem(
                        "secrets",
                        Verdict::Warn,
                        format!("{variable} comes from Secret {}, which is not in this manifest", reference.name),
                        format!("create Secret {} with key {} before applying", reference.name, reference.key),
                    ),
                },
                None => Finding::pass("secrets", format!("{variable} is set in the container's env")),
            },
            (None, Some(secret)) => Finding::pass(
                "secrets",
                format!("{variable} comes from Secret {secret} (envFrom)"),
            ),
            (None, None) if needed.required => Finding::problem(
                "secrets",
                Verdict::Fail,
                format!("the init expects {variable}: {}", needed.why),
                format!(
                    "write the manifest with `gpubox deploy kubernetes {} ...`, or set {variable} from a Secret",
                    crate::secrets::option_for(needed.variable)
                ),
            ),
            (None, None) => Finding::pass(
                "secrets",
                format!("{variable} is not set, and the spec does not need it"),
            ),
        };
        findings.push(finding);
    }
    findings
}

fn grace(pod: &PodSpec, workload: &Workload) -> Finding {
    // Kubernetes' default when the field is absent.
    let grace = pod.termination_grace_period_seconds.unwrap_or(30);
    let needed = workload.stop_timeout_seconds();
    if grace < needed {
        Finding::problem(
            "grace",
            Verdict::Fail,
            format!("terminationGracePeriodSeconds is {grace}, shorter than the image's stopTimeout of {needed} s: the services are killed before they finish stopping"),
            format!("set terminationGracePeriodSeconds to at least {}", workload.grace_seconds()),
        )
    } else if grace < workload.grace_seconds() {
        Finding::problem(
            "grace",
            Verdict::Warn,
            format!("terminationGracePeriodSeconds is {grace}, the image's stopTimeout with no time left for the init to reap and exit"),
            format!("set terminationGracePeriodSeconds to {}", workload.grace_seconds()),
        )
    } else {
        Finding::pass(
            "grace",
            format!("terminationGracePeriodSeconds {grace} covers the stopTimeout of {needed} s"),
        )
    }
}

fn gpu(container: &Container, pod: &PodSpec, workload: &Workload) -> Finding {
    let resources = container.resources.as_ref();
    let plugin = resources
        .and_then(|r| r.limits.as_ref())
        .and_then(|limits| limits.get(DEVICE_PLUGIN_RESOURCE))
        .map(|q| q.0.clone());
    let claims = resources
        .and_then(|r| r.claims.as_ref())
        .is_some_and(|c| !c.is_empty())
        && pod.resource_claims.as_ref().is_some_and(|c| !c.is_empty());
    match (plugin, claims, workload.image.cuda) {
        (Some(count), _, _) => Finding::pass("gpu", format!("{DEVICE_PLUGIN_RESOURCE}: {count}")),
        (None, true, _) => Finding::pass("gpu", "GPUs come from a DRA resource claim".to_owned()),
        (None, false, Some(cuda)) => Finding::problem(
            "gpu",
            Verdict::Fail,
            format!("the image needs CUDA {cuda}, and the pod asks for no GPU"),
            format!("add `{DEVICE_PLUGIN_RESOURCE}: 1` to the container's limits, or a DRA claim (gpubox deploy --gpu-api dra)"),
        ),
        (None, false, None) => Finding::pass("gpu", "no GPU asked for, and the image names no CUDA release".to_owned()),
    }
}

fn volumes(container: &Container, manifest: &Manifest, workload: &Workload) -> Vec<Finding> {
    workload
        .persistent
        .iter()
        .map(|dir| {
            let mount = container.volume_mounts.iter().flatten().find(|mount| {
                mount.mount_path.trim_end_matches('/') == dir.path.trim_end_matches('/')
            });
            let Some(mount) = mount else {
                return Finding::problem(
                    "volumes",
                    Verdict::Warn,
                    format!(
                        "nothing is mounted at {}, which holds {}: it is lost with the pod",
                        dir.path, dir.purpose
                    ),
                    format!("mount a PersistentVolumeClaim at {}", dir.path),
                );
            };
            let volume = manifest
                .pod
                .volumes
                .iter()
                .flatten()
                .find(|volume| volume.name == mount.name);
            let claimed = manifest.claim_templates.contains(&mount.name)
                || volume.is_some_and(|v| v.persistent_volume_claim.is_some());
            if claimed {
                Finding::pass("volumes", format!("{} is on a volume claim", dir.path))
            } else {
                Finding::problem(
                    "volumes",
                    Verdict::Warn,
                    format!(
                        "{} (which holds {}) is mounted from volume {}, which is no PersistentVolumeClaim: it is lost with the pod",
                        dir.path, dir.purpose, mount.name
                    ),
                    format!("mount a PersistentVolumeClaim at {}", dir.path),
                )
            }
        })
        .collect()
}

fn probes(container: &Container, workload: &Workload) -> Finding {
    if workload.readiness.is_empty() {
        return Finding::pass("probes", "no service has a readiness check".to_owned());
    }
    let services: Vec<&str> = workload
        .readiness
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    if container.readiness_probe.is_some() {
        Finding::pass(
            "probes",
            format!(
                "a readiness probe is set ({} have checks)",
                services.join(", ")
            ),
        )
    } else {
        Finding::problem(
            "probes",
            Verdict::Warn,
            format!("no readiness probe, though {} have readiness checks: traffic arrives before they are ready", services.join(", ")),
            format!("add a readinessProbe running `{}`", workload.probe_command().join(" ")),
        )
    }
}

fn architecture(pod: &PodSpec, workload: &Workload) -> Finding {
    let image = &workload.image.architectures;
    if image.is_empty() {
        return Finding::pass("arch", "the image's architecture is unknown".to_owned());
    }
    let mut chosen: Vec<String> = pod
        .node_selector
        .iter()
        .flatten()
        .filter(|(key, _)| *key == "kubernetes.io/arch")
        .map(|(_, value)| value.clone())
        .collect();
    let terms = pod
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|s| s.node_selector_terms.clone())
        .unwrap_or_default();
    for term in terms {
        for requirement in term.match_expressions.into_iter().flatten() {
            if requirement.key == "kubernetes.io/arch" && requirement.operator == "In" {
                chosen.extend(requirement.values.into_iter().flatten());
            }
        }
    }
    let wrong: Vec<&String> = chosen.iter().filter(|arch| !image.contains(arch)).collect();
    if !wrong.is_empty() {
        let wrong: Vec<&str> = wrong.iter().map(|s| s.as_str()).collect();
        return Finding::problem(
            "arch",
            Verdict::Fail,
            format!(
                "the pod may run on {} nodes, and the image is for {}",
                wrong.join(", "),
                image.join(", ")
            ),
            "select nodes of the image's architecture (kubernetes.io/arch)".to_owned(),
        );
    }
    if chosen.is_empty() {
        return Finding::problem(
            "arch",
            Verdict::Warn,
            format!("nothing selects {} nodes: in a mixed cluster the pod may land where the image cannot run", image.join(" or ")),
            "add a nodeSelector kubernetes.io/arch".to_owned(),
        );
    }
    Finding::pass("arch", format!("nodes of {} only", chosen.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::workload::ImageFacts;

    fn workload(toml: &str) -> Workload {
        let spec = gpubox_spec::parse(toml, Path::new("/p/gpubox.toml")).unwrap();
        let image = ImageFacts {
            architectures: vec!["amd64".to_owned()],
            cuda: "12.4".parse().ok(),
            ..ImageFacts::from_spec(&spec, "127.0.0.1:5000/app@sha256:aa")
        };
        Workload::new(&spec, image, None).unwrap()
    }

    fn verdicts(findings: &[Finding]) -> Vec<(&'static str, Verdict)> {
        findings.iter().map(|f| (f.name, f.verdict)).collect()
    }

    #[test]
    fn a_hand_written_manifest_is_told_what_it_lacks() {
        let workload = workload(
            "name = \"app\"\ncmd = [\"/bin/app\"]\nstopTimeout = 60\n[ssh]\nenable = true\n",
        );
        let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    spec:\n      containers:\n      - name: app\n        image: 127.0.0.1:5000/app:latest\n";
        let findings = check_manifest(Path::new("m.yaml"), manifest, &workload).unwrap();
        let verdicts = verdicts(&findings);
        for failed in ["image", "ports", "secrets", "grace", "gpu"] {
            assert!(
                verdicts.contains(&(failed, Verdict::Fail)),
                "{failed}: {findings:#?}"
            );
        }
        assert!(
            verdicts.contains(&("volumes", Verdict::Warn)),
            "{findings:#?}"
        );
        assert!(verdicts.contains(&("arch", Verdict::Warn)), "{findings:#?}");
        let grace = findings.iter().find(|f| f.name == "grace").unwrap();
        assert!(
            grace.message.contains("30") && grace.message.contains("60"),
            "{}",
            grace.message
        );
        assert!(grace.fix.as_deref().unwrap().contains("65"), "{grace:?}");
    }

    #[test]
    fn a_manifest_without_a_workload_is_refused() {
        let error = check_manifest(
            Path::new("m.yaml"),
            "kind: Service\n",
            &workload("name = \"app\"\ncmd = [\"/x\"]\n"),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("m.yaml: it holds no Deployment"),
            "{error}"
        );
    }

    #[test]
    fn services_are_matched_by_selector_and_target_port_and_claims_by_their_source() {
        let workload = workload(
            "name = \"app\"\ncmd = [\"/x\"]\nexposedPorts = [\"8888/tcp\"]\nvolumes = [\"/workspace\"]\nstopTimeout = 10\n",
        );
        let manifest = |grace: u32, service_port: &str, selector: &str, volume: &str| {
            format!(
                "kind: Service\nspec:\n  selector: {{{selector}}}\n  ports:\n  - {service_port}\n---\n\
                 kind: Deployment\nmetadata: {{name: app}}\nspec:\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n\
                 \x20     terminationGracePeriodSeconds: {grace}\n      containers:\n      - name: app\n\
                 \x20       image: 127.0.0.1:5000/app@sha256:aa\n        ports: [{{name: http, containerPort: 8888}}]\n\
                 \x20       volumeMounts: [{{name: ws, mountPath: /workspace}}]\n      volumes: [{{name: ws, {volume}}}]\n"
            )
        };
        let verdict = |text: &str, name: &str| {
            let findings = check_manifest(Path::new("m.yaml"), text, &workload).unwrap();
            findings
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.verdict)
                .unwrap()
        };
        let claim = "persistentVolumeClaim: {claimName: ws}";
        // Port 80 sending to the container's named port, for the pod's labels.
        let good = manifest(15, "{port: 80, targetPort: http}", "app: web", claim);
        assert_eq!(verdict(&good, "ports"), Verdict::Pass);
        assert_eq!(verdict(&good, "volumes"), Verdict::Pass);
        assert_eq!(verdict(&good, "grace"), Verdict::Pass);
        let by_number = manifest(15, "{port: 80, targetPort: 8888}", "app: web", claim);
        assert_eq!(verdict(&by_number, "ports"), Verdict::Pass);
        // A Service that selects other pods, or sends elsewhere, exposes nothing here.
        let other_pods = manifest(15, "{port: 8888}", "app: db", claim);
        assert_eq!(verdict(&other_pods, "ports"), Verdict::Warn);
        let elsewhere = manifest(15, "{port: 8888, targetPort: 9000}", "app: web", claim);
        assert_eq!(verdict(&elsewhere, "ports"), Verdict::Warn);
        // An emptyDir is mounted, but does not outlive the pod.
        let scratch = manifest(
            15,
            "{port: 80, targetPort: http}",
            "app: web",
            "emptyDir: {}",
        );
        assert_eq!(verdict(&scratch, "volumes"), Verdict::Warn);
        // The stop timeout with no time for the init to exit is a warning.
        let tight = manifest(10, "{port: 80, targetPort: http}", "app: web", claim);
        assert_eq!(verdict(&tight, "grace"), Verdict::Warn);
    }
}
