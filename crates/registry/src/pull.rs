//! Pulling an image from a registry over the OCI distribution API into a
//! [`BlobStore`], for `fromImage = "docker://..."`, `gpubox inspect` and
//! `gpubox diff`.
//!
//! A tag is resolved to a manifest digest; a reference pinned by digest must
//! get a manifest with that digest. When the registry answers with a
//! multi-platform index (OCI) or manifest list (Docker), the entry for
//! `linux/ARCH` is taken. OCI and Docker v2 schema 2 manifests are read.
//! The config and layers are downloaded as the registry stores them (never
//! recompressed), checked against their size and sha256 as they stream into
//! a temporary file, and renamed into the store; blobs the store already has
//! are not fetched, so a second pull of the same image downloads nothing but
//! its manifest.
//!
//! The pull writes nothing but blobs into the store it is given, and keeps
//! no record of them: it returns what it fetched (the manifest and the
//! descriptors of its config and layers, [`PulledImage::blobs`]). The store is
//! usually the layer cache's, which the caller holds open (so no collection
//! runs meanwhile) and in which the caller then records the image as an entry
//! naming those blobs, so `gpubox cache gc` keeps them while the image is
//! wanted. It logs in for pulling only, which registries grant where they
//! refuse pushes; the login, retries and error wording are the session's
//! (`session.rs`).

use std::cell::Cell;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use gpubox_oci::blob::BlobStore;
use gpubox_oci::image::{Descriptor, Manifest};
use gpubox_oci::index::{ManifestKind, PlatformEntryError};
use gpubox_oci::source::{IncomingBlob, ReadError};
use gpubox_oci::Digest;
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    OciDescriptor, IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::{Reference, RegistryOperation};

use crate::session::{
    block_on, is_not_found, is_transient, parse_reference, retry, PushError, PushOptions, Session,
};

