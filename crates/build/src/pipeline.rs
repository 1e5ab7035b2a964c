//! `gpubox build`: spec -> closure -> layers -> image -> output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gpubox_layers::cache::{store_layer_entries, LayerCache};
use gpubox_layers::plan::plan;
use gpubox_nix::{Closure, Installable, Nix, StorePath};
use gpubox_oci::archive::{write_docker_archive, write_file_atomically, write_oci_archive};
use gpubox_oci::blob::{BlobStore, LayerBlob};
use gpubox_oci::image::{assemble_on, BuiltImage, ImageConfigInput, LayerInput};
use gpubox_oci::layout::write_oci_dir;
use gpubox_oci::{Compression, Entry};
use gpubox_rootfs::RootfsInput;
use gpubox_spec::{CopyToRoot, HostBinarySrc, PackageRef, Spec};

use crate::commands::push::{attach_sbom, push_built};
use crate::error::CliError;
use crate::progress::{bytes, Progress};
use crate::target::{with_default_tag, Target};

/// The static `gpubox-init` built by this crate's build script.
static INIT: &[u8] = include_bytes!(env!("GPUBOX_INIT_BINARY"));

/// What `gpubox build` was asked to do.
pub struct BuildRequest {
    pub spec: PathBuf,
    pub output: Target,
    pub cache_dir: Option<PathBuf>,
    /// Where to write the image's SPDX SBOM, if anywhere.
    pub sbom: Option<PathBuf>,
    /// How to reach the registry when `output` is one.
    pub registry: gpubox_registry::PushOptions,
}

/// Builds the image and writes it; returns the manifest digest.
pub fn run(request: &BuildRequest, progress: &Progress) -> Result<String, CliError> {
    let spec = gpubox_spec::load(&request.spec)?;
    let source_date_epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    let created = gpubox_spec::created_epoch(spec.created, source_date_epoch.as_deref())?;
    let mtime = u64::try_from(created).unwrap_or(0);
    let compression = match spec.compression {
        gpubox_spec::Compression::Gzip => Compression::Gzip,
        gpubox_spec::Compression::Zstd => Compression::Zstd,
        gpubox_spec::Compression::None => Compression::None,
    };
    check_output_writable(&request.output)?;
    if let Some(sbom) = &request.sbom {
        check_file_writable(sbom)?;
    }
    let cache_root = cache_dir(request.cache_dir.as_deref())?;
    let mut unfinished = partial_folders(&request.output, &cache_root);
    unfinished.extend(request.sbom.as_deref().map(parent_folder));
    crate::interrupt::remove_partials_on_signal(unfinished).map_err(CliError::Signals)?;
    let registry = super::inspect::RegistrySource {
        options: &request.registry,
        cache_root: &cache_root,
        progress,
    };
    let base = super::base::open(&spec, oci_architecture(), &registry)?;

    let nix = Nix::new();
    let store = StoreContents::realise(&spec, &nix, progress)?;
    let closure = &store.closure;
    if !closure.is_empty() {
        progress.step(format!(
            "closure: {} store paths, {}",
            closure.len(),
            bytes(closure.total_nar_size())
        ));
    }

    let gpu = gpu_settings(&spec, closure)?;
    let host_files = resolve_host_binaries(&spec)?;
    let nix_db = if spec.machine.nix_enable {
        progress.step("registering the closure in the image's Nix database");
        Some(
            gpubox_rootfs::nix_db(&nix, closure, created)
                .map_err(|e| CliError::from(gpubox_rootfs::RootfsError::from(e)))?,
        )
    } else {
        None
    };
    let rootfs = top_layer(&spec, &store, &host_files, &base, nix_db.as_ref())?;

    let cache = LayerCache::open(&cache_root)?;
    let planned = plan(closure, base.store_path_budget(&spec, closure.is_empty())?);
    let base_layers = base.copy_layers(&cache, progress)?;
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
    let blobs = build_layers(&jobs, &cache, compression, mtime, progress)?;

    let layer_inputs: Vec<LayerInput> = jobs
        .iter()
        .zip(blobs)
        .map(|(job, blob)| LayerInput {
            blob,
            created_by: job.describe(),
        })
        .collect();
    // Generated defaults first, then the GPU settings, then the spec's own
    // `env`/`extraEnv`, which win.
    let mut env: BTreeMap<String, String> = rootfs.env.clone();
    env.extend(gpu.env);
    let env = base.env_under(&spec, env);
    let mut labels = base.labels();
    labels.extend(gpu.labels);
    labels.extend(spec.labels.clone());
    let image = assemble_on(
        &ImageConfigInput {
            created,
            architecture: oci_architecture().to_owned(),
            os: "linux".to_owned(),
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            entrypoint: spec
                .entrypoint
                .clone()
                .unwrap_or_else(|| vec!["/bin/gpubox-init".to_owned()]),
            cmd: base.cmd(&spec),
            exposed_ports: base.exposed_ports(&spec),
            labels,
            user: rootfs.user.clone(),
            working_dir: base.working_dir(&spec),
            title: spec.name.clone(),
            version: spec.tag.clone(),
        },
        &base_layers,
        &layer_inputs,
    )?;
    write_output(request, &spec, &image, cache.store(), progress)?;
    if let Some(file) = &request.sbom {
        let sbom = write_sbom(
            file,
            &spec,
            &image,
            created,
            closure,
            &host_files,
            base.manifest_digest(),
        )?;
        progress.step(format!("wrote the SBOM {}", file.display()));
        if let Target::Registry { reference } = &request.output {
            let reference = with_default_tag(reference, &spec.tag);
            attach_sbom(
                &reference,
                &image.manifest,
                &sbom,
                &request.registry,
                progress,
            )?;
        }
    }
    Ok(image.manifest_digest.to_string())
}

