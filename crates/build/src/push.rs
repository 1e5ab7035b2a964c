//! Pushing: `gpubox push` and `gpubox build -o docker://...`: an image to a registry,
//! its blobs and manifest sent unchanged, so the registry's digest is gpubox's;
//! with an SBOM, that too, as an OCI referrer of the image. An image gpubox
//! built into podman or Docker goes up as built (its compressed layers and
//! manifest, from the layer cache), not as the engine exports it.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use gpubox_engines::Engine;
use gpubox_layers::cache::{BuiltRecord, LayerCache};
use gpubox_oci::blob::BlobStore;
use gpubox_oci::image::{
    canonical_json, BuiltImage, Descriptor, Manifest, CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE,
};
use gpubox_oci::index::Artifact;
use gpubox_oci::{Compression, Digest};
use gpubox_registry::{Blob, EarlyUploads, PushError, PushOptions, PushSummary};

use crate::error::BuildError;
use crate::location::{with_default_tag, BadLocation, ImageLocation};
use crate::open::{engine_image_id, open, open_platform, OpenedImage};
use crate::reporter::{Bytes, Count, Reporter};

/// What `gpubox push` was asked to do.
pub struct PushRequest {
    pub source: ImageLocation,
    /// Each `HOST[:PORT]/REPO[:TAG]` to push to.
    pub references: Vec<String>,
    /// An SPDX JSON file to push as a referrer of the image.
    pub sbom: Option<PathBuf>,
    pub options: PushOptions,
}

/// Where `gpubox push` sends the image: `dest`, else every entry of the
/// spec's `registries` (tagged with the spec's `tag` when they name none).
pub fn destinations(dest: Option<&str>, spec_file: &Path) -> Result<Vec<String>, BuildError> {
    if let Some(dest) = dest {
        return match dest.parse::<ImageLocation>()? {
            ImageLocation::Registry { reference } => Ok(vec![reference]),
            _ => Err(BadLocation::NotARegistry(dest.to_owned()).into()),
        };
    }
    let none = || PushError::NoDestination {
        spec: spec_file.to_owned(),
    };
    if !spec_file.exists() {
        return Err(none().into());
    }
    let spec = gpubox_spec::load(spec_file)?;
    if spec.registries.is_empty() {
        return Err(none().into());
    }
    spec.registries
        .iter()
        .enumerate()
        .map(|(index, item)| {
            match item.value.parse::<ImageLocation>() {
                Ok(ImageLocation::Registry { reference }) => {
                    Ok(with_default_tag(&reference, &spec.tag))
                }
                Ok(_) => Err(BuildError::from(BadLocation::NotARegistry(
                    item.value.clone(),
                ))),
                Err(e) => Err(BuildError::from(e)),
            }
            .map_err(|e| {
                e.in_spec(
                    &spec,
                    item.span,
                    format!("registries[{index}] cannot be pushed to"),
                )
            })
        })
        .collect()
}

/// Pushes the image at `request.source` to each destination; returns its
/// manifest digest. A manifest stored in an OCI layout folder goes up
/// unchanged. An engine's image (`podman:`, `docker-daemon:`) that gpubox
/// built goes up as built, when the layer cache at `cache_root` recorded it:
/// the same compressed layers and manifest, so the same digest as the build's
/// (and nothing is exported from the engine); otherwise from the engine's
/// export, each layer the cache holds compressed (by its diff_id) taken from
/// the cache, under a new manifest, and the reporter is told why the digest
/// differs. Other sources get an OCI manifest for their config and layers as
/// stored. Without a cache (`None`), an engine's image goes up as exported.
pub fn run(
    request: &PushRequest,
    cache_root: Option<&Path>,
    reporter: &dyn Reporter,
) -> Result<String, BuildError> {
    let upload = match &request.source {
        ImageLocation::Engine { engine, reference } => {
            let cache = cache_root.map(LayerCache::open).transpose()?;
            engine_upload(&request.source, *engine, reference, cache, reporter)?
        }
        source => {
            let opened = open(source)?;
            if let Some(index) = opened.reader.index().cloned() {
                return push_index(request, source, opened, &index, reporter);
            }
            Upload::exported(opened, source)?
        }
    };
    let sbom = read_sbom(request)?;
    let blobs: Vec<Blob> = upload.blobs.iter().map(|(blob, _)| blob.clone()).collect();
    for reference in &request.references {
        let reference = with_default_tag(reference, "latest");
        reporter.step(&format!(
            "pushing {} to docker://{reference}",
            request.source
        ));
        let summary = gpubox_registry::push(
            &reference,
            &upload.manifest,
            &blobs,
            |wanted| upload.read(&wanted.digest),
            &request.options,
        )?;
        report(&summary, reporter);
        if let Some(sbom) = &sbom {
            attach_sbom(
                &reference,
                &upload.manifest,
                sbom,
                &request.options,
                reporter,
            )?;
        }
    }
    Ok(Digest::of(&upload.manifest).to_string())
}

