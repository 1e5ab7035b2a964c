//! `spec -> closure -> layers -> image -> output`: the build, as the named
//! steps [`build`] runs in order.

use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use gpubox_layers::cache::LayerCache;
use gpubox_layers::plan::plan;
use gpubox_nix::{Nix, StorePath, UnpackedPaths};
use gpubox_oci::blob::LayerBlob;
use gpubox_oci::image::{
    assemble_on, layer_annotations, BaseLayers, BuiltImage, ImageConfigInput, LayerInput,
};
use gpubox_oci::index::Artifact;
use gpubox_oci::source::LayerSummary;
use gpubox_oci::Compression;
use gpubox_registry::{Blob, BlobUploader, EarlyUploads, PushOptions};
use gpubox_rootfs::Rootfs;
use gpubox_spec::{Item, PackageRef, Platform, Spec};

use crate::base::Base;
use crate::error::{platform_list, BuildError};
use crate::location::{with_default_tag, ImageLocation};
use crate::open::RegistryAccess;
use crate::output::{check_file_writable, check_output_writable, parent_folder, partial_folders};
use crate::push::attach_sbom;
use crate::push::PushHints;
use crate::reporter::{Bytes, Count, Reporter};
use crate::reuse::{RegistryLayers, Reused};
use crate::schedule::{build_layers, files_key, LayerJob, LayerSources, ProducedLayer};
use crate::store::StoreContents;
use crate::top::{
    gpu_settings, resolve_host_binaries, split_top, top_layer, GpuSettings, TopInputs,
};

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
    /// `--platform`: the platforms to build, in place of the spec's; empty
    /// means the spec's `platforms` (or the build machine's).
    pub platforms: Vec<Platform>,
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
    /// The digest a tag names (`sha256:HEX`): the image's manifest's, or for
    /// several platforms the index's. Its identity.
    pub manifest_digest: String,
    /// Store paths in the image (in all its platforms' images together).
    pub store_paths: usize,
}

/// What went into one platform's image, for the output and the SBOM.
struct PlatformParts {
    platform: Platform,
    closure: gpubox_nix::Closure,
    host_files: Vec<gpubox_hostbin::HostFile>,
    base_digest: Option<String>,
    early: Option<EarlyUploads>,
}