/// What an image holds from the Nix store: its top-level packages (whose
/// programs get links), `home`, and the closure of every store path the spec
/// names.
///
/// A `copyToRoot` source inside the store is copied to its `dst`, not kept at
/// its store path: its dependencies join the closure, and the path itself only
/// when it refers to itself (nix2container's `copyToRoot`, minus the broken
/// self-links).
pub(crate) struct StoreContents {
    pub packages: Vec<StorePath>,
    pub home: Option<StorePath>,
    pub closure: Closure,
}

impl StoreContents {
    /// Builds what the spec names with Nix and asks the store for the closure.
    fn realise(spec: &Spec, nix: &Nix, progress: &Progress) -> Result<StoreContents, CliError> {
        let packages = realise_packages(spec, nix, progress)?;
        let home = realise_home(spec, nix, progress)?;
        let named = named_store_paths(spec)?;
        let copied = copied_store_paths(spec);
        let roots: Vec<StorePath> = packages
            .iter()
            .chain(&home)
            .chain(&named)
            .chain(&copied)
            .cloned()
            .collect();
        let closure = if roots.is_empty() {
            Closure::from_infos(Vec::new())
        } else {
            nix.closure(&roots)?
        };
        Ok(StoreContents::select(
            packages, home, &named, &copied, &closure,
        ))
    }

    /// The same from a closure that already holds everything the spec names
    /// (the graph Nix exports to the spec's builder); every package must be a
    /// store path, as a spec written by Nix has them.
    pub(crate) fn from_closure(spec: &Spec, closure: &Closure) -> Result<StoreContents, CliError> {
        let store_path = |item: &gpubox_spec::Item<PackageRef>, key: String| match &item.value {
            PackageRef::StorePath(path) => StorePath::parse(path)
                .map_err(|e| CliError::from(e).in_spec(spec, item.span, key.clone())),
            _ => Err(CliError::NotAStorePath { key }),
        };
        let mut packages = spec
            .system_packages
            .iter()
            .enumerate()
            .map(|(index, item)| store_path(item, format!("systemPackages[{index}]")))
            .collect::<Result<Vec<_>, _>>()?;
        packages.sort();
        packages.dedup();
        let home = spec
            .machine
            .home
            .as_ref()
            .map(|item| store_path(item, "home".to_owned()))
            .transpose()?;
        let named = named_store_paths(spec)?;
        let copied = copied_store_paths(spec);
        Ok(StoreContents::select(
            packages, home, &named, &copied, closure,
        ))
    }

