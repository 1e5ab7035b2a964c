//! `spec -> closure -> layers -> image -> output`: the build, as the named
//! steps [`build`] runs in order.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use gpubox_layers::cache::LayerCache;
use gpubox_layers::plan::plan;
use gpubox_nix::{Nix, StorePath, UnpackedPaths};
use gpubox_oci::blob::LayerBlob;
use gpubox_oci::image::{
    assemble_on, layer_annotations, BaseLayers, BuiltImage, ImageConfigInput, LayerInput,
};
use gpubox_oci::source::LayerSummary;
use gpubox_oci::Compression;
use gpubox_registry::{Blob, BlobUploader, PushOptions};
use gpubox_rootfs::Rootfs;
use gpubox_spec::Spec;

use crate::base::Base;
use crate::error::BuildError;
use crate::location::{with_default_tag, ImageLocation};
use crate::open::RegistryAccess;
use crate::output::{check_file_writable, check_output_writable, parent_folder, partial_folders};
use crate::push::attach_sbom;
use crate::push::PushHints;
use crate::reporter::{Bytes, Count, Reporter};
use crate::reuse::{RegistryLayers, Reused};
use crate::schedule::{build_layers, files_key, LayerJob, LayerSources, ProducedLayer};
use crate::store::StoreContents;
use crate::top::{gpu_settings, resolve_host_binaries, split_top, top_layer, GpuSettings};

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
    /// Images (`docker://HOST/REPO:TAG`) whose layers a build for a registry
    /// may reuse besides the destination's own ([`crate::reuse`]).
    pub cache_from: Vec<String>,
    /// A binary cache that store paths this store lacks are read from, and
    /// copied from only when a layer built here holds them ([`crate::store`]).
    pub substituter: Option<String>,
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
    let store = StoreContents::realise(spec, &nix, request.substituter.as_deref(), reporter)?;
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
    } = gpu_settings(spec, &store)?;
    let host_files = resolve_host_binaries(spec, reporter)?;
    let nix_db = if spec.machine.nix_enable {
        // The image's database is this store's registration of every path.
        let everything: Vec<StorePath> = store.fs.elsewhere().cloned().collect();
        store.copy_into_store(&nix, &everything, reporter)?;
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
    // The closure keeps at least one layer; gpubox's own layers take what is left.
    let room = base.own_layer_room(spec, store.closure.is_empty())?;
    let top = split_top(
        &rootfs.entries,
        &rootfs.parts,
        room - usize::from(!store.closure.is_empty()),
    );
    let planned = plan(&store.closure, room - top.len());
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
    for layer in &top {
        jobs.push(LayerJob::Files {
            entries: &layer.entries,
            created_by: layer.describe(spec),
            key: files_key(&layer.entries, compression, mtime)?,
        });
    }
    // What the layer cache lacks comes from the registry, or is made here.
    let uncached: Vec<usize> = (0..jobs.len())
        .filter(|&index| cache.get(jobs[index].key()).is_none())
        .collect();
    let reused = reuse_from_registry(spec, request, &jobs, &uncached, compression, &registry);
    let to_read: Vec<StorePath> = uncached
        .iter()
        .filter(|index| !reused.contains_key(index))
        .map(|&index| &jobs[index])
        .flat_map(|job| match job {
            LayerJob::Store { paths, .. } => paths.to_vec(),
            LayerJob::Files { .. } => Vec::new(),
        })
        .collect();
    let mut unpacked = UnpackedPaths::default();
    let tmp = request.cache_root.join("tmp");
    store.unpack(&nix, &to_read, &tmp, &mut unpacked, reporter)?;
    // For a registry, each layer goes up as soon as it is made, while the
    // others are still compressing; the push then sends the config and manifest.
    let uploader = match &request.output {
        ImageLocation::Registry { reference } => Some(BlobUploader::start(
            &with_default_tag(reference, &spec.tag),
            &request.registry,
        )?),
        _ => None,
    };
    let send_early = |blob: &LayerBlob| {
        if let Some(uploader) = &uploader {
            let digest = blob.digest.to_string();
            let (size, path) = (blob.size, cache.store().path(&blob.digest));
            uploader.send(
                Blob {
                    digest,
                    size,
                    mount_from: None,
                },
                path,
            );
        }
    };
    let sources = LayerSources {
        reused: &reused,
        unpacked: &unpacked,
        on_stored: &send_early,
    };
    let layers = build_layers(&jobs, &sources, &cache, compression, mtime, reporter)?;
    // Sending early is a head start: what failed, the push sends (or names).
    let early = match uploader.map(BlobUploader::finish) {
        Some(Ok(early)) => Some(early),
        Some(Err(error)) => {
            reporter.step(&format!(
                "sending layers early failed, the push sends them: {error}"
            ));
            None
        }
        None => None,
    };
    for (digest, why) in early.iter().flat_map(|early| &early.failed) {
        reporter.step(&format!(
            "sending {digest} early failed, the push sends it: {why}"
        ));
    }
    let hints = PushHints { early };
    // layers -> image
    let image = assemble(
        spec,
        &base,
        &base_layers,
        &jobs,
        layers,
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
        &hints,
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

/// For a build whose output is a registry, those of the `uncached` jobs whose
/// layers the destination's image or a `--cache-from` image has
/// ([`crate::reuse`]), by job index.
fn reuse_from_registry(
    spec: &Spec,
    request: &BuildRequest,
    jobs: &[LayerJob<'_>],
    uncached: &[usize],
    compression: Compression,
    registry: &RegistryAccess<'_>,
) -> HashMap<usize, Reused> {
    let ImageLocation::Registry { reference } = &request.output else {
        return HashMap::new();
    };
    let wanted: Vec<(usize, &str)> = uncached
        .iter()
        .map(|&index| (index, jobs[index].key()))
        .collect();
    if wanted.is_empty() {
        return HashMap::new();
    }
    let destination = with_default_tag(reference, &spec.tag);
    RegistryLayers::read(&destination, &request.cache_from, registry).take(
        &wanted,
        compression,
        registry,
    )
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
    layers: Vec<ProducedLayer>,
    rootfs: &Rootfs,
    settings: GpuSettings,
    created: i64,
) -> Result<BuiltImage, BuildError> {
    let layer_inputs: Vec<LayerInput> = jobs
        .iter()
        .zip(layers)
        .map(|(job, ProducedLayer { blob, key, .. })| {
            // What made the layer, on its descriptor (see `layer_annotations`).
            let mut store_paths: Vec<String> = match job {
                LayerJob::Store { paths, .. } => {
                    paths.iter().map(|p| p.as_str().to_owned()).collect()
                }
                LayerJob::Files { .. } => Vec::new(),
            };
            store_paths.sort();
            let summary = LayerSummary {
                uncompressed_size: blob.uncompressed_size,
                entry_count: blob.entry_count,
                store_paths,
            };
            // The blob's own (zstd:chunked's TOC position) travel with it.
            let mut annotations = blob.annotations.clone();
            annotations.extend(layer_annotations(&summary, Some((&key, blob.size))));
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