/// Builds the image `spec` describes and writes it to `request.output`: one
/// image, or for several platforms one image each and the index naming them.
pub fn build(
    spec: &Spec,
    request: &BuildRequest,
    reporter: &dyn Reporter,
) -> Result<Built, BuildError> {
    let created = gpubox_spec::created_epoch(spec.created, request.source_date_epoch.as_deref())?;
    let platforms = platforms_to_build(spec, request, reporter)?;
    // Fail before any work when the output cannot be written.
    check_output_writable(&request.output)?;
    if let Some(sbom) = &request.sbom {
        for platform in &platforms {
            check_file_writable(&sbom_file(sbom, *platform, platforms.len()))?;
        }
    }
    let registry = RegistryAccess {
        options: &request.registry,
        cache_root: &request.cache_root,
        reporter,
    };
    // Every platform's packages are sorted out before any is built; a store
    // path's files are read once, whichever platforms list it.
    let systems = StorePathSystems::default();
    let platform_specs = platforms
        .iter()
        .map(|&platform| packages_for(spec, platform, &platforms, &systems))
        .collect::<Result<Vec<Spec>, BuildError>>()?;
    // What the registry holds is read once, by the first platform with a
    // layer its cache lacks, for every platform.
    let destination_layers = OnceCell::new();
    let mut made = Vec::with_capacity(platforms.len());
    for (&platform, platform_spec) in platforms.iter().zip(&platform_specs) {
        if platforms.len() > 1 {
            reporter.step(&format!("building the {platform} image"));
        }
        made.push(build_platform(
            platform_spec,
            platform,
            request,
            &registry,
            &destination_layers,
            created,
            reporter,
        )?);
    }
    let cache = LayerCache::open(&request.cache_root)?;
    let (mut images, mut made): (Vec<BuiltImage>, Vec<PlatformParts>) = made.into_iter().unzip();
    let artifact = match images.len() {
        1 => Artifact::Image(images.remove(0)),
        _ => {
            let annotations = images[0].annotations.clone();
            let index = gpubox_oci::index::assemble_index(images, annotations)?;
            reporter.step(&format!(
                "index {} of {}",
                index.index_digest,
                platform_list(&platforms)
            ));
            Artifact::Index(index)
        }
    };
    let hints = PushHints {
        early: sum_early(made.iter_mut().filter_map(|m| m.early.take())),
    };
    // image -> output
    crate::output::write_output(
        &request.output,
        spec,
        &artifact,
        cache.store(),
        &request.registry,
        &hints,
        reporter,
    )?;
    if let Some(file) = &request.sbom {
        for (made, image) in made.iter().zip(artifact.images()) {
            let file = sbom_file(file, made.platform, platforms.len());
            let subject = crate::sbom::SbomSubject {
                image,
                closure: &made.closure,
                host_files: &made.host_files,
                base_image_digest: made.base_digest.clone(),
                index_digest: match &artifact {
                    Artifact::Index(index) => Some(index.index_digest.to_string()),
                    Artifact::Image(_) => None,
                },
            };
            let sbom = crate::sbom::write_sbom(&file, spec, created, subject)?;
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
    }
    let store_paths: BTreeSet<&StorePath> = made
        .iter()
        .flat_map(|m| m.closure.paths().map(|info| &info.path))
        .collect();
    Ok(Built {
        manifest_digest: artifact.digest().to_string(),
        store_paths: store_paths.len(),
    })
}

/// The platforms this build makes: `--platform`, else the spec's `platforms`,
/// else the build machine's; narrowed to one for an output that holds one
/// image (podman: the build machine's), refused where that cannot be chosen.
fn platforms_to_build(
    spec: &Spec,
    request: &BuildRequest,
    reporter: &dyn Reporter,
) -> Result<Vec<Platform>, BuildError> {
    let platforms = if request.platforms.is_empty() {
        spec.platforms_to_build()
            .ok_or(BuildError::UnknownBuildMachine {
                machine: std::env::consts::ARCH,
            })?
    } else {
        request.platforms.clone()
    };
    if platforms.len() < 2 {
        return Ok(platforms);
    }
    match &request.output {
        ImageLocation::Engine {
            engine: gpubox_engines::Engine::Podman,
            ..
        } => match Platform::build_machine().filter(|p| platforms.contains(p)) {
            Some(own) => {
                reporter.step(&format!(
                    "podman's storage takes one platform: building and loading {own}, this \
                     machine's (pick another with --platform)"
                ));
                Ok(vec![own])
            }
            None => Err(BuildError::OnePlatformOutput {
                output: request.output.to_string(),
                platforms,
            }),
        },
        ImageLocation::Engine { .. } | ImageLocation::DockerArchive { .. } => {
            Err(BuildError::OnePlatformOutput {
                output: request.output.to_string(),
                platforms,
            })
        }
        _ => Ok(platforms),
    }
}

/// The spec as `platform` builds it: its `platform."…"` keys in place, and of
/// its `systemPackages` those for this platform. An entry built for another
/// Nix system (`{ system }`, `#legacyPackages.aarch64-linux.x`, or a store path
/// whose programs are for that CPU) goes to that platform's image; one for a
/// platform this build does not make, or written under this platform's own
/// `systemPackages` for another CPU, is an error.
fn packages_for(
    spec: &Spec,
    platform: Platform,
    platforms: &[Platform],
    systems: &StorePathSystems,
) -> Result<Spec, BuildError> {
    let seen = spec.for_platform(platform);
    let routing = Routing {
        seen,
        platform,
        platforms,
    };
    let mut routed = seen.clone();
    routed.system_packages = routing.route(
        "systemPackages",
        &seen.system_packages,
        seen.system_packages != spec.system_packages,
        |package| match package {
            PackageRef::StorePath(path) => systems.of(path),
            // A checked system, or one an installable names: gpubox builds it.
            other => other
                .system()
                .and_then(Platform::of_nix_system)
                .map(|p| (p, None)),
        },
    )?;
    routed.store_paths = routing.route(
        "storePaths",
        &seen.store_paths,
        seen.store_paths != spec.store_paths,
        |path| systems.of(path),
    )?;
    Ok(routed)
}

/// Which of a list's entries go into one platform's image.
struct Routing<'a> {
    /// The spec as the platform sees it.
    seen: &'a Spec,
    platform: Platform,
    platforms: &'a [Platform],
}

impl Routing<'_> {
    /// The entries of `items` (the spec's `key`) for this platform: those with
    /// no platform of their own, or its. `system_of` gives the platform an entry
    /// is built for and, for a store path, the ELF file that says so. An entry for another platform of
    /// the build is left to it, unless `own_list` (the platform's own table
    /// wrote the list): then, as for a platform the build does not make, it is
    /// an error.
    fn route<T: Clone>(
        &self,
        key: &str,
        items: &[Item<T>],
        own_list: bool,
        system_of: impl Fn(&T) -> Option<(Platform, Option<PathBuf>)>,
    ) -> Result<Vec<Item<T>>, BuildError> {
        let platform = self.platform;
        let mut kept = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let Some((built_for, file)) = system_of(&item.value) else {
                kept.push(item.clone());
                continue;
            };
            if built_for == platform {
                kept.push(item.clone());
                continue;
            }
            if self.platforms.contains(&built_for) && !own_list {
                continue;
            }
            let what = format!("{key}[{index}]");
            let error = match file {
                Some(file) => BuildError::WrongArchitecture {
                    what: format!("{what}'s {}", file.display()),
                    machine: built_for.machine().to_owned(),
                    platform,
                    help: format!(
                        "give the {platform} image a store path built for {} (Nix system \
                         {}), or list this one under the platform it was built for",
                        platform.machine(),
                        platform.nix_system()
                    ),
                },
                None => BuildError::NoPlatformFor {
                    what: what.clone(),
                    system: built_for.nix_system().to_owned(),
                    platforms: self.platforms.to_vec(),
                },
            };
            return Err(error.in_spec(self.seen, item.span, what));
        }
        Ok(kept)
    }
}