    /// Keeps of `closure` what the image holds: what the packages, `home` and
    /// `storePaths` reach, and what the `copied` sources refer to.
    fn select(
        packages: Vec<StorePath>,
        home: Option<StorePath>,
        named: &[StorePath],
        copied: &[StorePath],
        closure: &Closure,
    ) -> StoreContents {
        let copied_needs = copied
            .iter()
            .filter_map(|path| closure.get(path))
            .flat_map(|info| info.references.iter());
        let roots = packages
            .iter()
            .chain(&home)
            .chain(named)
            .chain(copied_needs);
        let closure = closure.reachable_from(roots);
        StoreContents {
            packages,
            home,
            closure,
        }
    }
}

/// The spec's `storePaths`.
fn named_store_paths(spec: &Spec) -> Result<Vec<StorePath>, CliError> {
    spec.store_paths
        .iter()
        .enumerate()
        .map(|(index, item)| {
            StorePath::parse(&item.value).map_err(|e| {
                CliError::from(e).in_spec(spec, item.span, format!("storePaths[{index}]"))
            })
        })
        .collect()
}

/// The store paths `copyToRoot` copies from.
fn copied_store_paths(spec: &Spec) -> Vec<StorePath> {
    let mut paths: Vec<StorePath> = spec
        .copy_to_root
        .iter()
        .filter_map(|item| StorePath::containing(&item.value.src).map(|(path, _)| path))
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// The top layer, with a failure pointed at the spec item it comes from.
pub(crate) fn top_layer(
    spec: &Spec,
    store: &StoreContents,
    host_files: &[gpubox_hostbin::HostFile],
    base: &super::base::Base,
    nix_db: Option<&gpubox_rootfs::NixDb>,
) -> Result<gpubox_rootfs::Rootfs, CliError> {
    let copy_to_root: Vec<CopyToRoot> = spec
        .copy_to_root
        .iter()
        .map(|item| item.value.clone())
        .collect();
    gpubox_rootfs::assemble_over(
        &RootfsInput {
            closure: &store.closure,
            packages: &store.packages,
            copy_to_root: &copy_to_root,
            host_files,
            init: Arc::from(INIT),
            user: &base.user(spec),
            working_dir: &base.working_dir(spec),
            image_name: &spec.name,
            image_tag: &spec.tag,
            driver_library_dirs: if spec.cuda.enable {
                gpubox_cuda::DRIVER_LIBRARY_DIRS
            } else {
                &[]
            },
            machine: &spec.machine,
            home: store.home.as_ref(),
            nix_db,
        },
        base.account_files(),
    )
    .map_err(|e| {
        if let gpubox_rootfs::RootfsError::Machine(machine) = &e {
            let (span, what) = (
                machine.span(),
                format!("`{}` cannot be used", machine.key()),
            );
            return CliError::from(e).in_spec(spec, span, what);
        }
        let item = e.copy_to_root_index();
        let span = item
            .and_then(|i| spec.copy_to_root.get(i))
            .and_then(|item| item.span);
        let what = match item {
            Some(i) => format!("copyToRoot[{i}] cannot be placed in the image"),
            None => "the top layer cannot be assembled".to_owned(),
        };
        CliError::from(e).in_spec(spec, span, what)
    })
}

/// The NVIDIA variables and labels of a GPU-ready image (none when
/// `cuda.enable` is false).
pub(crate) struct GpuSettings {
    env: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
}

pub(crate) fn gpu_settings(spec: &Spec, closure: &Closure) -> Result<GpuSettings, CliError> {
    if !spec.cuda.enable {
        return Ok(GpuSettings {
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
        });
    }
    let declared = spec
        .cuda
        .version
        .as_deref()
        .map(str::parse::<gpubox_cuda::CudaVersion>)
        .transpose()?;
    let paths: Vec<&Path> = closure
        .paths()
        .map(|info| Path::new(info.path.as_str()))
        .collect();
    let packages = gpubox_cuda::detect(&paths);
    let version =
        gpubox_cuda::resolve_version(&packages, spec.cuda.allow_mixed_versions, declared)?;
    Ok(GpuSettings {
        env: gpubox_cuda::image_env(version, &spec.cuda.capabilities),
        labels: gpubox_cuda::image_labels(version),
    })
}

/// The `home` package, realised so it joins the closure (without program links).
fn realise_home(
    spec: &Spec,
    nix: &Nix,
    progress: &Progress,
) -> Result<Option<StorePath>, CliError> {
    let Some(item) = &spec.machine.home else {
        return Ok(None);
    };
    progress.step("realising home");
    let realised = installable(&item.value).and_then(|what| nix.realise(&what));
    match realised {
        Ok(paths) => Ok(paths.into_iter().next()),
        Err(e) => {
            Err(CliError::from(e).in_spec(spec, item.span, "home could not be realised".to_owned()))
        }
    }
}

/// What Nix builds for a `systemPackages` entry or `home`.
fn installable(package: &PackageRef) -> Result<Installable, gpubox_nix::NixError> {
    match package {
        PackageRef::StorePath(path) => StorePath::parse(path).map(Installable::StorePath),
        PackageRef::Installable(installable) => Ok(Installable::Flake(installable.clone())),
        PackageRef::NixFile { file, attr } => Ok(Installable::File {
            file: file.clone(),
            attr: attr.clone(),
        }),
    }
}

fn realise_packages(
    spec: &Spec,
    nix: &Nix,
    progress: &Progress,
) -> Result<Vec<StorePath>, CliError> {
    let mut roots = Vec::new();
    for (index, item) in spec.system_packages.iter().enumerate() {
        let realised = installable(&item.value).and_then(|what| {
            progress.step(format!("realising systemPackages[{index}]"));
            nix.realise(&what)
        });
        match realised {
            Ok(paths) => roots.extend(paths),
            Err(e) => {
                return Err(CliError::from(e).in_spec(
                    spec,
                    item.span,
                    format!("systemPackages[{index}] could not be realised"),
                ))
            }
        }
    }
    roots.sort();
    roots.dedup();
    Ok(roots)
}

fn resolve_host_binaries(spec: &Spec) -> Result<Vec<gpubox_hostbin::HostFile>, CliError> {
    let mut binaries = Vec::new();
    for item in &spec.host_binaries {
        let (src, default_dst) = match &item.value.src {
            HostBinarySrc::Path(path) => {
                // A program from the project folder goes on PATH; one from the
                // system keeps its path, as its libraries do.
                let dst = if path.starts_with(&spec.dir) {
                    Path::new("/usr/local/bin").join(path.file_name().unwrap_or_default())
                } else {
                    path.clone()
                };
                (path.clone(), dst)
            }
            HostBinarySrc::Command(name) => {
                let found =
                    find_on_path(name).ok_or_else(|| CliError::CommandNotFound(name.clone()))?;
                (found.clone(), found)
            }
        };
        let dst = item
            .value
            .dst
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or(default_dst);
        binaries.push((src, dst));
    }
    if binaries.is_empty() {
        return Ok(Vec::new());
    }
    gpubox_hostbin::resolve_all(&binaries).map_err(CliError::from)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// One layer to produce.
enum LayerJob<'a> {
    /// Store paths, found in the cache when they were built before.
    Store {
        paths: &'a [StorePath],
        key: String,
        estimate: u64,
    },
    /// gpubox's own top layer.
    Top { entries: &'a [Entry] },
}

impl LayerJob<'_> {
    fn estimate(&self) -> u64 {
        match self {
            LayerJob::Store { estimate, .. } => *estimate,
            LayerJob::Top { entries } => entries
                .iter()
                .map(|e| match &e.kind {
                    gpubox_oci::EntryKind::File { size, .. } => *size,
                    _ => 0,
                })
                .sum(),
        }
    }

    fn describe(&self) -> String {
        match self {
            LayerJob::Store { paths, .. } => {
                let names: Vec<&str> = paths.iter().map(|p| p.name()).collect();
                format!("gpubox: store paths {}", names.join(" "))
            }
            LayerJob::Top { .. } => "gpubox: generated files, copyToRoot, hostBinaries".to_owned(),
        }
    }
}

/// Produces every layer, largest first on as many threads as there are cores, so
/// compression (the expensive part) runs in parallel across layers.
fn build_layers(
    jobs: &[LayerJob<'_>],
    cache: &LayerCache,
    compression: Compression,
    mtime: u64,
    progress: &Progress,
) -> Result<Vec<LayerBlob>, CliError> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].estimate()));
    let total: u64 = jobs.iter().map(LayerJob::estimate).sum();
    progress.start_bytes(total, &format!("{} layers", jobs.len()));

    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<LayerBlob, CliError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let done = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len())
        .max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let Some(&index) = order.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return;
                };
                let job = &jobs[index];
                let (result, cached) = build_one(job, cache, compression, mtime, progress);
                match &result {
                    Ok(blob) => {
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        progress.step(format!(
                            "layer {}/{} {} {} -> {} ({}{})",
                            index + 1,
                            jobs.len(),
                            blob.digest,
                            bytes(blob.uncompressed_size),
                            bytes(blob.size),
                            if cached { "cached, " } else { "" },
                            format_args!("{n} of {} done", jobs.len()),
                        ));
                    }
                    Err(_) => failed.store(true, Ordering::Relaxed),
                }
                if let Ok(mut slots) = results.lock() {
                    slots[index] = Some(result);
                }
            });
        }
    });
    progress.finish_bytes();
    let slots = results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut blobs = Vec::with_capacity(jobs.len());
    for slot in slots {
        match slot {
            Some(result) => blobs.push(result?),
            // Skipped only because another layer failed; that error was returned above
            // in index order or comes later in this loop.
            None => continue,
        }
    }
    Ok(blobs)
}

