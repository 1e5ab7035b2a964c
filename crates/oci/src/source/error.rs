//! Why an image could not be read: [`ReadError`], shared by everything in
//! [`source`](super).

use std::io;
use std::path::{Path, PathBuf};

use crate::blob::BlobError;
use crate::digest::Digest;
use crate::tar::TarReadError;

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("not an OCI layout: {} has no oci-layout file", .0.display())]
    NotALayout(PathBuf),
    #[error("{what} in {} is not valid: {source}", path.display())]
    Json {
        what: String,
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{} holds no images", .0.display())]
    NoImages(PathBuf),
    #[error(
        "{} holds several images; name one with `:TAG` after the path; tags present: {tags}",
        path.display()
    )]
    TagNeeded { path: PathBuf, tags: String },
    #[error("tag `{tag}` not found in {}; tags present: {tags}", path.display())]
    TagNotFound {
        tag: String,
        path: PathBuf,
        tags: String,
    },
    #[error("{}: {detail}", path.display())]
    Unsupported { path: PathBuf, detail: String },
    #[error(
        "{} is a multi-platform index without a {wanted} image (it has {available}); \
         name one of those with --platform",
        path.display()
    )]
    PlatformNotFound {
        path: PathBuf,
        wanted: String,
        available: String,
    },
    #[error("{} has no `{member}` ({referrer}); the image is incomplete", path.display())]
    Missing {
        path: PathBuf,
        member: String,
        referrer: &'static str,
    },
    #[error("{what} in {} does not match its digest or size: {detail}; the image is corrupt", path.display())]
    Corrupt {
        what: String,
        path: PathBuf,
        detail: String,
    },
    #[error("{} is not a tar archive that gpubox can read: {detail}", path.display())]
    BadTar { path: PathBuf, detail: String },
    #[error("layer {index} does not exist: the image has {count} layers")]
    NoSuchLayer { index: usize, count: usize },
    #[error("cannot read the layer: {0}")]
    Layer(#[from] TarReadError),
    #[error("cannot read the layer stream: {0}")]
    LayerStream(io::Error),
    #[error("cannot copy a layer into the blob store: {0}")]
    Store(#[from] BlobError),
    #[error("blob {digest} from {origin} is not the blob its manifest names: {detail}; try again, and if it persists the image there is damaged")]
    BlobMismatch {
        digest: Digest,
        origin: String,
        detail: String,
    },
    #[error("cannot write blob {digest} to {}: {source}; check the free space and permissions there", path.display())]
    BlobWrite {
        digest: Digest,
        path: PathBuf,
        source: io::Error,
    },
}

pub(super) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ReadError {
    let path = path.to_owned();
    move |source| ReadError::Io {
        action,
        path,
        source,
    }
}
