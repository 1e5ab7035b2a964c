//! `gpubox-oci` owns the bytes of an image: the deterministic tar writer, layer
//! compression, sha256 digests, the image config and manifest, and the writers and
//! readers for the on-disk forms of an image (OCI layout, oci-archive,
//! docker-archive).
//!
//! It knows nothing about specs, Nix or where layer contents come from: callers hand
//! it [`entry::Entry`] values in [`entry::ImagePath`] order and get back blobs and
//! digests. It never prints; every failure is a typed error naming the path involved.
//!
//! The tar writer is our own rather than the `tar` crate's because determinism is the
//! product here: every header field is chosen by us (mtime, uid/gid, names, PAX
//! records), nothing is read from the build machine that the image must not depend on.

pub mod archive;
pub mod blob;
pub mod chunked;
pub mod compress;
pub mod diff;
pub mod digest;
pub mod entry;
pub mod image;
pub mod index;
pub mod layout;
pub mod source;
pub mod tar;

pub use compress::Compression;
pub use digest::Digest;
pub use entry::{Entry, EntryKind, FileSource, ImagePath};