fn build_one(
    job: &LayerJob<'_>,
    cache: &LayerCache,
    compression: Compression,
    mtime: u64,
    progress: &Progress,
) -> (Result<LayerBlob, CliError>, bool) {
    let on_bytes = |n: u64| progress.add_bytes(n);
    match job {
        LayerJob::Store {
            paths,
            key,
            estimate,
        } => {
            if let Some(blob) = cache.get(key) {
                progress.add_bytes(*estimate);
                return (Ok(blob), true);
            }
            let result = cache
                .store()
                .write_layer(store_layer_entries(paths), compression, mtime, &on_bytes)
                .map_err(CliError::from)
                .and_then(|blob| {
                    cache.put(key, &blob)?;
                    Ok(blob)
                });
            (result, false)
        }
        LayerJob::Top { entries } => {
            let result = cache
                .store()
                .write_layer(
                    entries.iter().cloned().map(Ok),
                    compression,
                    mtime,
                    &on_bytes,
                )
                .map_err(CliError::from);
            (result, false)
        }
    }
}

fn write_output(
    request: &BuildRequest,
    spec: &Spec,
    image: &BuiltImage,
    store: &BlobStore,
    progress: &Progress,
) -> Result<(), CliError> {
    let default_reference = format!("{}:{}", spec.name, spec.tag);
    let output = &request.output;
    match output {
        Target::OciDir { dir, tag } => {
            write_oci_dir(dir, Some(tag.as_deref().unwrap_or(&spec.tag)), image, store)?;
        }
        Target::OciArchive { file, tag } => {
            let tag = tag.as_deref().unwrap_or(&spec.tag);
            write_file_atomically(file, |f| {
                write_oci_archive(f, Some(tag), image, store).map(drop)
            })?;
        }
        Target::DockerArchive { file } => {
            write_file_atomically(file, |f| {
                write_docker_archive(f, std::slice::from_ref(&default_reference), image, store)
                    .map(drop)
            })?;
        }
        Target::Engine { engine, reference } => {
            let reference = with_default_tag(reference, &spec.tag);
            progress.step(format!("loading into {engine} as {reference}"));
            let said = gpubox_registry::load(*engine, |w| {
                write_docker_archive(w, std::slice::from_ref(&reference), image, store).map(drop)
            })?;
            if !said.is_empty() {
                progress.step(said);
            }
        }
        Target::Registry { reference } => {
            let reference = with_default_tag(reference, &spec.tag);
            push_built(&reference, image, store, &request.registry, progress)?;
        }
    }
    progress.step(format!("wrote {output} ({})", image.manifest_digest));
    Ok(())
}

