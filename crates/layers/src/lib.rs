//! `gpubox-layers` decides which store paths share a layer ([`plan`]) and keeps
//! built layer blobs so a rebuild re-tars nothing that has not changed ([`cache`]).
//!
//! It reads the closure it is given and the blob store; it does not talk to Nix,
//! parse specs or write image outputs.

pub mod cache;
pub mod plan;
