//! `gpubox-nix` owns everything gpubox knows about the Nix store: validated store
//! paths ([`StorePath`]), closures with their references and NAR sizes
//! ([`Closure`]), and building installables through the `nix`, `nix-build` and
//! `nix-store` programs ([`Nix`]), including closures a binary cache holds and
//! this store lacks, and looking inside store paths wherever they are
//! ([`StoreFs`]).
//!
//! It only runs those programs and reads their output and the store's file
//! system; it never writes to the store itself (its registration data can be
//! loaded into a new database under another root, for an image), never evaluates
//! Nix code on its own, and knows nothing about specs, layers or images.

mod cli;
mod closure;
mod error;
mod store_fs;
mod store_path;

pub use cli::{command_line, Installable, Nix};
pub use closure::{Closure, PathInfo};
pub use error::NixError;
pub use store_fs::{StoreFs, StoreNode, UnpackedPaths};
pub use store_path::{StorePath, STORE_DIR};