/// Pushes the index at `source` as it is stored (its images read from there,
/// the one already `opened` among them), with [`push_index_to`] for each
/// reference; an SBOM is attached to the index.
fn push_index(
    request: &PushRequest,
    source: &ImageLocation,
    opened: OpenedImage,
    index: &gpubox_oci::source::OpenedIndex,
    reporter: &dyn Reporter,
) -> Result<String, BuildError> {
    let opened_digest = opened.reader.manifest_digest();
    let mut opened = Some(opened);
    let mut uploads = Vec::with_capacity(index.platforms.len());
    for (platform, descriptor) in &index.platforms {
        let already = opened.take_if(|_| opened_digest.as_ref() == Some(&descriptor.digest));
        let image = match already {
            Some(image) => image,
            None => open_platform(source, None, Some(&platform.architecture))?,
        };
        uploads.push(Upload::exported(image, source)?);
    }
    let images: Vec<(String, Digest)> = index
        .platforms
        .iter()
        .zip(&uploads)
        .map(|((platform, _), upload)| (platform.to_string(), Digest::of(&upload.manifest)))
        .collect();
    let sbom = read_sbom(request)?;
    for reference in &request.references {
        let reference = with_default_tag(reference, "latest");
        reporter.step(&format!(
            "pushing {} ({} platforms) to docker://{reference}",
            request.source,
            uploads.len()
        ));
        let summary = push_index_to(
            &reference,
            &images,
            &index.document,
            &request.options,
            reporter,
            |i, by_digest| {
                let upload = &uploads[i];
                let blobs: Vec<Blob> = upload.blobs.iter().map(|(blob, _)| blob.clone()).collect();
                Ok(gpubox_registry::push(
                    by_digest,
                    &upload.manifest,
                    &blobs,
                    |wanted| upload.read(&wanted.digest),
                    &request.options,
                )?)
            },
        )?;
        report(&summary, reporter);
        if let Some(sbom) = &sbom {
            attach_sbom(
                &reference,
                &index.document,
                sbom,
                &request.options,
                reporter,
            )?;
        }
    }
    Ok(index.digest.to_string())
}

/// The SBOM `gpubox push --sbom FILE` attaches, read once for every reference.
fn read_sbom(request: &PushRequest) -> Result<Option<Vec<u8>>, BuildError> {
    request
        .sbom
        .as_ref()
        .map(|path| {
            std::fs::read(path).map_err(|source| BuildError::InputNotReadable {
                path: path.clone(),
                source,
            })
        })
        .transpose()
}

