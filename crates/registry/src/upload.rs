//! Sending blobs while a build is still making the others: a [`BlobUploader`]
//! holds one logged-in session on a thread of its own and sends each blob it is
//! given as soon as it is given, a few at a time, as [`crate::push`] would (a
//! blob the repository has is skipped, one another repository has is mounted).
//! The image's push then finds its layers there and sends only the config and
//! the manifest, so a cold `build -o docker://` costs little more than its
//! compression.
//!
//! Sending early is only a head start: a blob that fails to go up early is
//! reported and left to the push, which tries again and gives the real error.

use std::path::PathBuf;
use std::thread::JoinHandle;

use futures_util::stream::StreamExt;
use oci_client::RegistryOperation;

use crate::push::{Blob, PushSummary};
use crate::session::{block_on, parse_reference, PushError, PushOptions, Session};

/// How many blobs go up at once.
const PARALLEL_UPLOADS: usize = 3;

/// Sends blobs to one repository from a thread of its own; see the module doc.
pub struct BlobUploader {
    sender: Option<tokio::sync::mpsc::UnboundedSender<(Blob, PathBuf)>>,
    thread: Option<JoinHandle<Result<EarlyUploads, PushError>>>,
}

/// What a [`BlobUploader`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EarlyUploads {
    pub uploaded_blobs: usize,
    pub uploaded_bytes: u64,
    /// Blobs that could not be sent early, with why; the push sends them.
    pub failed: Vec<(String, String)>,
}

impl EarlyUploads {
    /// `summary` of the push that followed, counting what was sent early as
    /// uploaded by it rather than found there.
    pub fn merged_into(&self, mut summary: PushSummary) -> PushSummary {
        let early = self.uploaded_blobs.min(summary.skipped_blobs);
        summary.uploaded_blobs += early;
        summary.skipped_blobs -= early;
        summary.uploaded_bytes += self.uploaded_bytes;
        summary
    }
}

impl BlobUploader {
    /// Starts a session for pushing to `reference` (`HOST[:PORT]/REPO[:TAG]`).
    pub fn start(reference: &str, options: &PushOptions) -> Result<BlobUploader, PushError> {
        let image = parse_reference(reference)?;
        let options = options.clone();
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<(Blob, PathBuf)>();
        let thread = std::thread::spawn(move || {
            block_on(async move {
                let session = Session::open(&image, RegistryOperation::Push, &options).await?;
                let stream = tokio_stream_of(receiver);
                let outcomes: Vec<(Blob, Result<bool, PushError>)> = stream
                    .map(|(blob, path)| {
                        let (session, image) = (&session, &image);
                        async move {
                            let read = |_: &Blob| {
                                std::fs::File::open(&path).map(|file| {
                                    Box::new(std::io::BufReader::new(file))
                                        as Box<dyn std::io::Read>
                                })
                            };
                            let sent = session
                                .send_blobs(image, std::slice::from_ref(&blob), &read)
                                .await;
                            let uploaded = sent.map(|sent| sent.uploaded_count() == 1);
                            (blob, uploaded)
                        }
                    })
                    .buffer_unordered(PARALLEL_UPLOADS)
                    .collect()
                    .await;
                let mut early = EarlyUploads::default();
                let mut sent = Vec::new();
                for (blob, outcome) in outcomes {
                    match outcome {
                        Ok(true) => {
                            early.uploaded_blobs += 1;
                            early.uploaded_bytes += blob.size;
                            sent.push(blob);
                        }
                        Ok(false) => sent.push(blob),
                        Err(error) => early.failed.push((blob.digest, error.to_string())),
                    }
                }
                session.remember(&image, &sent);
                Ok(early)
            })
        });
        Ok(BlobUploader {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Sends `blob`, whose bytes are the file `path`, as soon as it can.
    pub fn send(&self, blob: Blob, path: PathBuf) {
        if let Some(sender) = &self.sender {
            // A closed channel means the session ended early: the push sends it.
            let _ = sender.send((blob, path));
        }
    }

    /// Waits for every blob given to go up, and says what went.
    pub fn finish(mut self) -> Result<EarlyUploads, PushError> {
        self.sender.take();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(PushError::Runtime(std::io::Error::other(
                "the thread sending layers stopped unexpectedly",
            ))),
            None => Ok(EarlyUploads::default()),
        }
    }
}

impl Drop for BlobUploader {
    fn drop(&mut self) {
        // Dropped without `finish` (the build failed): stop taking blobs and let
        // the thread end with what is in flight.
        self.sender.take();
    }
}

/// `receiver` as a stream that ends when every sender is gone.
fn tokio_stream_of<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |context| receiver.poll_recv(context))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_sent_early_count_as_uploaded_by_the_push() {
        let early = EarlyUploads {
            uploaded_blobs: 2,
            uploaded_bytes: 300,
            failed: Vec::new(),
        };
        let push = PushSummary {
            manifest_digest: "sha256:m".to_owned(),
            uploaded_blobs: 1,
            uploaded_bytes: 10,
            skipped_blobs: 3,
            mounted: Vec::new(),
        };
        let merged = early.merged_into(push);
        assert_eq!(
            (
                merged.uploaded_blobs,
                merged.uploaded_bytes,
                merged.skipped_blobs
            ),
            (3, 310, 1)
        );
    }
}
