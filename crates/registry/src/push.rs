//! Pushing an image to a registry over the OCI distribution API: blobs the
//! registry lacks are mounted from another repository of the same registry
//! when an earlier push put them there, else go up a few at a time; then the
//! manifest, byte for byte as the caller gives it, so its digest is the one the
//! caller computed. Requests that fail transiently (5xx, dropped connections,
//! timeouts, stalled uploads) are tried again with a growing wait.
//!
//! The login, retries and error wording are the [`Session`]'s
//! (`session.rs`); the session methods here (sending blobs and manifests,
//! remembering where blobs went) serve referrers too.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::Either;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use gpubox_oci::Digest;
use oci_client::errors::OciDistributionError;
use oci_client::{Client, Reference, RegistryOperation};

use crate::blob_record::BlobRecord;
use crate::session::{
    block_on, is_transient, manifest_media_type, parse_reference, retry, PushError, PushOptions,
    Session, STALL_TIMEOUT,
};

/// How many blobs go up at once.
const PARALLEL_UPLOADS: usize = 3;

/// A blob the manifest names: the config or a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:HEX`.
    pub digest: String,
    pub size: u64,
    /// A repository of the same registry known to hold the blob (one a build
    /// reused the layer from), tried first when the destination lacks it.
    pub mount_from: Option<String>,
}

/// A blob the registry copied from another of its repositories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountedBlob {
    pub digest: String,
    /// The repository it came from, on the same registry.
    pub from: String,
}

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushSummary {
    /// The pushed manifest's digest, `sha256:HEX`.
    pub manifest_digest: String,
    pub uploaded_blobs: usize,
    pub uploaded_bytes: u64,
    /// Blobs the repository already had.
    pub skipped_blobs: usize,
    /// Blobs mounted from other repositories instead of uploaded.
    pub mounted: Vec<MountedBlob>,
}

/// Pushes the image whose manifest is `manifest` (exactly these bytes) to
/// `reference` (`HOST[:PORT]/REPO[:TAG]`). `blobs` are the config and layers
/// the manifest names; `read_blob` gives the bytes of one. Blobs the registry
/// already has are not read or sent; the manifest goes up after all blobs.
pub fn push<'r, E>(
    reference: &str,
    manifest: &[u8],
    blobs: &[Blob],
    read_blob: impl Fn(&Blob) -> Result<Box<dyn Read + 'r>, E>,
    options: &PushOptions,
) -> Result<PushSummary, PushError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let image = parse_reference(reference)?;
    block_on(async {
        let session = Session::open(&image, RegistryOperation::Push, options).await?;
        let sent = session.send_blobs(&image, blobs, &read_blob).await?;
        let manifest_digest = session.put_manifest(&image, manifest).await?;
        session.remember(&image, blobs);
        Ok(PushSummary {
            manifest_digest,
            uploaded_blobs: sent.uploaded.len(),
            uploaded_bytes: sent.uploaded.iter().sum(),
            skipped_blobs: sent.skipped,
            mounted: sent.mounted,
        })
    })
}

/// The registry and repository `reference` (`HOST[:PORT]/REPO[:TAG]`) names, as
/// the distribution API knows them (Docker Hub's official images under
/// `library/`, say).
pub fn registry_and_repository(reference: &str) -> Result<(String, String), PushError> {
    let image = parse_reference(reference)?;
    Ok((
        image.resolve_registry().to_owned(),
        image.repository().to_owned(),
    ))
}

/// Makes the repository `reference` names hold each of `blobs` without sending
/// any bytes: it has it already, or the registry mounts it from the repository
/// the blob's `mount_from` names (or the blob record's). Returns, in order,
/// which it holds now; a refused mount is a `false`, not an error.
pub fn mount_blobs(
    reference: &str,
    blobs: &[Blob],
    options: &PushOptions,
) -> Result<Vec<bool>, PushError> {
    let image = parse_reference(reference)?;
    block_on(async {
        let session = Session::open(&image, RegistryOperation::Push, options).await?;
        stream::iter(blobs)
            .map(|blob| {
                let (session, image) = (&session, &image);
                async move {
                    let exists = session.has_blob(image, &blob.digest).await?;
                    Ok(exists || session.mount(image, blob).await.is_some())
                }
            })
            .buffered(PARALLEL_UPLOADS)
            .try_collect()
            .await
    })
}

/// Which of `digests` the repository `reference` names holds, one HEAD request
/// each (a few at a time), in the order given. Nothing is downloaded.
pub fn blobs_present(
    reference: &str,
    digests: &[String],
    options: &PushOptions,
) -> Result<Vec<bool>, PushError> {
    let image = parse_reference(reference)?;
    block_on(async {
        let session = Session::open(&image, RegistryOperation::Pull, options).await?;
        stream::iter(digests)
            .map(|digest| {
                let session = &session;
                let image = &image;
                async move { session.has_blob(image, digest).await }
            })
            .buffered(PARALLEL_UPLOADS)
            .try_collect()
            .await
    })
}

