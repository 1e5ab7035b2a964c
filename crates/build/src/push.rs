//! Pushing: `gpubox push` and `gpubox build -o docker://...`: an image to a registry,
//! its blobs and manifest sent unchanged, so the registry's digest is gpubox's;
//! with an SBOM, that too, as an OCI referrer of the image.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use gpubox_oci::blob::BlobStore;
use gpubox_oci::image::{
    canonical_json, BuiltImage, Descriptor, Manifest, CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE,
};
use gpubox_oci::Digest;
use gpubox_registry::{Blob, PushError, PushOptions, PushSummary};

use crate::error::BuildError;
use crate::location::{with_default_tag, BadLocation, ImageLocation};
use crate::open::open;
use crate::reporter::Reporter;

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
/// unchanged; other sources get an OCI manifest for their config and layers
/// as stored.
pub fn run(request: &PushRequest, reporter: &dyn Reporter) -> Result<String, BuildError> {
    let opened = open(&request.source)?;
    let reader = &opened.reader;
    let config = reader.config_json();
    let config_digest = Digest::of(config);
    let manifest = match (&request.source, reader.manifest_digest()) {
        (ImageLocation::OciDir { dir, .. }, Some(digest)) => {
            let path = dir.join("blobs/sha256").join(digest.hex());
            let bytes = std::fs::read(&path).map_err(|source| BuildError::InputNotReadable {
                path: path.clone(),
                source,
            })?;
            if Digest::of(&bytes) != digest {
                return Err(BuildError::ManifestCorrupt { path, digest });
            }
            bytes
        }
        _ => canonical_json(&Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
            config: descriptor(CONFIG_MEDIA_TYPE, &config_digest, config.len() as u64),
            layers: reader
                .layers()
                .iter()
                .map(|l| descriptor(l.compression.oci_layer_media_type(), &l.digest, l.size))
                .collect(),
            annotations: BTreeMap::new(),
        })?,
    };
    let sbom = request
        .sbom
        .as_ref()
        .map(|path| {
            std::fs::read(path).map_err(|source| BuildError::InputNotReadable {
                path: path.clone(),
                source,
            })
        })
        .transpose()?;
    let mut blobs = vec![blob(&config_digest, config.len() as u64)];
    blobs.extend(reader.layers().iter().map(|l| blob(&l.digest, l.size)));
    for reference in &request.references {
        let reference = with_default_tag(reference, "latest");
        reporter.step(&format!(
            "pushing {} to docker://{reference}",
            request.source
        ));
        let summary = gpubox_registry::push(
            &reference,
            &manifest,
            &blobs,
            |wanted| {
                if wanted.digest == config_digest.to_string() {
                    return Ok(Box::new(io::Cursor::new(config.to_vec())) as Box<dyn Read>);
                }
                let index = reader
                    .layers()
                    .iter()
                    .position(|l| l.digest.to_string() == wanted.digest)
                    .ok_or_else(|| io::Error::other("the blob is not one of the image's"))?;
                reader.raw_layer(index).map_err(io::Error::other)
            },
            &request.options,
        )?;
        report(&summary, reporter);
        if let Some(sbom) = &sbom {
            attach_sbom(&reference, &manifest, sbom, &request.options, reporter)?;
        }
    }
    Ok(Digest::of(&manifest).to_string())
}

/// Pushes a freshly built image: its layers from `store`, its config and
/// manifest as built.
pub fn push_built(
    reference: &str,
    image: &BuiltImage,
    store: &BlobStore,
    options: &PushOptions,
    reporter: &dyn Reporter,
) -> Result<PushSummary, BuildError> {
    let mut blobs = vec![blob(&image.config_digest, image.config.len() as u64)];
    blobs.extend(image.layers.iter().map(|l| blob(&l.digest, l.size)));
    let config_digest = image.config_digest.to_string();
    reporter.step(&format!("pushing to docker://{reference}"));
    let summary = gpubox_registry::push(
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
    )?;
    report(&summary, reporter);
    Ok(summary)
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
        "uploaded {} blobs ({} bytes), mounted {}, skipped {} the registry had; manifest {}",
        summary.uploaded_blobs,
        summary.uploaded_bytes,
        summary.mounted.len(),
        summary.skipped_blobs,
        summary.manifest_digest
    ));
}

fn blob(digest: &Digest, size: u64) -> Blob {
    Blob {
        digest: digest.to_string(),
        size,
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