/// The platform each store path's programs are built for, and the ELF file
/// that says so ([`crate::store::store_path_machine`]), read once per path.
#[derive(Default)]
struct StorePathSystems(RefCell<HashMap<String, Option<(Platform, PathBuf)>>>);

impl StorePathSystems {
    fn of(&self, path: &str) -> Option<(Platform, Option<PathBuf>)> {
        let mut known = self.0.borrow_mut();
        let found = known
            .entry(path.to_owned())
            .or_insert_with(|| crate::store::store_path_machine(path));
        found.clone().map(|(platform, file)| (platform, Some(file)))
    }
}

/// `--sbom FILE` for one platform of several: `FILE` with the platform before
/// its extensions (`sbom.spdx.json` -> `sbom.linux-arm64.spdx.json`).
fn sbom_file(file: &Path, platform: Platform, platforms: usize) -> PathBuf {
    if platforms < 2 {
        return file.to_owned();
    }
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match name.split_once('.') {
        Some((stem, extensions)) => format!("{stem}.{}.{extensions}", platform.file_stem()),
        None => format!("{name}.{}", platform.file_stem()),
    };
    file.with_file_name(name)
}

/// What went up early for every platform, as one.
fn sum_early(early: impl Iterator<Item = EarlyUploads>) -> Option<EarlyUploads> {
    early.reduce(|mut all, one| {
        all.uploaded_blobs += one.uploaded_blobs;
        all.uploaded_bytes += one.uploaded_bytes;
        all.failed.extend(one.failed);
        all
    })
}

/// Builds `platform`'s image: its base, closure, layers and config; the
/// layers go to the cache (and, for a registry, up as they are made).
fn build_platform(
    spec: &Spec,
    platform: Platform,
    request: &BuildRequest,
    registry: &RegistryAccess<'_>,
    destination_layers: &OnceCell<RegistryLayers>,
    created: i64,
    reporter: &dyn Reporter,
) -> Result<(BuiltImage, PlatformParts), BuildError> {
    let mtime = u64::try_from(created).unwrap_or(0);
    let init = crate::init_binary::for_architecture(platform.architecture()).ok_or_else(|| {
        BuildError::NoInitFor {
            platform,
            help: crate::init_binary::missing_help(platform.architecture()),
        }
    })?;
    // spec -> base image
    let base = crate::base::open(spec, platform.architecture(), registry)?;
    // spec -> closure
    let nix = match Platform::build_machine() {
        Some(own) if own == platform => Nix::new(),
        _ => Nix::new().for_system(platform.nix_system()),
    };
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
    } = gpu_settings(spec, &store, platform)?;
    let host_files = resolve_host_binaries(spec, platform, reporter)?;
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
    let rootfs = top_layer(
        spec,
        &store,
        &host_files,
        &base,
        TopInputs {
            init,
            platform,
            nix_db: nix_db.as_ref(),
        },
        reporter,
    )?;
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
    let reused = reuse_from_registry(
        spec,
        request,
        &jobs,
        &uncached,
        compression,
        registry,
        destination_layers,
    );
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
    // layers -> image
    let image = assemble(
        spec,
        platform,
        &base,
        &base_layers,
        &jobs,
        layers,
        &rootfs,
        settings,
        created,
    )?;
    Ok((
        image,
        PlatformParts {
            platform,
            closure: store.closure,
            host_files,
            base_digest: base.manifest_digest(),
            early,
        },
    ))
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
    destination_layers: &OnceCell<RegistryLayers>,
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
    destination_layers
        .get_or_init(|| RegistryLayers::read(&destination, &request.cache_from, registry))
        .take(&wanted, compression, registry)
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
    platform: Platform,
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
            architecture: platform.architecture().to_owned(),
            os: platform.os().to_owned(),
            variant: platform.variant().map(str::to_owned),
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            entrypoint: spec
                .entrypoint
                .clone()
                .unwrap_or_else(|| vec!["/bin/gpubox-init".to_owned()]),
            cmd: base.cmd(spec),
            exposed_ports: base.exposed_ports(spec),
            volumes: base.volumes(spec),
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