/// Pushes an index to `reference`: each of its `images` (platform, manifest
/// digest) by digest with `push_image(position, HOST/REPO@DIGEST)`, which
/// skips the blobs the repository has, so a layer two platforms share goes up
/// once; then the index document under the tag. Says what each platform sent;
/// returns the sum of them all, named by the index's digest.
fn push_index_to(
    reference: &str,
    images: &[(String, Digest)],
    index: &[u8],
    options: &PushOptions,
    reporter: &dyn Reporter,
    push_image: impl Fn(usize, &str) -> Result<PushSummary, BuildError>,
) -> Result<PushSummary, BuildError> {
    let repository = without_tag(reference);
    let mut total: Option<PushSummary> = None;
    for (position, (platform, digest)) in images.iter().enumerate() {
        let one = push_image(position, &format!("{repository}@{digest}"))?;
        reporter.step(&format!(
            "{platform}: uploaded {} ({}), skipped {} the registry had",
            Count(one.uploaded_blobs, "blob"),
            Bytes(one.uploaded_bytes),
            one.skipped_blobs
        ));
        total = Some(match total {
            None => one,
            Some(mut all) => {
                all.uploaded_blobs += one.uploaded_blobs;
                all.uploaded_bytes += one.uploaded_bytes;
                all.skipped_blobs += one.skipped_blobs;
                all.mounted.extend(one.mounted);
                all
            }
        });
    }
    let top = gpubox_registry::push(
        reference,
        index,
        &[],
        |_| Err::<Box<dyn Read>, io::Error>(io::Error::other("an index has no blobs")),
        options,
    )?;
    let mut all = total.unwrap_or(top.clone());
    all.manifest_digest = top.manifest_digest;
    Ok(all)
}

/// What a push sends: the manifest, and each blob it names (the config
/// first, then the layers) with where its bytes are read from.
struct Upload {
    manifest: Vec<u8>,
    blobs: Vec<(Blob, BlobSource)>,
    /// The image read from its source, when any blob comes from it.
    opened: Option<OpenedImage>,
    /// Held open (so no collection removes its blobs) while any blob comes
    /// from it.
    cache: Option<LayerCache>,
}

/// Where the bytes of a blob to push are.
enum BlobSource {
    /// In memory: a config read from the source.
    Bytes(Vec<u8>),
    /// In the layer cache's blob store.
    Cache,
    /// Layer `n` of the opened source, as stored there.
    Layer(usize),
}

impl Upload {
    /// The image at `source` as stored there: an OCI layout's manifest as it
    /// is, else an OCI manifest for its config and layers.
    fn exported(opened: OpenedImage, source: &ImageLocation) -> Result<Upload, BuildError> {
        let reader = &opened.reader;
        let stored = matches!(
            source,
            ImageLocation::OciDir { .. } | ImageLocation::OciArchive { .. }
        );
        let manifest = match reader.manifest_json() {
            // As stored, so the digest (and an index naming it) still holds.
            Some(bytes) if stored => bytes.to_vec(),
            _ => oci_manifest(
                reader.config_json(),
                reader
                    .layers()
                    .iter()
                    .map(|l| descriptor(l.compression.oci_layer_media_type(), &l.digest, l.size))
                    .collect(),
            )?,
        };
        let layers = reader.layers().iter().enumerate();
        let mut blobs = vec![config_blob(reader.config_json())];
        blobs.extend(layers.map(|(i, l)| (blob(&l.digest, l.size), BlobSource::Layer(i))));
        Ok(Upload {
            manifest,
            blobs,
            opened: Some(opened),
            cache: None,
        })
    }

    /// The image as gpubox built it, all from the layer cache.
    fn built(record: &BuiltRecord, cache: LayerCache) -> Result<Upload, BuildError> {
        let path = cache.store().path(&record.manifest.digest);
        let manifest = std::fs::read(&path).map_err(|source| BuildError::InputNotReadable {
            path: path.clone(),
            source,
        })?;
        if Digest::of(&manifest) != record.manifest.digest {
            return Err(BuildError::ManifestCorrupt {
                path,
                digest: record.manifest.digest.clone(),
            });
        }
        let mut blobs = vec![(
            blob(&record.config.digest, record.config.size),
            BlobSource::Cache,
        )];
        blobs.extend(
            record
                .layers
                .iter()
                .map(|l| (blob(&l.digest, l.size), BlobSource::Cache)),
        );
        Ok(Upload {
            manifest,
            blobs,
            opened: None,
            cache: Some(cache),
        })
    }