/// What happened to each blob of a push.
pub(crate) struct SentBlobs {
    uploaded: Vec<u64>,
    skipped: usize,
    mounted: Vec<MountedBlob>,
}

impl SentBlobs {
    /// How many blobs went up (not found there, not mounted).
    pub(crate) fn uploaded_count(&self) -> usize {
        self.uploaded.len()
    }
}

enum BlobOutcome {
    Present,
    Mounted(MountedBlob),
    Uploaded(u64),
}

/// What a session does to push: send blobs, send a manifest, and remember
/// where the blobs went.
impl Session {
    /// Makes sure the repository of `image` has every blob: present, mounted
    /// from a repository the record names, or uploaded.
    pub async fn send_blobs<'r, E>(
        &self,
        image: &Reference,
        blobs: &[Blob],
        read_blob: &impl Fn(&Blob) -> Result<Box<dyn Read + 'r>, E>,
    ) -> Result<SentBlobs, PushError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let outcomes: Vec<BlobOutcome> = stream::iter(blobs)
            .map(|blob| self.send_blob(image, blob, read_blob))
            .buffer_unordered(PARALLEL_UPLOADS)
            .try_collect()
            .await?;
        let mut sent = SentBlobs {
            uploaded: Vec::new(),
            skipped: 0,
            mounted: Vec::new(),
        };
        for outcome in outcomes {
            match outcome {
                BlobOutcome::Present => sent.skipped += 1,
                BlobOutcome::Mounted(mounted) => sent.mounted.push(mounted),
                BlobOutcome::Uploaded(size) => sent.uploaded.push(size),
            }
        }
        Ok(sent)
    }

    async fn send_blob<'r, E>(
        &self,
        image: &Reference,
        blob: &Blob,
        read_blob: &impl Fn(&Blob) -> Result<Box<dyn Read + 'r>, E>,
    ) -> Result<BlobOutcome, PushError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        if self.has_blob(image, &blob.digest).await? {
            return Ok(BlobOutcome::Present);
        }
        if let Some(from) = self.mount(image, blob).await {
            return Ok(BlobOutcome::Mounted(MountedBlob {
                digest: blob.digest.clone(),
                from,
            }));
        }
        retry(
            || upload_once(&self.client, image, blob, read_blob),
            |failure| match failure {
                UploadFailure::Registry(e) => is_transient(e),
                UploadFailure::Stalled => true,
                UploadFailure::Read(_) => false,
            },
        )
        .await
        .map_err(|failure| match failure {
            UploadFailure::Read(e) => e,
            UploadFailure::Stalled => PushError::Stalled {
                registry: self.registry.clone(),
                digest: blob.digest.clone(),
            },
            UploadFailure::Registry(e) => self.fail(format!("uploading blob {}", blob.digest))(e),
        })?;
        Ok(BlobOutcome::Uploaded(blob.size))
    }

    /// Whether the repository of `image` holds the blob `digest` (one HEAD
    /// request, retried when it fails transiently).
    async fn has_blob(&self, image: &Reference, digest: &str) -> Result<bool, PushError> {
        retry(|| self.client.blob_exists(image, digest), is_transient)
            .await
            .map_err(self.fail(format!("checking for blob {digest}")))
    }

    /// Asks the registry to mount `blob` from the repository it names or one
    /// that received it in an earlier push; the first that works names where it
    /// came from.
    /// A refused mount is no error: the blob is uploaded instead.
    async fn mount(&self, image: &Reference, blob: &Blob) -> Option<String> {
        let digest = blob.digest.as_str();
        let recorded = self.record.as_ref().map_or_else(Vec::new, |(_, record)| {
            record.holders(&self.registry, digest, image.repository())
        });
        let named = blob
            .mount_from
            .iter()
            .filter(|from| from.as_str() != image.repository())
            .cloned();
        for from in named.chain(recorded) {
            let source = Reference::with_tag(self.registry.clone(), from.clone(), "latest".into());
            if retry(
                || self.client.mount_blob(image, &source, digest),
                is_transient,
            )
            .await
            .is_ok()
            {
                return Some(from);
            }
        }
        None
    }

    /// Sends `manifest` (its exact bytes, with its own mediaType) to `image`;
    /// returns its digest.
    pub async fn put_manifest(
        &self,
        image: &Reference,
        manifest: &[u8],
    ) -> Result<String, PushError> {
        let media_type = manifest_media_type(manifest)?;
        let content_type = http::HeaderValue::from_str(&media_type)
            .map_err(|_| PushError::ManifestMediaType(media_type.clone()))?;
        retry(
            || {
                self.client
                    .push_manifest_raw(image, manifest.to_vec(), content_type.clone())
            },
            is_transient,
        )
        .await
        .map_err(self.fail(format!("uploading the manifest for {image}")))?;
        Ok(Digest::of(manifest).to_string())
    }

    /// Notes in the blob record that `image`'s repository holds `blobs`.
    pub fn remember(&self, image: &Reference, blobs: &[Blob]) {
        if let Some((path, _)) = &self.record {
            // Re-read, so pushes running beside this one keep most of theirs.
            let mut record = BlobRecord::load(path);
            record.add(
                &self.registry,
                image.repository(),
                blobs.iter().map(|b| b.digest.as_str()),
            );
            record.save(path);
        }
    }
}

