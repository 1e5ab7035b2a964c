//! The registry as a build cache: a CI runner with an empty cache folder takes
//! every layer it would build the same as before from the registry, without
//! reading, compressing or even having the files behind it.
//!
//! Every layer gpubox writes carries its cache key on its descriptor
//! ([`gpubox_oci::image::LAYER_KEY`]: for store paths, the paths, compression,
//! mtime and format version; for files, their tar's digest, compression and
//! format version). Before a `-o docker://REG/REPO:TAG` build makes its layers,
//! [`RegistryLayers::read`] reads the manifest and config (never a layer) of the
//! image the tag holds now and of each `--cache-from` image. A layer whose key
//! one of them has is checked with one HEAD request in the repository that has
//! it ([`RegistryLayers::take`]) and then used as it is: the push skips it (the
//! destination has it) or mounts it from that repository. A key whose blob is
//! gone, or whose blob is not the size gpubox made under it
//! ([`gpubox_oci::image::LAYER_SIZE`]: another tool recompressed it and kept the
//! annotations), is reported and the layer is built; an image another tool
//! pushed to the tag has no keys, so nothing of it is reused.
//!
//! Trust: a key is only as trustworthy as the registry that serves it. Anyone
//! who can push to the destination repository can already replace its image,
//! so reusing what the destination holds adds no exposure; another repository
//! (`--cache-from`) is read only when named, and must be on the destination's
//! registry, since a layer is mounted there, never copied between registries.
//! The registry checked each blob's digest when it took it, and a pull checks it
//! again, so a reused layer is the bytes its descriptor names; that those bytes
//! are what the key says is the trust the key asks for.

use std::collections::{BTreeMap, HashMap};

use gpubox_oci::blob::LayerBlob;
use gpubox_oci::image::{summary_from_annotations, LAYER_KEY, LAYER_SIZE};
use gpubox_oci::source::LayerRef;
use gpubox_oci::Compression;
use gpubox_registry::{blobs_present, PullError};

use crate::error::BuildError;
use crate::location::ImageLocation;
use crate::open::{open_metadata, RegistryAccess};
use crate::reporter::Count;

/// The layers that images in registries have, by key.
#[derive(Default)]
pub struct RegistryLayers {
    by_key: HashMap<String, Candidate>,
}

/// A layer with a key, as an image's manifest and config describe it.
struct Candidate {
    /// The image reference it was read from, `HOST[:PORT]/REPO:TAG`.
    reference: String,
    blob: LayerBlob,
}

/// A layer taken from a registry: its blob as the manifest there names it (the
/// bytes are not here), and the repository that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reused {
    pub blob: LayerBlob,
    /// `REPO`, on the destination's registry.
    pub repository: String,
}

impl RegistryLayers {
    /// Reads the image `destination` (`HOST[:PORT]/REPO:TAG`) and each of
    /// `cache_from`, in that order, manifest and config only. An image that is
    /// not there (a first push), cannot be read, or is on another registry is
    /// reported and adds nothing.
    pub fn read(
        destination: &str,
        cache_from: &[String],
        registry: &RegistryAccess<'_>,
    ) -> RegistryLayers {
        let mut layers = RegistryLayers::default();
        let host = host_of(destination);
        let references = std::iter::once(destination).chain(cache_from.iter().map(String::as_str));
        for reference in references {
            let reference = reference.trim_start_matches("docker://");
            if host_of(reference) != host {
                registry.reporter.step(&format!(
                    "--cache-from docker://{reference} is not on {host}, where the image goes: \
                     its layers cannot be mounted there, so none is reused"
                ));
                continue;
            }
            let location = ImageLocation::Registry {
                reference: reference.to_owned(),
            };
            let opened = match open_metadata(&location, registry) {
                Ok(opened) => opened,
                // A first push: nothing there yet, nothing to say but that.
                Err(BuildError::Pull(PullError::NotFound { .. })) => {
                    registry.reporter.step(&format!(
                        "docker://{reference} has no image yet: no layers to reuse"
                    ));
                    continue;
                }
                Err(error) => {
                    registry.reporter.step(&format!(
                        "no layers to reuse from docker://{reference}: {error}"
                    ));
                    continue;
                }
            };
            let mut found = 0;
            for layer in opened.reader.layers() {
                let Some(key) = layer.annotations.get(LAYER_KEY) else {
                    continue;
                };
                let made = layer.annotations.get(LAYER_SIZE);
                if made != Some(&layer.size.to_string()) {
                    registry.reporter.step(&format!(
                        "docker://{reference}'s layer {} has a gpubox key, but it is {} bytes where \
                         gpubox made {}: rewritten since (recompressed?), so not reused",
                        layer.digest,
                        layer.size,
                        made.map_or("a layer of another size", String::as_str),
                    ));
                    continue;
                }
                let Some(candidate) = Candidate::of(reference, layer) else {
                    continue;
                };
                found += 1;
                layers.by_key.entry(key.clone()).or_insert(candidate);
            }
            registry.reporter.step(&format!(
                "docker://{reference}: {} with a gpubox key, of {}",
                Count(found, "layer"),
                opened.reader.layers().len()
            ));
        }
        layers
    }