    /// The bytes of the blob `digest`, checked against it as they are read
    /// where they come from a source.
    fn read(&self, digest: &str) -> io::Result<Box<dyn Read + '_>> {
        let source = self
            .blobs
            .iter()
            .find(|(blob, _)| blob.digest == digest)
            .map(|(_, source)| source)
            .ok_or_else(|| io::Error::other("the blob is not one of the image's"))?;
        match source {
            BlobSource::Bytes(bytes) => Ok(Box::new(io::Cursor::new(bytes.as_slice()))),
            BlobSource::Cache => {
                let cache = self.cache.as_ref().ok_or_else(no_source)?;
                let digest: Digest = digest.parse().map_err(io::Error::other)?;
                let file = cache.store().open_blob(&digest).map_err(io::Error::other)?;
                Ok(Box::new(io::BufReader::new(file)))
            }
            BlobSource::Layer(index) => {
                let opened = self.opened.as_ref().ok_or_else(no_source)?;
                opened.reader.raw_layer(*index).map_err(io::Error::other)
            }
        }
    }
}

fn no_source() -> io::Error {
    io::Error::other("the image's source was closed before the push")
}

/// What pushing the image `reference` in `engine` sends. When the cache
/// recorded a build with the config the engine reports, that build, without
/// exporting anything; else the engine's export, with each layer the cache
/// holds compressed taken from it, and the reporter told what differs from
/// the build and why.
fn engine_upload(
    source: &ImageLocation,
    engine: Engine,
    reference: &str,
    cache: Option<LayerCache>,
    reporter: &dyn Reporter,
) -> Result<Upload, BuildError> {
    // The engine's ID is the config's digest: a build it names goes up
    // without an export.
    let found = match &cache {
        Some(cache) => cache.built_image(&engine_image_id(engine, reference)?),
        None => None,
    };
    if let Some(record) = found {
        if let Some(cache) = cache {
            return as_built(source, &record, cache, reporter);
        }
    }
    // Else what the engine exports; its config may still be a build's (an
    // engine whose IDs are not config digests).
    let opened = open(source)?;
    let config_digest = Digest::of(opened.reader.config_json());
    let found = cache.as_ref().and_then(|c| c.built_image(&config_digest));
    if let Some(record) = found {
        if let Some(cache) = cache {
            return as_built(source, &record, cache, reporter);
        }
    }
    let reader = &opened.reader;
    let diff_ids: Vec<Digest> = reader
        .layers()
        .iter()
        .filter_map(|l| l.diff_id.clone())
        .collect();
    let (cached, under) = match &cache {
        Some(cache) => (
            cache.layers_by_diff_id(&diff_ids),
            cache.built_under(&diff_ids),
        ),
        None => Default::default(),
    };
    // A layer taken from a build keeps the annotations the build gave it.
    let built_annotations = match (&cache, &under) {
        (Some(cache), Some(record)) => layer_annotations_of(cache, record),
        _ => BTreeMap::new(),
    };
    let mut descriptors = Vec::new();
    let mut blobs = vec![config_blob(reader.config_json())];
    let mut from_cache = BTreeMap::<&'static str, usize>::new();
    let mut exported = BTreeMap::<&'static str, usize>::new();
    for (index, layer) in reader.layers().iter().enumerate() {
        match layer.diff_id.as_ref().and_then(|d| cached.get(d)) {
            Some(built) => {
                *from_cache
                    .entry(compression_name(built.compression))
                    .or_default() += 1;
                // The blob's own annotations (zstd:chunked's TOC) even when
                // the build's manifest is gone.
                let mut annotations = built.annotations.clone();
                annotations.extend(
                    built_annotations
                        .get(&built.digest)
                        .cloned()
                        .unwrap_or_default(),
                );
                descriptors.push(Descriptor {
                    annotations,
                    ..descriptor(
                        built.compression.oci_layer_media_type(),
                        &built.digest,
                        built.size,
                    )
                });
                blobs.push((blob(&built.digest, built.size), BlobSource::Cache));
            }
            None => {
                *exported
                    .entry(compression_name(layer.compression))
                    .or_default() += 1;
                descriptors.push(descriptor(
                    layer.compression.oci_layer_media_type(),
                    &layer.digest,
                    layer.size,
                ));
                blobs.push((blob(&layer.digest, layer.size), BlobSource::Layer(index)));
            }
        }
    }
    let manifest = oci_manifest(reader.config_json(), descriptors)?;
    reporter.step(&not_as_built(
        source,
        engine,
        &config_digest,
        under.as_ref(),
        &from_cache,
        &exported,
    ));
    Ok(Upload {
        manifest,
        blobs,
        opened: Some(opened),
        cache,
    })
}

