//! `spec -> closure -> layers -> image -> output`: the build, as the named
//! steps [`build`] runs in order.

use std::collections::BTreeMap;
use std::path::PathBuf;

use gpubox_layers::cache::LayerCache;
use gpubox_layers::plan::plan;
use gpubox_nix::Nix;
use gpubox_oci::blob::LayerBlob;
use gpubox_oci::image::{
    assemble_on, layer_annotations, BaseLayers, BuiltImage, ImageConfigInput, LayerInput,
};
use gpubox_oci::source::LayerSummary;
use gpubox_oci::Compression;
use gpubox_registry::PushOptions;
use gpubox_rootfs::Rootfs;
use gpubox_spec::Spec;

use crate::base::Base;
use crate::error::BuildError;
use crate::location::{with_default_tag, ImageLocation};
use crate::open::RegistryAccess;
use crate::output::{check_file_writable, check_output_writable, parent_folder, partial_folders};
use crate::push::attach_sbom;
use crate::reporter::{Bytes, Count, Reporter};
use crate::schedule::{build_layers, LayerJob};
use crate::store::StoreContents;
use crate::top::{gpu_settings, resolve_host_binaries, top_layer, GpuSettings};

/// What to build and where it goes.
pub struct BuildRequest {
    /// Where the image goes.
    pub output: ImageLocation,
    /// The layer cache's folder (see [`crate::cache_dir`]).
    pub cache_root: PathBuf,
    /// Where to write the image's SPDX SBOM, if anywhere.
    pub sbom: Option<PathBuf>,
    /// How to reach registries: the output's, and a `docker://` base image's.
    pub registry: PushOptions,
    /// `SOURCE_DATE_EPOCH` as the environment gives it, when the spec sets no
    /// `created`.
    pub source_date_epoch: Option<String>,
}

impl BuildRequest {
    /// The folders a build may leave unfinished files in when it is
    /// interrupted; removing this process's there (`gpubox_atomic::partial`)
    /// leaves no partial output and no half-written cache entry.
    pub fn unfinished_folders(&self) -> Vec<PathBuf> {
        let mut folders = partial_folders(&self.output, &self.cache_root);
        folders.extend(self.sbom.as_deref().map(parent_folder));
        folders
    }
}

/// What a build made.
pub struct Built {
    /// The image's manifest digest (`sha256:HEX`): its identity.
    pub manifest_digest: String,
    /// Store paths in the image.
    pub store_paths: usize,
}

/// Builds the image `spec` describes and writes it to `request.output`.
pub fn build(
    spec: &Spec,
    request: &BuildRequest,
    reporter: &dyn Reporter,
) -> Result<Built, BuildError> {
    let created = gpubox_spec::created_epoch(spec.created, request.source_date_epoch.as_deref())?;
    let mtime = u64::try_from(created).unwrap_or(0);
    // Fail before any work when the output cannot be written.
    check_output_writable(&request.output)?;
    if let Some(sbom) = &request.sbom {
        check_file_writable(sbom)?;
    }
    let registry = RegistryAccess {
        options: &request.registry,
        cache_root: &request.cache_root,
        reporter,
    };

    // spec -> base image
    let base = crate::base::open(spec, crate::platform::oci_architecture(), &registry)?;
    // spec -> closure
    let nix = Nix::new();
    let store = StoreContents::realise(spec, &nix, reporter)?;
    if !store.closure.is_empty() {
        reporter.step(&format!(
            "closure: {}, {}",
            Count(store.closure.len(), "store path"),
            Bytes(store.closure.total_nar_size())
        ));
    }
    // closure -> layers
    let GpuSettings {
        env: gpu_env,
        labels: gpu_labels,
    } = gpu_settings(spec, &store.closure)?;
    let host_files = resolve_host_binaries(spec, reporter)?;
    let nix_db = if spec.machine.nix_enable {
        reporter.step("registering the closure in the image's Nix database");
        Some(
            gpubox_rootfs::nix_db(&nix, &store.closure, created)
                .map_err(|e| BuildError::from(gpubox_rootfs::RootfsError::from(e)))?,
        )
    } else {
        None
    };
    let rootfs = top_layer(spec, &store, &host_files, &base, nix_db.as_ref(), reporter)?;
    // The config's environment and labels: what the programs are checked against.
    let settings = GpuSettings {
        env: image_env(spec, &base, &rootfs, gpu_env),
        labels: image_labels(spec, &base, gpu_labels),
    };
    crate::runnable::check_programs(
        spec,
        &settings.env,
        &base.working_dir(spec),
        &rootfs.entries,
        &store,
        &base,
        &request.cache_root,
    )?;
    let cache = LayerCache::open(&request.cache_root)?;
    let planned = plan(
        &store.closure,
        base.store_path_budget(spec, store.closure.is_empty())?,
    );
    let base_layers = base.copy_layers(&cache, reporter)?;
    let compression = compression(spec);
    let mut jobs: Vec<LayerJob<'_>> = planned
        .iter()
        .map(|layer| LayerJob::Store {
            key: LayerCache::key(&layer.paths, compression, mtime),
            paths: &layer.paths,
            estimate: layer.size,
        })
        .collect();
    jobs.push(LayerJob::Top {
        entries: &rootfs.entries,
    });
    let blobs = build_layers(&jobs, &cache, compression, mtime, reporter)?;
    // layers -> image
    let image = assemble(
        spec,
        &base,
        &base_layers,
        &jobs,
        blobs,
        &rootfs,
        settings,
        created,
    )?;
    // image -> output
    crate::output::write_output(
        &request.output,
        spec,
        &image,
        cache.store(),
        &request.registry,
        reporter,
    )?;
    if let Some(file) = &request.sbom {
        let sbom = crate::sbom::write_sbom(
            file,
            spec,
            &image,
            created,
            &store.closure,
            &host_files,
            base.manifest_digest(),
        )?;
        reporter.step(&format!("wrote the SBOM {}", file.display()));
        if let ImageLocation::Registry { reference } = &request.output {
            let reference = with_default_tag(reference, &spec.tag);
            attach_sbom(
                &reference,
                &image.manifest,
                &sbom,
                &request.registry,
                reporter,
            )?;
        }
    }
    Ok(Built {
        manifest_digest: image.manifest_digest.to_string(),
        store_paths: store.closure.len(),
    })
}