    /// For each `(index, key)` wanted, the layer with that key and
    /// `compression`, when its repository still holds its blob (one HEAD
    /// request per layer, grouped by image). A layer whose blob is gone, or that
    /// cannot be checked, is reported and left out, to be built.
    pub fn take(
        &self,
        wanted: &[(usize, &str)],
        compression: Compression,
        registry: &RegistryAccess<'_>,
    ) -> HashMap<usize, Reused> {
        let mut by_image: BTreeMap<&str, Vec<(usize, &Candidate)>> = BTreeMap::new();
        for &(index, key) in wanted {
            if let Some(candidate) = self.by_key.get(key) {
                if candidate.blob.compression == compression {
                    by_image
                        .entry(candidate.reference.as_str())
                        .or_default()
                        .push((index, candidate));
                }
            }
        }
        let mut taken = HashMap::new();
        for (reference, candidates) in by_image {
            let digests: Vec<String> = candidates
                .iter()
                .map(|(_, c)| c.blob.digest.to_string())
                .collect();
            let present = match blobs_present(reference, &digests, registry.options) {
                Ok(present) => present,
                Err(error) => {
                    registry.reporter.step(&format!(
                        "cannot check the layers of docker://{reference}, so they are built: {error}"
                    ));
                    continue;
                }
            };
            for ((index, candidate), there) in candidates.into_iter().zip(present) {
                if !there {
                    registry.reporter.step(&format!(
                        "docker://{reference} names layer {} but no longer has its blob: \
                         building it",
                        candidate.blob.digest
                    ));
                    continue;
                }
                taken.insert(
                    index,
                    Reused {
                        blob: candidate.blob.clone(),
                        repository: repository_of(reference).to_owned(),
                    },
                );
            }
        }
        taken
    }
}

impl Candidate {
    /// The layer as gpubox would have made it, when its descriptor and the
    /// config say everything a [`LayerBlob`] holds.
    fn of(reference: &str, layer: &LayerRef) -> Option<Candidate> {
        let summary = summary_from_annotations(&layer.annotations)?;
        // The descriptor's own annotations (zstd:chunked's table of contents)
        // go with the blob; gpubox's are written again from the key and summary.
        let annotations = layer
            .annotations
            .iter()
            .filter(|(name, _)| !name.starts_with("io.gpubox."))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let blob = LayerBlob {
            digest: layer.digest.clone(),
            size: layer.size,
            diff_id: layer.diff_id.clone()?,
            uncompressed_size: summary.uncompressed_size,
            entry_count: summary.entry_count,
            compression: layer.compression,
            annotations,
        };
        Some(Candidate {
            reference: reference.to_owned(),
            blob,
        })
    }
}

/// `HOST[:PORT]` of `HOST[:PORT]/REPO[:TAG|@DIGEST]`.
fn host_of(reference: &str) -> &str {
    reference.split('/').next().unwrap_or(reference)
}

/// `REPO` of `HOST[:PORT]/REPO[:TAG|@DIGEST]`.
fn repository_of(reference: &str) -> &str {
    let path = reference
        .split_once('/')
        .map_or(reference, |(_, path)| path);
    let path = path.split_once('@').map_or(path, |(path, _)| path);
    match path.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => repository,
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_host_and_repository() {
        assert_eq!(host_of("127.0.0.1:5000/team/app:v1"), "127.0.0.1:5000");
        assert_eq!(repository_of("127.0.0.1:5000/team/app:v1"), "team/app");
        assert_eq!(repository_of("reg.example/app@sha256:abc"), "app");
        assert_eq!(repository_of("reg.example/app"), "app");
    }
}
