//! Reading an image back from an OCI layout folder, an oci-archive, a
//! docker-archive (ours, or what `docker save`, `podman save` and skopeo write)
//! or a blob store that a registry pull filled ([`IncomingBlob`] writes those
//! blobs), for `fromImage`, `gpubox inspect` and for tests.
//!
//! Archives are indexed once (member name to offset and size) and members are
//! then read with seeks, so nothing is unpacked. Every blob is checked against its
//! digest as it is read; a mismatch is an error naming the blob and the file.
//!
//! [`ImageReader::layer_files`] reads a few small files out of a layer with the
//! layer's whiteouts applied, so a caller can see what a base image holds at
//! those paths without unpacking it.
//!
//! One file a job: `reader` opens images ([`ImageReader`]) over the `backing`
//! they are stored in (a folder or a tar's members), `layer_files` reads files
//! out of layers, `incoming` checks (and stores) blobs as they stream,
//! `summary` summarizes layers, and `error` says why reading failed.

mod backing;
mod error;
mod incoming;
mod layer_files;
mod reader;
mod summary;

pub use error::ReadError;
pub use incoming::IncomingBlob;
pub(crate) use incoming::VerifyingReader;
pub use layer_files::{
    follow_links, stack_layer_files, walk_links, was_read, Followed, LayerFile, LayerFiles,
    PathKind, Walked, MAX_LINKS,
};
pub use reader::{ImageReader, LayerRef, OpenedIndex};
pub use summary::{summarize_layer, LayerSummary};
