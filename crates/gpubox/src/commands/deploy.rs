//! `gpubox deploy` and `gpubox doctor --k8s`: the pushed image's facts read from its
//! registry, the deployment rendered by `gpubox-deploy`, and the file written whole
//! (or not at all).

use std::io::Write;
use std::path::Path;

use gpubox_build::open::RegistryAccess;
use gpubox_deploy::workload::repository_of;
use gpubox_deploy::{ImageFacts, Options, SecretSources, Target, Verdict, Workload};
use gpubox_spec::Spec;

use crate::CliError;

/// What `gpubox deploy` was asked for.
pub struct DeployRequest<'a> {
    pub target: &'a str,
    pub spec: &'a Path,
    pub image: &'a str,
    pub name: Option<&'a str>,
    pub output: Option<&'a Path>,
    pub secrets: SecretSources,
    pub options: Options,
}

/// Writes the deployment; every check and read happens before the file is touched.
pub fn deploy(request: &DeployRequest<'_>, registry: &RegistryAccess<'_>) -> Result<(), CliError> {
    let target: Target = request.target.parse()?;
    let spec = gpubox_spec::load(request.spec)?;
    let image = image_facts(Some(&spec), request.image, registry)?;
    let workload = Workload::new(&spec, image, request.name)?;
    let secrets = request.secrets.read_for(&workload, target)?;
    let rendered = gpubox_deploy::render(target, &workload, &secrets, &request.options)?;
    for notice in &rendered.notices {
        warn(notice);
    }
    match request.output.filter(|path| *path != Path::new("-")) {
        Some(path) => {
            // A file holding keys is its owner's alone.
            let mode = if rendered.holds_secrets { 0o600 } else { 0o644 };
            std::fs::create_dir_all(gpubox_atomic::folder_of(path)).map_err(|reason| {
                CliError::WriteFile {
                    path: path.to_owned(),
                    reason,
                }
            })?;
            gpubox_atomic::write_bytes(
                path,
                &gpubox_atomic::Options::new().mode(mode),
                rendered.text.as_bytes(),
            )
            .map_err(|error| {
                let (_, path, reason) = error.into_parts();
                CliError::WriteFile { path, reason }
            })?;
            registry.reporter.step(&format!("wrote {}", path.display()));
        }
        None => std::io::stdout()
            .lock()
            .write_all(rendered.text.as_bytes())
            .map_err(CliError::Stdout)?,
    }
    Ok(())
}

/// What the manifest check was asked for.
pub struct ManifestCheck<'a> {
    pub manifest: &'a Path,
    /// The spec the image was built from; without it, the start-up plan in the
    /// image says what the init expects.
    pub spec: Option<&'a Path>,
    /// The image to compare with, in place of the one the manifest names.
    pub image: Option<&'a str>,
    pub as_json: bool,
}