/// Where this build may leave unfinished files if it is interrupted: beside the
/// output, inside an OCI layout, and in the cache.
fn partial_folders(output: &Target, cache_root: &Path) -> Vec<PathBuf> {
    let mut folders = vec![cache_root.join("tmp"), cache_root.join("layers")];
    if let Target::OciDir { dir, .. } = output {
        folders.push(dir.clone());
        folders.push(dir.join("blobs/sha256"));
    }
    folders.extend(output_path(output).map(parent_folder));
    folders
}

/// The file or folder an output is written to; engines have none.
fn output_path(output: &Target) -> Option<&Path> {
    match output {
        Target::OciDir { dir, .. } => Some(dir),
        Target::OciArchive { file, .. } | Target::DockerArchive { file } => Some(file),
        Target::Engine { .. } | Target::Registry { .. } => None,
    }
}

fn parent_folder(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Fails before any work when the output's folder is missing or not writable
/// (an OCI layout's missing folders are created, as skopeo does).
fn check_output_writable(output: &Target) -> Result<(), CliError> {
    let Some(path) = output_path(output) else {
        return Ok(());
    };
    if matches!(output, Target::OciDir { .. }) && !parent_folder(path).exists() {
        return Ok(());
    }
    check_file_writable(path)
}

/// Fails when a file cannot be created beside `path`.
fn check_file_writable(path: &Path) -> Result<(), CliError> {
    tempfile::NamedTempFile::new_in(parent_folder(path))
        .map(drop)
        .map_err(|source| CliError::OutputNotWritable {
            path: path.to_path_buf(),
            source,
        })
}

/// `--cache-dir`, else `GPUBOX_CACHE_DIR`, else `$XDG_CACHE_HOME/gpubox`, else
/// `~/.cache/gpubox`.
pub(crate) fn cache_dir(flag: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(dir) = flag {
        return Ok(dir.to_path_buf());
    }
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("GPUBOX_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("gpubox")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/gpubox")))
        .ok_or(CliError::NoCacheDir)
}