/// The upload of `record`, saying so.
fn as_built(
    source: &ImageLocation,
    record: &BuiltRecord,
    cache: LayerCache,
    reporter: &dyn Reporter,
) -> Result<Upload, BuildError> {
    let written_to = if record.written_to == source.to_string() {
        String::new()
    } else {
        format!(" (written to {})", record.written_to)
    };
    reporter.step(&format!(
        "{source} is the image gpubox built{written_to}: pushing its {} and manifest {} \
         from the layer cache",
        Count(record.layers.len(), "layer"),
        record.manifest.digest
    ));
    Upload::built(record, cache)
}

/// Why an engine's image goes up under a manifest of its own: how it differs
/// from the build it was made from, or that the cache does not know it; and
/// where its layers come from: `from_cache` and `exported` count them by
/// compression.
fn not_as_built(
    source: &ImageLocation,
    engine: Engine,
    config: &Digest,
    under: Option<&BuiltRecord>,
    from_cache: &BTreeMap<&str, usize>,
    exported: &BTreeMap<&str, usize>,
) -> String {
    let layers: usize = from_cache.values().chain(exported.values()).sum();
    let why = match under {
        Some(built) => {
            let added = layers.saturating_sub(built.layers.len());
            let added = if added > 0 {
                format!(", and {} added on top", Count(added, "layer"))
            } else {
                String::new()
            };
            format!(
                "{source} is not the image gpubox built for {}: its config is {config}, not \
                 {} (rewritten by {engine}, or the image was changed since the build{added}), \
                 so it cannot go up under the build's manifest {}",
                built.written_to, built.config.digest, built.manifest.digest
            )
        }
        None => format!(
            "the layer cache has no record of building {source} (config {config}): it was \
             built with another cache (or the cache was cleared), or not by gpubox"
        ),
    };
    let said = |counts: &BTreeMap<&str, usize>, how: &dyn Fn(usize) -> String| {
        counts
            .iter()
            .map(|(compression, n)| format!("{} {} ({compression})", Count(*n, "layer"), how(*n)))
            .collect::<Vec<_>>()
    };
    let mut parts = said(from_cache, &|_| "as built, from the layer cache".to_owned());
    parts.extend(said(exported, &|n| {
        let them = if n == 1 { "it" } else { "them" };
        format!("as {engine} exported {them}")
    }));
    let layers_said = match parts.as_slice() {
        [] => "no layers".to_owned(),
        _ => parts.join(" and "),
    };
    format!(
        "{why}; pushing {layers_said} under a new manifest, whose digest differs from the \
         build's"
    )
}

/// How a layer is stored, in words.
fn compression_name(compression: Compression) -> &'static str {
    match compression {
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        Compression::ZstdChunked => "zstd:chunked",
        Compression::None => "uncompressed",
    }
}

/// The annotations of each layer (by digest) in the manifest `record` names, as
/// the build wrote it; empty when the cache no longer has the manifest.
fn layer_annotations_of(
    cache: &LayerCache,
    record: &BuiltRecord,
) -> BTreeMap<Digest, BTreeMap<String, String>> {
    std::fs::read(cache.store().path(&record.manifest.digest))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Manifest>(&bytes).ok())
        .map(|manifest| {
            manifest
                .layers
                .into_iter()
                .map(|layer| (layer.digest, layer.annotations))
                .collect()
        })
        .unwrap_or_default()
}