/// Checks a Kubernetes manifest against the spec and the image; `Ok(false)` when a
/// check fails.
pub fn check_manifest(
    request: &ManifestCheck<'_>,
    registry: &RegistryAccess<'_>,
    out: &mut dyn Write,
) -> Result<bool, CliError> {
    let text = std::fs::read_to_string(request.manifest).map_err(|reason| {
        gpubox_deploy::DeployError::Manifest {
            file: request.manifest.to_owned(),
            reason: format!("cannot read it: {reason}"),
        }
    })?;
    let (name, in_manifest) = gpubox_deploy::manifest_image(request.manifest, &text)?;
    let named = request
        .image
        .map(str::to_owned)
        .or(in_manifest)
        .ok_or_else(|| gpubox_deploy::DeployError::Manifest {
            file: request.manifest.to_owned(),
            reason: "its container names no image".to_owned(),
        })?;
    let workload = match request.spec {
        Some(spec) => {
            let spec = gpubox_spec::load(spec)?;
            let image = image_facts(Some(&spec), &named, registry)?;
            Workload::new(&spec, image, None)?
        }
        None => {
            let image = image_facts(None, &named, registry)?;
            let reference = image.reference.clone();
            let plan = gpubox_build::open::image_plan(&reference, registry)?
                // Without a plan the init only runs `cmd`, stopping it within its
                // default grace; nothing else is expected of the pod.
                .unwrap_or_else(|| {
                    gpubox_initplan::InitPlan::new(gpubox_spec::DEFAULT_STOP_TIMEOUT_MS)
                });
            Workload::from_plan(&plan, image, &name)
        }
    };
    // The container to check is the one named after the manifest's workload.
    let workload = Workload { name, ..workload };
    let findings = gpubox_deploy::check_manifest(request.manifest, &text, &workload)?;
    let checks: Vec<gpubox_host::doctor::Check> = findings
        .into_iter()
        .map(|finding| gpubox_host::doctor::Check {
            name: finding.name,
            status: match finding.verdict {
                Verdict::Pass => gpubox_host::doctor::Status::Pass,
                Verdict::Warn => gpubox_host::doctor::Status::Warn,
                Verdict::Fail => gpubox_host::doctor::Status::Fail,
            },
            message: finding.message,
            fix: finding.fix,
        })
        .collect();
    super::doctor::report(&checks, request.as_json, out).map_err(CliError::Stdout)?;
    Ok(gpubox_host::doctor::healthy(&checks))
}

/// The image as the registry has it. A tag is resolved to its digest (refused when
/// it cannot be); a reference that names a digest is kept as written, and when its
/// registry cannot be reached its facts come from `spec`, when given, as a warning
/// says (a registry that answers, refusing the login or not knowing the digest, is
/// an error).
fn image_facts(
    spec: Option<&Spec>,
    given: &str,
    registry: &RegistryAccess<'_>,
) -> Result<ImageFacts, CliError> {
    let reference = given.strip_prefix("docker://").unwrap_or(given);
    let pinned = reference.contains('@');
    match gpubox_build::open::pushed_image(reference, registry) {
        Ok(pushed) => {
            if pushed.layers_without_size > 0 {
                warn(&format!(
                    "{} of the image's layers carry no unpacked size (another tool built them): their compressed size is counted in the disk estimate",
                    pushed.layers_without_size
                ));
            }
            Ok(ImageFacts {
                reference: if pinned {
                    reference.to_owned()
                } else {
                    format!("{}@{}", repository_of(reference), pushed.digest)
                },
                resolved_from: (!pinned).then(|| reference.to_owned()),
                architectures: pushed.architectures,
                unpacked_bytes: Some(pushed.unpacked_bytes),
                cuda: gpubox_cuda::image_cuda(&pushed.env),
                exposed_ports: pushed.exposed_ports,
                volumes: pushed.volumes,
                runs_init: pushed.entrypoint.first().map(String::as_str)
                    == Some(gpubox_initplan::INIT_PATH),
            })
        }
        Err(source) => match spec {
            Some(spec) if pinned && unreachable(&source) => {
                warn(&format!(
                    "cannot reach the registry of docker://{reference} ({source}): it is used as written, its platforms, CUDA release, ports and volumes taken from {} and its size unknown",
                    spec.file.display()
                ));
                Ok(ImageFacts::from_spec(spec, reference))
            }
            _ => Err(CliError::Unresolved {
                reference: reference.to_owned(),
                source: Box::new(source),
            }),
        },
    }
}

/// Whether reading the registry failed for want of an answer (no connection, a
/// failed request), not because the registry refused or does not have the image.
fn unreachable(error: &gpubox_build::BuildError) -> bool {
    matches!(
        error,
        gpubox_build::BuildError::Pull(gpubox_registry::PullError::Registry(
            gpubox_registry::PushError::Registry { .. }
        ))
    )
}

/// What a target cannot carry, said even under --quiet: nothing is dropped unseen.
fn warn(message: &str) {
    eprintln!("gpubox: warning: {message}");
}