fn compression(spec: &Spec) -> Compression {
    match spec.compression {
        gpubox_spec::Compression::Gzip => Compression::Gzip,
        gpubox_spec::Compression::Zstd => Compression::Zstd,
        gpubox_spec::Compression::ZstdChunked => Compression::ZstdChunked,
        gpubox_spec::Compression::None => Compression::None,
    }
}

/// The image: the base's layers, then ours, under a config that merges the
/// base's, the generated settings, the GPU settings and the spec's.
/// The image's environment: generated defaults first, then the GPU settings,
/// then the spec's own `env`/`extraEnv`, which win, over the base's.
fn image_env(
    spec: &Spec,
    base: &Base,
    rootfs: &Rootfs,
    gpu_env: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = rootfs.env.clone();
    env.extend(gpu_env);
    base.env_under(spec, env)
}

/// The image's labels: the base's, then the GPU ones, then the spec's.
fn image_labels(
    spec: &Spec,
    base: &Base,
    gpu_labels: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = base.labels();
    labels.extend(gpu_labels);
    labels.extend(spec.labels.clone());
    labels
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    spec: &Spec,
    base: &Base,
    base_layers: &BaseLayers,
    jobs: &[LayerJob<'_>],
    blobs: Vec<LayerBlob>,
    rootfs: &Rootfs,
    settings: GpuSettings,
    created: i64,
) -> Result<BuiltImage, BuildError> {
    let layer_inputs: Vec<LayerInput> = jobs
        .iter()
        .zip(blobs)
        .map(|(job, blob)| {
            // What made the layer, on its descriptor (see `layer_annotations`).
            let (mut store_paths, key) = match job {
                LayerJob::Store { paths, key, .. } => (
                    paths.iter().map(|p| p.as_str().to_owned()).collect(),
                    Some(key.as_str()),
                ),
                LayerJob::Top { .. } => (Vec::new(), None),
            };
            store_paths.sort();
            let summary = LayerSummary {
                uncompressed_size: blob.uncompressed_size,
                entry_count: blob.entry_count,
                store_paths,
            };
            // The blob's own (zstd:chunked's TOC position) travel with it.
            let mut annotations = blob.annotations.clone();
            annotations.extend(layer_annotations(&summary, key));
            LayerInput {
                annotations,
                blob,
                created_by: job.describe(),
            }
        })
        .collect();
    let GpuSettings { env, labels } = settings;
    Ok(assemble_on(
        &ImageConfigInput {
            created,
            architecture: crate::platform::oci_architecture().to_owned(),
            os: "linux".to_owned(),
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            entrypoint: spec
                .entrypoint
                .clone()
                .unwrap_or_else(|| vec!["/bin/gpubox-init".to_owned()]),
            cmd: base.cmd(spec),
            exposed_ports: base.exposed_ports(spec),
            labels,
            user: rootfs.user.clone(),
            working_dir: base.working_dir(spec),
            title: spec.name.clone(),
            version: spec.tag.clone(),
        },
        base_layers,
        &layer_inputs,
    )?)
}