/// An OCI manifest for `config` and `layers`.
fn oci_manifest(config: &[u8], layers: Vec<Descriptor>) -> Result<Vec<u8>, BuildError> {
    Ok(canonical_json(&Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
        config: descriptor(CONFIG_MEDIA_TYPE, &Digest::of(config), config.len() as u64),
        layers,
        annotations: BTreeMap::new(),
    })?)
}

fn config_blob(config: &[u8]) -> (Blob, BlobSource) {
    (
        blob(&Digest::of(config), config.len() as u64),
        BlobSource::Bytes(config.to_vec()),
    )
}

/// What a build knows about its push before it starts.
#[derive(Default)]
pub struct PushHints {
    /// What went up while the layers were being made ([`BlobUploader`]).
    ///
    /// [`BlobUploader`]: gpubox_registry::BlobUploader
    pub early: Option<EarlyUploads>,
}

/// Pushes a freshly built image or index: layers from `store` (a layer reused
/// from the registry is there already), configs and manifests as built; `hints`
/// says what went up early. An index's images go up by digest, each sending only
/// the blobs the repository lacks (a layer two platforms share goes up once),
/// then the index under the tag.
pub fn push_built(
    reference: &str,
    artifact: &Artifact,
    store: &BlobStore,
    options: &PushOptions,
    hints: &PushHints,
    reporter: &dyn Reporter,
) -> Result<PushSummary, BuildError> {
    reporter.step(&format!("pushing to docker://{reference}"));
    let summary = match artifact {
        Artifact::Image(image) => push_image(reference, image, store, options)?,
        Artifact::Index(index) => {
            let images: Vec<(String, Digest)> = index
                .images
                .iter()
                .map(|image| (image.platform.to_string(), image.manifest_digest.clone()))
                .collect();
            push_index_to(
                reference,
                &images,
                &index.index,
                options,
                reporter,
                |i, by_digest| push_image(by_digest, &index.images[i], store, options),
            )?
        }
    };
    let summary = match &hints.early {
        Some(early) => early.merged_into(summary),
        None => summary,
    };
    report(&summary, reporter);
    Ok(summary)
}

/// Pushes one image: its config, layers and manifest, to `reference` (a tag
/// or a digest).
fn push_image(
    reference: &str,
    image: &BuiltImage,
    store: &BlobStore,
    options: &PushOptions,
) -> Result<PushSummary, BuildError> {
    let mut blobs = vec![blob(&image.config_digest, image.config.len() as u64)];
    blobs.extend(image.layers.iter().map(|l| blob(&l.digest, l.size)));
    let config_digest = image.config_digest.to_string();
    Ok(gpubox_registry::push(
        reference,
        &image.manifest,
        &blobs,
        |wanted| {
            if wanted.digest == config_digest {
                return Ok(Box::new(io::Cursor::new(image.config.clone())) as Box<dyn Read>);
            }
            let digest: Digest = wanted.digest.parse().map_err(io::Error::other)?;
            let file = store.open_blob(&digest).map_err(io::Error::other)?;
            Ok::<_, io::Error>(Box::new(io::BufReader::new(file)))
        },
        options,
    )?)
}

/// `HOST/REPO` of `HOST/REPO:TAG` or `HOST/REPO@DIGEST`.
fn without_tag(reference: &str) -> &str {
    let reference = reference
        .split_once('@')
        .map_or(reference, |(name, _)| name);
    match reference.rsplit_once(':') {
        // A colon after the last slash is a tag's; before it, a port's.
        Some((name, tag)) if !tag.contains('/') => name,
        _ => reference,
    }
}

