//! Opening images wherever they are: OCI layout folders, oci- and
//! docker-archives, podman's and Docker's storage (saved to a temporary
//! docker-archive first) and registries (pulled into the layer cache, which
//! records the pull); the identity of an engine's image without exporting
//! it ([`engine_image_id`]); and what `gpubox inspect` and `gpubox diff`
//! report about them.

use std::path::Path;

use gpubox_engines::{Engine, EngineError};
use gpubox_layers::cache::LayerCache;
use gpubox_oci::diff::ImageDiff;
use gpubox_oci::image::summary_from_annotations;
use gpubox_oci::source::{summarize_layer, ImageReader, LayerRef, LayerSummary, OpenedIndex};
use gpubox_oci::Digest;
use gpubox_registry::{PullScope, PushOptions};
use serde_json::Value;

use crate::error::BuildError;
use crate::location::{BadLocation, ImageLocation};
use crate::reporter::{Bytes, Count, Reporter};

/// An image opened for reading. An engine's image is first saved to a
/// temporary docker-archive, kept as long as this value lives; a registry's
/// is pulled into the layer cache, held open (so no collection removes its
/// blobs) as long as this value lives.
pub struct OpenedImage {
    pub reader: ImageReader,
    _saved: Option<tempfile::NamedTempFile>,
    _cache: Option<LayerCache>,
}

/// What reading a `docker://` image takes: how to reach the registry, the
/// layer cache its blobs are pulled into, and where to say what the pull did.
pub struct RegistryAccess<'a> {
    pub options: &'a PushOptions,
    pub cache_root: &'a Path,
    pub reporter: &'a dyn Reporter,
}

/// Opens the image at `source`, which must not be in a registry.
pub fn open(source: &ImageLocation) -> Result<OpenedImage, BuildError> {
    open_from(source, None)
}

/// Opens the image at `source`, wherever it is; a `docker://` source needs
/// `registry`.
pub fn open_from(
    source: &ImageLocation,
    registry: Option<&RegistryAccess<'_>>,
) -> Result<OpenedImage, BuildError> {
    open_scoped(source, registry, PullScope::Image, None)
}

/// [`open_from`], reading the `architecture` (GOARCH spelling) image where
/// `source` is a multi-platform index; `None` means the build machine's.
pub fn open_platform(
    source: &ImageLocation,
    registry: Option<&RegistryAccess<'_>>,
    architecture: Option<&str>,
) -> Result<OpenedImage, BuildError> {
    open_scoped(source, registry, PullScope::Image, architecture)
}

/// Opens the image at `source` for its manifest and config: a `docker://` image's
/// layers are not downloaded (reading one fails), as `skopeo inspect` does.
/// Of an index, the `architecture` image (GOARCH spelling; `None`: the build
/// machine's).
pub fn open_metadata(
    source: &ImageLocation,
    registry: &RegistryAccess<'_>,
    architecture: Option<&str>,
) -> Result<OpenedImage, BuildError> {
    open_scoped(source, Some(registry), PullScope::Metadata, architecture)
}

fn open_scoped(
    source: &ImageLocation,
    registry: Option<&RegistryAccess<'_>>,
    scope: PullScope,
    architecture: Option<&str>,
) -> Result<OpenedImage, BuildError> {
    let (reader, saved, cache) = match source {
        ImageLocation::OciDir { dir, tag } => (
            ImageReader::open_oci_dir_for(dir, tag.as_deref(), architecture)?,
            None,
            None,
        ),
        ImageLocation::OciArchive { file, tag } => (
            ImageReader::open_oci_archive_for(file, tag.as_deref(), architecture)?,
            None,
            None,
        ),
        ImageLocation::DockerArchive { file } => {
            (ImageReader::open_docker_archive(file)?, None, None)
        }
        ImageLocation::Engine { engine, reference } => {
            let file = tempfile::NamedTempFile::new().map_err(BuildError::Temp)?;
            gpubox_engines::save(*engine, reference, file.path())?;
            (
                ImageReader::open_docker_archive(file.path())?,
                Some(file),
                None,
            )
        }
        ImageLocation::Registry { reference } => {
            let Some(registry) = registry else {
                return Err(BadLocation::NotReadFromRegistry(source.to_string()).into());
            };
            let (reader, cache) = pull(reference, registry, scope, architecture)?;
            (reader, None, Some(cache))
        }
    };
    Ok(OpenedImage {
        reader,
        _saved: saved,
        _cache: cache,
    })
}