/// How many blobs come down at once.
const PARALLEL_DOWNLOADS: usize = 3;
/// The manifests gpubox asks for, in the order it prefers them.
const ACCEPTED_MANIFESTS: [&str; 4] = [
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// What a pull fetched. The config and layers the manifest names ([`blobs`])
/// are in the store it was given; recording them (in the layer cache, say) is
/// the caller's part.
///
/// [`blobs`]: PulledImage::blobs
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulledImage {
    /// The image manifest, byte for byte as the registry served it.
    pub manifest: Vec<u8>,
    /// Its digest: the image's identity, whatever tag named it.
    pub manifest_digest: Digest,
    /// The tag that was resolved to the digest; `None` when the reference
    /// was pinned by digest.
    pub tag: Option<String>,
    /// The multi-platform index the reference named, when it named one.
    pub index_digest: Option<Digest>,
    /// That index, byte for byte as the registry served it.
    pub index: Option<Vec<u8>>,
    /// The manifest's config and then its layers, in its order: every blob
    /// the image needs, now in the store.
    pub blobs: Vec<Descriptor>,
    pub downloaded_blobs: usize,
    pub downloaded_bytes: u64,
    /// Blobs the store already had, not fetched again.
    pub cached_blobs: usize,
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The reference, the login, the connection or a request failed, as for
    /// a push.
    #[error(transparent)]
    Registry(#[from] PushError),
    #[error("docker://{reference} does not exist on registry {registry}: {source}; check the repository and tag (`skopeo list-tags docker://{registry}/REPO`)")]
    NotFound {
        reference: String,
        registry: String,
        source: OciDistributionError,
    },
    #[error("the registry sent a manifest with digest {actual} for docker://{reference}, which names {expected}; the registry or something between it and gpubox altered it")]
    ManifestDigest {
        reference: String,
        expected: String,
        actual: Digest,
    },
    #[error("docker://{reference} is a multi-platform image without a linux/{architecture} image (it has {available}); use a base built for linux/{architecture}")]
    NoPlatform {
        reference: String,
        architecture: String,
        available: String,
    },
    #[error("the manifest {digest} of docker://{reference} is {detail}; gpubox reads OCI and Docker v2 schema 2 image manifests")]
    BadManifest {
        reference: String,
        digest: Digest,
        detail: String,
    },
    #[error("storing blob {digest} of docker://{reference} failed: {source}")]
    Blob {
        reference: String,
        digest: Digest,
        source: Box<ReadError>,
    },
}

/// How much of an image [`pull`] fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullScope {
    /// The manifest, the config and every layer.
    Image,
    /// The manifest and the config only (what `skopeo inspect` reads): the layers
    /// stay in the registry, so the pulled image cannot be recorded as complete.
    Metadata,
    /// The manifest, the config and the last layer only, where gpubox writes its
    /// generated files and the start-up plan (a few KiB); incomplete likewise.
    Top,
}

/// Pulls the image `reference` (`HOST[:PORT]/REPO[:TAG]` or
/// `HOST[:PORT]/REPO@sha256:HEX`) for `linux/architecture` (GOARCH's
/// spelling) into `store`, which the caller holds open, fetching only the
/// blobs it lacks (and with [`PullScope::Metadata`], no layer); reaches the
/// registry as a push would (`options`). It records nothing: the returned
/// [`PulledImage`] names the manifest and the blobs, for the caller to record
/// where it keeps images.
pub fn pull(
    reference: &str,
    architecture: &str,
    store: &BlobStore,
    options: &PushOptions,
    scope: PullScope,
) -> Result<PulledImage, PullError> {
    let image = parse_reference(reference)?;
    let work = async {
        let session = Session::open(&image, RegistryOperation::Pull, options).await?;
        let puller = Puller {
            session: &session,
            image: &image,
            reference,
        };
        let named = puller.manifest(&image).await?;
        let (manifest_digest, manifest, index_digest, index) = match named.kind {
            ManifestKind::Image => (named.digest, named.bytes, None, None),
            ManifestKind::Index => {
                let entry = platform_entry(&named, architecture, reference)?;
                let child = puller
                    .manifest(&image.clone_with_digest(entry.to_string()))
                    .await?;
                if child.kind != ManifestKind::Image {
                    return Err(puller.bad_manifest(&child.digest, "another index"));
                }
                (
                    child.digest,
                    child.bytes,
                    Some(named.digest),
                    Some(named.bytes),
                )
            }
        };
        let parsed: Manifest = serde_json::from_slice(&manifest)
            .map_err(|e| puller.bad_manifest(&manifest_digest, &format!("not valid: {e}")))?;
        let blobs: Vec<Descriptor> = std::iter::once(parsed.config)
            .chain(parsed.layers)
            .collect();
        let downloaded = Cell::new(0u64);
        let counted = |n: u64| downloaded.set(downloaded.get() + n);
        let wanted: Vec<&Descriptor> = match scope {
            PullScope::Image => blobs.iter().collect(),
            PullScope::Metadata => blobs.iter().take(1).collect(),
            // The config, then the last layer when there is one.
            PullScope::Top => blobs
                .iter()
                .take(1)
                .chain(blobs.iter().skip(1).last())
                .collect(),
        };
        let fetched: Vec<bool> = stream::iter(wanted)
            .map(|blob| puller.blob(blob, store, &counted))
            .buffer_unordered(PARALLEL_DOWNLOADS)
            .try_collect()
            .await?;
        let downloaded_blobs = fetched.iter().filter(|f| **f).count();
        Ok(PulledImage {
            manifest,
            manifest_digest,
            tag: image
                .digest()
                .is_none()
                .then(|| image.tag().unwrap_or("latest").to_owned()),
            index_digest,
            index,
            blobs,
            downloaded_blobs,
            downloaded_bytes: downloaded.get(),
            cached_blobs: fetched.len() - downloaded_blobs,
        })
    };
    // The runtime's own failure is a push error; the pull's are inside.
    block_on(async { Ok(work.await) })?
}

/// A manifest as served, with its computed digest.
struct FetchedManifest {
    bytes: Vec<u8>,
    digest: Digest,
    kind: ManifestKind,
}

/// One pull's connection and names, for the requests it makes.
struct Puller<'a> {
    session: &'a Session,
    image: &'a Reference,
    /// As the user wrote it, for messages.
    reference: &'a str,
}