/// Pushes `sbom` (SPDX JSON) as a referrer of the image whose manifest is
/// `manifest`, already pushed to `reference`.
pub fn attach_sbom(
    reference: &str,
    manifest: &[u8],
    sbom: &[u8],
    options: &PushOptions,
    reporter: &dyn Reporter,
) -> Result<(), BuildError> {
    let attached = gpubox_registry::push_sbom(reference, manifest, sbom, options)?;
    reporter.step(&match attached.fallback_tag {
        Some(tag) => format!(
            "attached the SBOM as {} (listed in the referrers tag {tag})",
            attached.manifest_digest
        ),
        None => format!("attached the SBOM as {}", attached.manifest_digest),
    });
    Ok(())
}

/// Writes the pushed manifest's digest to `file`, as skopeo's `--digestfile` does.
pub fn write_digest_file(file: &Path, digest: &str) -> Result<(), BuildError> {
    gpubox_atomic::write_bytes(file, &gpubox_atomic::Options::new(), digest.as_bytes())?;
    Ok(())
}

fn report(summary: &PushSummary, reporter: &dyn Reporter) {
    for mounted in &summary.mounted {
        reporter.step(&format!(
            "mounted blob {} from repository {}",
            mounted.digest, mounted.from
        ));
    }
    reporter.step(&format!(
        "uploaded {} ({}), mounted {}, skipped {} the registry had; manifest {}",
        Count(summary.uploaded_blobs, "blob"),
        Bytes(summary.uploaded_bytes),
        summary.mounted.len(),
        summary.skipped_blobs,
        summary.manifest_digest
    ));
}

fn blob(digest: &Digest, size: u64) -> Blob {
    Blob {
        digest: digest.to_string(),
        size,
        mount_from: None,
    }
}

fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: digest.clone(),
        size,
        annotations: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpubox_oci::blob::LayerBlob;

    fn record(layers: usize) -> BuiltRecord {
        let layer = |i: usize| LayerBlob {
            digest: Digest::of(format!("blob {i}").as_bytes()),
            size: 10,
            diff_id: Digest::of(format!("tar {i}").as_bytes()),
            uncompressed_size: 20,
            entry_count: 1,
            compression: Compression::Zstd,
            annotations: Default::default(),
        };
        BuiltRecord {
            written_to: "podman:demo:v1".to_owned(),
            manifest: descriptor(MANIFEST_MEDIA_TYPE, &Digest::of(b"manifest"), 8),
            config: descriptor(CONFIG_MEDIA_TYPE, &Digest::of(b"config"), 6),
            layers: (0..layers).map(layer).collect(),
        }
    }

    #[test]
    fn a_changed_engine_image_is_explained_with_where_its_layers_come_from() {
        let source: ImageLocation = "podman:demo-derived:v1".parse().unwrap();
        let built = record(2);
        let said = not_as_built(
            &source,
            Engine::Podman,
            &Digest::of(b"new config"),
            Some(&built),
            &BTreeMap::from([("zstd", 2)]),
            &BTreeMap::from([("uncompressed", 1)]),
        );
        for wanted in [
            "podman:demo-derived:v1 is not the image gpubox built for podman:demo:v1",
            &format!("its config is {}", Digest::of(b"new config")),
            &format!("not {}", built.config.digest),
            "1 layer added on top",
            &format!("the build's manifest {}", built.manifest.digest),
            "pushing 2 layers as built, from the layer cache (zstd) and 1 layer as podman \
             exported it (uncompressed) under a new manifest",
        ] {
            assert!(said.contains(wanted), "{wanted}: {said}");
        }
    }

    #[test]
    fn an_engine_image_the_cache_does_not_know_says_so() {
        let source: ImageLocation = "docker-daemon:demo:v1".parse().unwrap();
        let said = not_as_built(
            &source,
            Engine::Docker,
            &Digest::of(b"config"),
            None,
            &BTreeMap::new(),
            &BTreeMap::from([("uncompressed", 3)]),
        );
        assert!(
            said.starts_with("the layer cache has no record of building docker-daemon:demo:v1"),
            "{said}"
        );
        assert!(
            said.contains("pushing 3 layers as docker exported them (uncompressed)"),
            "{said}"
        );
    }
}