/// Pulls `reference` (all of it, or its metadata) into the layer cache, records
/// a whole image there as a pulled image, and opens it, saying which digest a tag
/// resolved to and how much came down.
fn pull(
    reference: &str,
    registry: &RegistryAccess<'_>,
    scope: PullScope,
    architecture: Option<&str>,
) -> Result<(ImageReader, LayerCache), BuildError> {
    let cache = LayerCache::open(registry.cache_root)?;
    let name = format!("docker://{reference}");
    let architecture = architecture.unwrap_or(gpubox_oci::image::HOST_ARCHITECTURE);
    let pulled = gpubox_registry::pull(
        reference,
        architecture,
        cache.store(),
        registry.options,
        scope,
    )?;
    if scope == PullScope::Image {
        cache.put_image(&pulled.manifest_digest, &pulled.blobs)?;
    }
    let reporter = registry.reporter;
    if pulled.tag.is_some() {
        let platform = match &pulled.index_digest {
            Some(index) => format!(" (linux/{architecture} in index {index})"),
            None => String::new(),
        };
        reporter.step(&format!(
            "resolved {name} to {}{platform}",
            pulled.manifest_digest
        ));
    }
    reporter.step(&format!(
        "{name}: {} downloaded ({}), {} already in the cache",
        Count(pulled.downloaded_blobs, "blob"),
        Bytes(pulled.downloaded_bytes),
        pulled.cached_blobs
    ));
    let mut reader = ImageReader::open_pulled(
        cache.store(),
        &pulled.manifest,
        pulled.manifest_digest,
        &name,
    )?;
    if let (Some(digest), Some(document)) = (pulled.index_digest, pulled.index) {
        reader.chosen_from(OpenedIndex::parse(digest, document, Path::new(&name))?);
    }
    Ok((reader, cache))
}

/// The ID `engine` gives the image `reference`, read with `ENGINE image
/// inspect` (no export): the digest of its config as the engine stores it,
/// for podman and for Docker's own image store (Docker's containerd store
/// answers with a manifest digest instead, which names no built config).
pub fn engine_image_id(engine: Engine, reference: &str) -> Result<Digest, BuildError> {
    let id = gpubox_engines::image_id(engine, reference)?;
    id.parse().map_err(|e| {
        EngineError::BadOutput {
            command: format!("{engine} image inspect {reference}"),
            detail: format!("`{id}` is not an image ID ({e})"),
        }
        .into()
    })
}

/// The image's environment as (name, value) pairs.
pub fn image_env(source: &ImageLocation) -> Result<Vec<(String, String)>, BuildError> {
    let vars: Vec<String> = match source {
        // The engine reads its own config; exporting the image is not needed.
        ImageLocation::Engine { engine, reference } => {
            gpubox_engines::image_env(*engine, reference)?
        }
        _ => config_strings(&open(source)?.reader.config()?["config"], "Env"),
    };
    Ok(env_pairs(&vars))
}

/// The strings of the image config's array `field` (`Env`, `Entrypoint`).
fn config_strings(config: &Value, field: &str) -> Vec<String> {
    config[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|value| value.as_str().map(str::to_owned))
        .collect()
}