impl Puller<'_> {
    /// Fetches the manifest `at` names; when `at` is pinned by digest, the
    /// bytes must have that digest.
    async fn manifest(&self, at: &Reference) -> Result<FetchedManifest, PullError> {
        let (bytes, _) = retry(
            || {
                self.session.client.pull_manifest_raw(
                    at,
                    &self.session.login.auth,
                    &ACCEPTED_MANIFESTS,
                )
            },
            is_transient,
        )
        .await
        .map_err(|source| {
            if is_not_found(&source) {
                PullError::NotFound {
                    reference: self.reference.to_owned(),
                    registry: self.session.registry.clone(),
                    source,
                }
            } else {
                self.session.fail(format!(
                    "fetching the manifest of docker://{}",
                    self.reference
                ))(source)
                .into()
            }
        })?;
        let digest = Digest::of(&bytes);
        if let Some(expected) = at.digest().filter(|d| *d != digest.to_string()) {
            return Err(PullError::ManifestDigest {
                reference: self.reference.to_owned(),
                expected: expected.to_owned(),
                actual: digest,
            });
        }
        let kind =
            ManifestKind::of(&bytes).map_err(|detail| self.bad_manifest(&digest, &detail))?;
        Ok(FetchedManifest {
            bytes: bytes.to_vec(),
            digest,
            kind,
        })
    }

    /// Downloads `blob` into `store` unless it is there; says whether it
    /// downloaded it.
    async fn blob(
        &self,
        blob: &Descriptor,
        store: &BlobStore,
        on_bytes: &dyn Fn(u64),
    ) -> Result<bool, PullError> {
        let stored = store.path(&blob.digest);
        match std::fs::metadata(&stored) {
            Ok(m) if m.len() == blob.size => return Ok(false),
            // A damaged copy would stay in place of the download; the store
            // keeps the first blob of a digest.
            Ok(_) => std::fs::remove_file(&stored).map_err(|source| PullError::Blob {
                reference: self.reference.to_owned(),
                digest: blob.digest.clone(),
                source: Box::new(ReadError::BlobWrite {
                    digest: blob.digest.clone(),
                    path: stored.clone(),
                    source,
                }),
            })?,
            Err(_) => {}
        }
        retry(
            || self.download_once(blob, store, on_bytes),
            |failure| match failure {
                DownloadFailure::Registry(e) => is_transient(e),
                DownloadFailure::Stream(_) => true,
                DownloadFailure::Store(_) => false,
            },
        )
        .await
        .map_err(|failure| {
            let fail = self.session.fail(format!(
                "downloading blob {} of docker://{}",
                blob.digest, self.reference
            ));
            match failure {
                DownloadFailure::Registry(source) => fail(source).into(),
                DownloadFailure::Stream(e) => fail(OciDistributionError::IoError(e)).into(),
                DownloadFailure::Store(source) => PullError::Blob {
                    reference: self.reference.to_owned(),
                    digest: blob.digest.clone(),
                    source: Box::new(source),
                },
            }
        })?;
        Ok(true)
    }

    /// One try at streaming `blob` into the store.
    async fn download_once(
        &self,
        blob: &Descriptor,
        store: &BlobStore,
        on_bytes: &dyn Fn(u64),
    ) -> Result<(), DownloadFailure> {
        let descriptor = OciDescriptor {
            media_type: blob.media_type.clone(),
            digest: blob.digest.to_string(),
            size: i64::try_from(blob.size).unwrap_or(i64::MAX),
            ..OciDescriptor::default()
        };
        let mut body = self
            .session
            .client
            .pull_blob_stream(self.image, &descriptor)
            .await
            .map_err(DownloadFailure::Registry)?;
        let origin = format!("docker://{}", self.reference);
        let mut incoming = IncomingBlob::new(store, blob.digest.clone(), blob.size, &origin)
            .map_err(DownloadFailure::Store)?;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(DownloadFailure::Stream)?;
            incoming.write(&chunk).map_err(DownloadFailure::Store)?;
            on_bytes(chunk.len() as u64);
        }
        incoming.finish().map_err(DownloadFailure::Store)
    }

    fn bad_manifest(&self, digest: &Digest, detail: &str) -> PullError {
        PullError::BadManifest {
            reference: self.reference.to_owned(),
            digest: digest.clone(),
            detail: detail.to_owned(),
        }
    }
}

/// Why one try at downloading a blob failed: the request (retried when
/// transient), the stream breaking off (retried), or the bytes or the store
/// (final).
enum DownloadFailure {
    Registry(OciDistributionError),
    Stream(std::io::Error),
    Store(ReadError),
}

/// The digest of the index entry for `linux/architecture`.
fn platform_entry(
    index: &FetchedManifest,
    architecture: &str,
    reference: &str,
) -> Result<Digest, PullError> {
    gpubox_oci::index::platform_entry(&index.bytes, "linux", architecture).map_err(|e| match e {
        PlatformEntryError::Invalid(detail) => PullError::BadManifest {
            reference: reference.to_owned(),
            digest: index.digest.clone(),
            detail,
        },
        PlatformEntryError::Missing { available, .. } => PullError::NoPlatform {
            reference: reference.to_owned(),
            architecture: architecture.to_owned(),
            available: available.join(", "),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_platform_is_picked_from_an_index() {
        let (amd, arm) = ("a".repeat(64), "b".repeat(64));
        let index = format!(
            r#"{{"manifests":[
              {{"digest":"sha256:{arm}","platform":{{"os":"linux","architecture":"arm64"}}}},
              {{"digest":"sha256:{amd}","platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        let fetched = FetchedManifest {
            digest: Digest::of(index.as_bytes()),
            bytes: index.into_bytes(),
            kind: ManifestKind::Index,
        };
        assert_eq!(platform_entry(&fetched, "amd64", "r/x").unwrap().hex(), amd);
        match platform_entry(&fetched, "s390x", "r/x") {
            Err(PullError::NoPlatform { available, .. }) => {
                assert_eq!(available, "linux/arm64, linux/amd64")
            }
            other => panic!("{other:?}"),
        }
    }
}
