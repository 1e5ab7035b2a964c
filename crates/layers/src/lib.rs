//! `gpubox-layers` decides which store paths share a layer ([`plan`]) and keeps
//! the layer cache ([`cache`]): built layer blobs, so a rebuild re-tars nothing
//! that has not changed, the images pulled from registries, the images built
//! into container engines (so a push sends them as built), and what base
//! layers hold at the account files, with their collection.
//!
//! It reads the closure it is given and the blob store; it does not talk to Nix
//! or registries, parse specs or write image outputs.

pub mod cache;
pub mod plan;