/// `NAME=VALUE` variables as (name, value) pairs.
fn env_pairs(vars: &[String]) -> Vec<(String, String)> {
    vars.iter()
        .filter_map(|var| var.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// What an image is and holds, as `gpubox inspect` shows it.
pub struct ImageReport {
    pub manifest_digest: Option<String>,
    pub repo_tags: Vec<String>,
    /// The image's config document as stored.
    pub config: Value,
    /// Each layer with what it holds; `None` for a registry layer without gpubox's
    /// annotations, which was not downloaded.
    pub layers: Vec<(LayerRef, Option<LayerSummary>)>,
}

/// What `gpubox inspect` read: one image, or an index and the images of the
/// platforms asked for.
pub struct Inspected {
    /// The index the source names, when it names one: its digest and every
    /// platform it lists.
    pub index: Option<(Digest, Vec<String>)>,
    pub images: Vec<ImageReport>,
}

/// Reads the image at `source` (wherever it is) and summarises each layer: from
/// the annotations gpubox wrote on it when there are any, else by reading it. A
/// registry's layers are downloaded only with `read_layers` (which also reads every
/// layer rather than trusting annotations); without it, a registry layer another
/// tool built has no summary. Of an index, every platform's image is read, or
/// only `architecture`'s (GOARCH spelling) when given.
pub fn inspect(
    source: &ImageLocation,
    registry: &RegistryAccess<'_>,
    read_layers: bool,
    architecture: Option<&str>,
) -> Result<Inspected, BuildError> {
    let remote = matches!(source, ImageLocation::Registry { .. });
    let scope = if read_layers || !remote {
        PullScope::Image
    } else {
        PullScope::Metadata
    };
    let first = open_scoped(source, Some(registry), scope, architecture)?;
    let Some(index) = first.reader.index().cloned() else {
        return Ok(Inspected {
            index: None,
            images: vec![report(&first, remote, read_layers)?],
        });
    };
    let mut images = Vec::new();
    for (platform, descriptor) in &index.platforms {
        if architecture.is_some_and(|wanted| wanted != platform.architecture) {
            continue;
        }
        if first.reader.manifest_digest().as_ref() == Some(&descriptor.digest) {
            images.push(report(&first, remote, read_layers)?);
        } else {
            let opened = open_scoped(source, Some(registry), scope, Some(&platform.architecture))?;
            images.push(report(&opened, remote, read_layers)?);
        }
    }
    Ok(Inspected {
        index: Some((
            index.digest.clone(),
            index.platforms.iter().map(|(p, _)| p.to_string()).collect(),
        )),
        images,
    })
}

/// One opened image as `gpubox inspect` reports it.
fn report(
    opened: &OpenedImage,
    remote: bool,
    read_layers: bool,
) -> Result<ImageReport, BuildError> {
    let reader = &opened.reader;
    let mut layers = Vec::new();
    for (index, layer) in reader.layers().iter().enumerate() {
        let annotated = summary_from_annotations(&layer.annotations).filter(|_| !read_layers);
        let summary = match annotated {
            Some(summary) => Some(summary),
            None if read_layers || !remote => Some(summarize_layer(reader.open_layer(index)?)?),
            None => None,
        };
        layers.push((layer.clone(), summary));
    }
    Ok(ImageReport {
        manifest_digest: reader.manifest_digest().map(|d| d.to_string()),
        repo_tags: reader.repo_tags(),
        config: reader.config()?,
        layers,
    })
}

/// Which layers images `a` and `b` share and what changed in the others. Of
/// two indexes, each platform both hold is compared, or only `architecture`'s
/// (GOARCH spelling) when given; each diff comes with its platform then.
pub fn diff(
    a: &ImageLocation,
    b: &ImageLocation,
    registry: &RegistryAccess<'_>,
    architecture: Option<&str>,
) -> Result<Vec<(Option<String>, ImageDiff)>, BuildError> {
    let opened_a = open_platform(a, Some(registry), architecture)?;
    let opened_b = open_platform(b, Some(registry), architecture)?;
    let (Some(index_a), Some(index_b), None) = (
        opened_a.reader.index().cloned(),
        opened_b.reader.index(),
        architecture,
    ) else {
        let platform = opened_a
            .reader
            .index()
            .and(architecture)
            .map(|arch| format!("linux/{arch}"));
        let diff = gpubox_oci::diff::diff_images(&opened_a.reader, &opened_b.reader)?;
        return Ok(vec![(platform, diff)]);
    };
    let mut diffs = Vec::new();
    for (platform, _) in &index_a.platforms {
        let in_b = index_b
            .platforms
            .iter()
            .any(|(other, _)| other.architecture == platform.architecture);
        if !in_b {
            continue;
        }
        let arch = Some(platform.architecture.as_str());
        let one_a = open_platform(a, Some(registry), arch)?;
        let one_b = open_platform(b, Some(registry), arch)?;
        diffs.push((
            Some(platform.to_string()),
            gpubox_oci::diff::diff_images(&one_a.reader, &one_b.reader)?,
        ));
    }
    Ok(diffs)
}

/// What `gpubox deploy` reads of a pushed image: its digest and, from the manifests
/// and configs alone (no layer is downloaded), every platform's architecture, and
/// the first platform's environment, ports, volumes and entrypoint, and the largest
/// platform's unpacked size.
pub struct PushedImage {
    /// The digest a deployment pins: the index's for a multi-platform image, else
    /// the image manifest's.
    pub digest: String,
    /// Each platform's architecture (GOARCH spelling), in the index's order.
    pub architectures: Vec<String>,
    /// `Env`, as (name, value) pairs.
    pub env: Vec<(String, String)>,
    /// `ExposedPorts` (`22/tcp`).
    pub exposed_ports: Vec<String>,
    /// `Volumes`.
    pub volumes: Vec<String>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// The layers' `io.gpubox.layer.uncompressed` annotations, else (another tool's
    /// layer) its compressed size.
    pub unpacked_bytes: u64,
    /// How many layers had no uncompressed size and were counted compressed.
    pub layers_without_size: usize,
}

/// Reads the registry image `reference` (`HOST[:PORT]/REPO[:TAG|@DIGEST]`) for
/// `gpubox deploy`.
pub fn pushed_image(
    reference: &str,
    registry: &RegistryAccess<'_>,
) -> Result<PushedImage, BuildError> {
    let source = ImageLocation::Registry {
        reference: reference.to_owned(),
    };
    let inspected = inspect(&source, registry, false, None)?;
    let undigested = || BuildError::Undigested {
        reference: reference.to_owned(),
    };
    let first = inspected.images.first().ok_or_else(undigested)?;
    let digest = match &inspected.index {
        Some((digest, _)) => digest.to_string(),
        None => first.manifest_digest.clone().ok_or_else(undigested)?,
    };
    let mut unpacked_bytes = 0;
    let mut layers_without_size = 0;
    for image in &inspected.images {
        let mut total = 0;
        let mut without = 0;
        for (layer, summary) in &image.layers {
            match summary {
                Some(summary) => total += summary.uncompressed_size,
                None => {
                    total += layer.size;
                    without += 1;
                }
            }
        }
        if total > unpacked_bytes {
            unpacked_bytes = total;
            layers_without_size = without;
        }
    }
    let config = &first.config["config"];
    let keys = |field: &str| -> Vec<String> {
        config[field]
            .as_object()
            .into_iter()
            .flat_map(|map| map.keys().cloned())
            .collect()
    };
    Ok(PushedImage {
        digest,
        architectures: inspected
            .images
            .iter()
            .filter_map(|image| image.config["architecture"].as_str().map(str::to_owned))
            .collect(),
        env: env_pairs(&config_strings(config, "Env")),
        exposed_ports: keys("ExposedPorts"),
        volumes: keys("Volumes"),
        entrypoint: config_strings(config, "Entrypoint"),
        unpacked_bytes,
        layers_without_size,
    })
}

/// The start-up plan gpubox wrote into the registry image `reference` (its last
/// layer's `/etc/gpubox/init.json`), reading only the manifest, the config and that
/// layer; `None` when the image has none (it was built without the init's steps,
/// or by another tool). Of an index, the build machine's platform's image.
pub fn image_plan(
    reference: &str,
    registry: &RegistryAccess<'_>,
) -> Result<Option<gpubox_initplan::InitPlan>, BuildError> {
    /// A plan is a few KiB; more than this is not one.
    const MOST_PLAN_BYTES: u64 = 1 << 20;
    let source = ImageLocation::Registry {
        reference: reference.to_owned(),
    };
    let opened = open_scoped(&source, Some(registry), PullScope::Top, None)?;
    let reader = &opened.reader;
    let Some(last) = reader.layers().len().checked_sub(1) else {
        return Ok(None);
    };
    let layer = reader.open_layer(last)?;
    let mut entries = gpubox_oci::tar::read_entries(layer);
    let bad = |reason: String| BuildError::BadPlan {
        reference: reference.to_owned(),
        reason,
    };
    loop {
        let mut content = Vec::new();
        let mut capped = CappedWriter {
            inner: &mut content,
            left: MOST_PLAN_BYTES,
        };
        let Some(entry) = entries.next_with_content(&mut capped) else {
            return Ok(None);
        };
        let entry = entry.map_err(|error| bad(error.to_string()))?;
        if entry.path == gpubox_initplan::PLAN_PATH.as_bytes() {
            if entry.size > MOST_PLAN_BYTES {
                return Err(bad(format!(
                    "it is {} bytes, too big for a plan",
                    entry.size
                )));
            }
            return gpubox_initplan::InitPlan::from_json(&content)
                .map(Some)
                .map_err(|error| bad(error.to_string()));
        }
    }
}

/// Passes on at most `left` bytes and drops the rest, so a large file in the layer
/// is skipped without being held.
struct CappedWriter<'a> {
    inner: &'a mut dyn std::io::Write,
    left: u64,
}

impl std::io::Write for CappedWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let kept = bytes
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        self.inner.write_all(&bytes[..kept])?;
        self.left -= kept as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