/// Bytes of a blob read and sent at a time; with [`CHUNKS_IN_FLIGHT`] this
/// bounds what an upload holds in memory, whatever the layer's size.
const CHUNK: usize = 1 << 20;
const CHUNKS_IN_FLIGHT: usize = 4;
/// What the count of taken chunks becomes once the upload has taken them all.
const ALL_TAKEN: u64 = u64::MAX;

/// Streams `reader` into a blob upload: returns how many bytes were read (or
/// the read error) and the registry's answer, or `None` when the registry
/// stopped taking data for [`STALL_TIMEOUT`].
async fn stream_blob(
    client: &Client,
    image: &Reference,
    blob: &Blob,
    mut reader: Box<dyn Read + '_>,
) -> Option<(std::io::Result<u64>, Result<String, OciDistributionError>)> {
    let (chunks, received) =
        tokio::sync::mpsc::channel::<Result<bytes::Bytes, OciDistributionError>>(CHUNKS_IN_FLIGHT);
    // Chunks the upload has taken so far, or ALL_TAKEN.
    let taken = std::sync::Arc::new(AtomicU64::new(0));
    let producer = async move {
        let mut sent = 0u64;
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                match reader.read(&mut chunk[filled..])? {
                    0 => break,
                    n => filled += n,
                }
            }
            if filled == 0 {
                return Ok(sent);
            }
            chunk.truncate(filled);
            sent += filled as u64;
            // The upload stopped early; its error is the one to report.
            if chunks.send(Ok(bytes::Bytes::from(chunk))).await.is_err() {
                return Ok(sent);
            }
        }
    };
    let counter = taken.clone();
    let stream = stream::unfold(received, move |mut received| {
        let counter = counter.clone();
        async move {
            let Some(item) = received.recv().await else {
                counter.store(ALL_TAKEN, Ordering::Relaxed);
                return None;
            };
            counter.fetch_add(1, Ordering::Relaxed);
            Some((item, received))
        }
    });
    let upload = client.push_blob_stream(image, stream, &blob.digest, Some(blob.size));
    let transfer = std::pin::pin!(async { futures_util::join!(producer, upload) });
    // Once every chunk is taken, only the answer is awaited: READ_TIMEOUT bounds that.
    let watchdog = std::pin::pin!(async {
        let mut seen = None;
        loop {
            let now = taken.load(Ordering::Relaxed);
            if now == ALL_TAKEN {
                std::future::pending::<()>().await;
            }
            if seen == Some(now) {
                return;
            }
            seen = Some(now);
            tokio::time::sleep(STALL_TIMEOUT).await;
        }
    });
    match futures_util::future::select(transfer, watchdog).await {
        Either::Left((done, _)) => Some(done),
        Either::Right(((), _)) => None,
    }
}

/// Why one try at uploading a blob failed: reading it (final), the registry
/// (retried when transient) or a stall (retried).
enum UploadFailure {
    Read(PushError),
    Registry(OciDistributionError),
    Stalled,
}

/// Reads `blob` afresh and streams it to the registry once.
async fn upload_once<'r, E>(
    client: &Client,
    image: &Reference,
    blob: &Blob,
    read_blob: &impl Fn(&Blob) -> Result<Box<dyn Read + 'r>, E>,
) -> Result<(), UploadFailure>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let read_error = |source: Box<dyn std::error::Error + Send + Sync>| {
        UploadFailure::Read(PushError::ReadBlob {
            digest: blob.digest.clone(),
            source,
        })
    };
    let reader = read_blob(blob).map_err(|e| read_error(Box::new(e)))?;
    let (sent, pushed) = stream_blob(client, image, blob, reader)
        .await
        .ok_or(UploadFailure::Stalled)?;
    let sent = sent.map_err(|e| read_error(Box::new(e)))?;
    if sent != blob.size {
        return Err(UploadFailure::Read(PushError::BlobSize {
            digest: blob.digest.clone(),
            expected: blob.size,
            actual: sent,
        }));
    }
    pushed.map(drop).map_err(UploadFailure::Registry)
}