/// The build machine's architecture in OCI's words.
pub(crate) fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Writes the image's SPDX SBOM to `file` atomically, looking up the Debian
/// package of each host file; returns the bytes written.
fn write_sbom(
    file: &Path,
    spec: &Spec,
    image: &BuiltImage,
    created: i64,
    closure: &Closure,
    host_files: &[gpubox_hostbin::HostFile],
    base_image_digest: Option<String>,
) -> Result<Vec<u8>, CliError> {
    let input = gpubox_sbom::SbomInput {
        image_name: spec.name.clone(),
        image_tag: spec.tag.clone(),
        manifest_digest: image.manifest_digest.to_string(),
        created,
        store_paths: closure
            .paths()
            .map(|info| gpubox_sbom::StorePathEntry {
                path: info.path.as_str().to_owned(),
                nar_hash: info.nar_hash.clone(),
                nar_size: info.nar_size,
                references: info
                    .references
                    .iter()
                    .map(|r| r.as_str().to_owned())
                    .collect(),
            })
            .collect(),
        host_files: host_files
            .iter()
            .map(|host| gpubox_sbom::HostFileEntry {
                image_path: host.image_path.clone(),
                host_path: host.source.clone(),
                debian_package: gpubox_sbom::dpkg::package_of(&host.source),
            })
            .collect(),
        base_image_digest,
    };
    let bytes = gpubox_sbom::render(&input).map_err(|e| gpubox_oci::layout::OutputError::Io {
        action: "write the SBOM",
        path: file.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    write_file_atomically(file, |f| {
        std::io::Write::write_all(f, &bytes).map_err(|source| gpubox_oci::layout::OutputError::Io {
            action: "write",
            path: file.to_path_buf(),
            source,
        })
    })?;
    Ok(bytes)
}
