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
use gpubox_oci::{chunked, Compression};
use gpubox_registry::{blobs_present, mount_blobs, registry_and_repository, Blob, PullError};

use crate::error::BuildError;
use crate::location::ImageLocation;
use crate::open::{open_metadata, RegistryAccess};
use crate::reporter::Count;

/// The layers that images in registries have, by key.
#[derive(Default)]
pub struct RegistryLayers {
    /// Where the image goes: its reference and its repository there.
    destination: Option<(String, String)>,
    by_key: HashMap<String, Candidate>,
}

/// A layer with a key, as an image's manifest and config describe it.
struct Candidate {
    /// The image reference it was read from, `HOST[:PORT]/REPO:TAG`.
    reference: String,
    /// That image's repository, as the registry names it.
    repository: String,
    blob: LayerBlob,
}

/// A layer taken from a registry: its blob as the manifest there names it (the
/// bytes are not here), and the repository it was found in.
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
        let Ok((host, repository)) = registry_and_repository(destination) else {
            return layers;
        };
        layers.destination = Some((destination.to_owned(), repository));
        let references = std::iter::once(destination).chain(cache_from.iter().map(String::as_str));
        for reference in references {
            let reference = reference.trim_start_matches("docker://");
            let repository = match registry_and_repository(reference) {
                Ok((there, repository)) if there == host => repository,
                Ok((there, _)) => {
                    registry.reporter.step(&format!(
                        "--cache-from docker://{reference} is on {there}, not on {host} where the \
                         image goes: layers are mounted within a registry, so none is reused"
                    ));
                    continue;
                }
                Err(error) => {
                    registry
                        .reporter
                        .step(&format!("no layers to reuse: {error}"));
                    continue;
                }
            };
            let location = ImageLocation::Registry {
                reference: reference.to_owned(),
            };
            let opened = match open_metadata(&location, registry, None) {
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
            // Of an index, every platform's layers may serve.
            let mut images = vec![opened];
            if let Some(index) = images[0].reader.index().cloned() {
                let read = images[0].reader.manifest_digest();
                for (platform, descriptor) in &index.platforms {
                    if read.as_ref() == Some(&descriptor.digest) {
                        continue;
                    }
                    match open_metadata(&location, registry, Some(&platform.architecture)) {
                        Ok(opened) => images.push(opened),
                        Err(error) => registry.reporter.step(&format!(
                            "no layers to reuse from docker://{reference}'s {platform} image: \
                             {error}"
                        )),
                    }
                }
            }
            let mut found = 0;
            let all_layers: Vec<&gpubox_oci::source::LayerRef> =
                images.iter().flat_map(|o| o.reader.layers()).collect();
            for layer in all_layers.iter().copied() {
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
                let Some(blob) = blob_of(layer) else {
                    continue;
                };
                found += 1;
                layers.by_key.entry(key.clone()).or_insert(Candidate {
                    reference: reference.to_owned(),
                    repository: repository.clone(),
                    blob,
                });
            }
            registry.reporter.step(&format!(
                "docker://{reference}: {} with a gpubox key, of {}",
                Count(found, "layer"),
                all_layers.len()
            ));
        }
        layers
    }

    /// For each `(index, key)` wanted, the layer with that key and
    /// `compression` that the destination holds or now holds: one the
    /// destination's image names is checked with a HEAD request; one another
    /// repository has is mounted into the destination now, so a registry that
    /// refuses the mount (or a blob gone since) means the layer is built rather
    /// than the push failing. A layer left out is reported, to be built.
    pub fn take(
        &self,
        wanted: &[(usize, &str)],
        compression: Compression,
        registry: &RegistryAccess<'_>,
    ) -> HashMap<usize, Reused> {
        let Some((destination, own_repository)) = &self.destination else {
            return HashMap::new();
        };
        let mut by_repository: BTreeMap<&str, Vec<(usize, &Candidate)>> = BTreeMap::new();
        for &(index, key) in wanted {
            if let Some(candidate) = self.by_key.get(key) {
                if candidate.blob.compression == compression {
                    by_repository
                        .entry(candidate.repository.as_str())
                        .or_default()
                        .push((index, candidate));
                }
            }
        }
        let mut taken = HashMap::new();
        for (repository, candidates) in by_repository {
            let blobs: Vec<Blob> = candidates
                .iter()
                .map(|(_, c)| Blob {
                    digest: c.blob.digest.to_string(),
                    size: c.blob.size,
                    mount_from: Some(repository.to_owned()),
                })
                .collect();
            let there = if repository == own_repository {
                let digests: Vec<String> = blobs.into_iter().map(|b| b.digest).collect();
                blobs_present(destination, &digests, registry.options)
            } else {
                mount_blobs(destination, &blobs, registry.options)
            };
            let there = match there {
                Ok(there) => there,
                Err(error) => {
                    registry.reporter.step(&format!(
                        "cannot check the layers of docker://{destination} from {repository}, so \
                         they are built: {error}"
                    ));
                    continue;
                }
            };
            for ((index, candidate), there) in candidates.into_iter().zip(there) {
                if !there {
                    registry.reporter.step(&format!(
                        "docker://{} names layer {} but {repository} no longer has its blob, or \
                         the registry would not mount it: building it",
                        candidate.reference, candidate.blob.digest
                    ));
                    continue;
                }
                taken.insert(
                    index,
                    Reused {
                        blob: candidate.blob.clone(),
                        repository: repository.to_owned(),
                    },
                );
            }
        }
        taken
    }
}

/// The layer as gpubox would have made it, when its descriptor and the config
/// say everything a [`LayerBlob`] holds.
fn blob_of(layer: &LayerRef) -> Option<LayerBlob> {
    let summary = summary_from_annotations(&layer.annotations)?;
    // The blob's own annotations, the ones gpubox writes with it (where
    // zstd:chunked's table of contents is), go with it; gpubox's are written
    // again from the key and summary, and any other tool's are left behind,
    // so the image is the one a build without the registry makes.
    let annotations = chunked::blob_annotations(&layer.annotations);
    // A zstd:chunked layer has zstd's media type; its annotations tell.
    let compression = match layer.compression {
        Compression::Zstd if chunked::is_chunked(&annotations) => Compression::ZstdChunked,
        other => other,
    };
    let blob = LayerBlob {
        digest: layer.digest.clone(),
        size: layer.size,
        diff_id: layer.diff_id.clone()?,
        uncompressed_size: summary.uncompressed_size,
        entry_count: summary.entry_count,
        compression,
        annotations,
    };
    Some(blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_their_registry_and_repository_as_the_registry_does() {
        let split = |reference: &str| registry_and_repository(reference).unwrap();
        assert_eq!(
            split("127.0.0.1:5000/team/app:v1"),
            ("127.0.0.1:5000".to_owned(), "team/app".to_owned())
        );
        assert_eq!(split("reg.example/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").1, "app");
        // Docker Hub's official images live under library/.
        assert_eq!(split("docker.io/ubuntu:24.04").1, "library/ubuntu");
        // Without a host, nothing is guessed.
        assert!(registry_and_repository("myorg/app:v1").is_err());
    }
}
