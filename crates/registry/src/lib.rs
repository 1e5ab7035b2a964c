//! `gpubox-registry` moves images between gpubox and registries, both ways,
//! over the OCI distribution API.
//!
//! Its parts:
//! - [`push()`] (`push.rs`): sends an image's blobs (mounting those another
//!   repository of the registry has) and then its manifest, byte for byte.
//! - [`pull()`] (`pull.rs`): fetches an image (the `linux/ARCH` entry of an
//!   index) into a blob store the caller holds open, for `fromImage`,
//!   `gpubox inspect` and `gpubox diff`, checking every digest, and returns
//!   the manifest and the blobs it names; the caller records the image
//!   wherever it keeps images (the layer cache).
//! - [`push_sbom()`] (`referrer.rs`): attaches an SBOM to a pushed image as an
//!   OCI referrer.
//! - [`BlobUploader`] (`upload.rs`): sends a build's layers while it is still
//!   making the others, so the push after it sends only the config and manifest;
//!   [`blobs_present`] checks blobs with HEAD requests (the registry as a build
//!   cache).
//! - `session.rs`: what all three share: the logged-in session, retries of
//!   transient failures, reading references and manifests, and the wording
//!   of failures ([`PushError`]); how to reach a registry ([`PushOptions`]).
//! - `auth.rs`: credentials from `--creds`, auth files and Docker credential
//!   helpers.
//! - `tls.rs`: extra CA certificates for a registry (`--cert-dir`,
//!   `certs.d`).
//! - `blob_record.rs`: which repositories received which blobs, so later
//!   pushes can mount them.
//!
//! It writes only blobs into the store a pull is given and the blob record a
//! push is given. It does not build images, choose layers, keep the layer
//! cache's records, run container engines (`gpubox-engines` loads into,
//! saves from and probes podman and Docker) or print.

mod auth;
mod blob_record;
mod pull;
mod push;
mod referrer;
mod session;
mod tls;
mod upload;

pub use auth::{default_auth_files, Credentials};
pub use pull::{pull, PullError, PullScope, PulledImage};
pub use push::{
    blobs_present, mount_blobs, push, registry_and_repository, Blob, MountedBlob, PushSummary,
};
pub use referrer::{push_sbom, ReferrerSummary, SPDX_MEDIA_TYPE};
pub use session::{names_a_registry_host, PushError, PushOptions};
pub use upload::{BlobUploader, EarlyUploads};
