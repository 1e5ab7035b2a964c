//! `gpubox-build` is gpubox's engine: everything between a spec and an image
//! written somewhere, as named steps that run in the order data flows:
//!
//! 1. **spec -> base image** ([`base`]): `fromImage` opened from any
//!    transport and merged under the spec's settings;
//! 2. **spec -> closure** ([`store`]): packages realised with Nix, the
//!    closure asked of the store;
//! 3. **closure -> layers** ([`schedule`], [`top`], [`reuse`]): store paths
//!    planned into layers, gpubox's own files in layers of their own, each built
//!    on every core, taken from the layer cache, or, for a registry output,
//!    reused from the registry by its key;
//! 4. **layers -> image** ([`pipeline`]): config and manifest;
//! 5. **image -> output** ([`output`], [`push`]): an OCI folder or archive, a
//!    docker-archive, podman or Docker, or a registry; with an SBOM
//!    ([`sbom`]).
//!
//! It also opens images wherever they are, for `inspect` and `diff`
//! ([`open`]), names image locations the way skopeo does ([`location`]),
//! and holds the Nix front end's builders and image commands
//! ([`nix_builder`], [`image_commands`]).
//!
//! The engine never prints: progress goes to a [`Reporter`] the caller
//! supplies, and failures are a typed [`BuildError`] that describes itself as
//! a `miette` diagnostic for the front end to render.
//!
//! # Example
//!
//! An image with gpubox's init and one generated file, written to an OCI
//! layout folder:
//!
//! ```
//! use gpubox_build::{build, BuildRequest, Silent};
//!
//! let dir = tempfile::tempdir()?;
//! let spec_file = dir.path().join("gpubox.toml");
//! std::fs::write(&spec_file, "name = \"hello\"\ntag = \"v1\"\ncuda.enable = false\n")?;
//! let spec = gpubox_spec::load(&spec_file)?;
//! let request = BuildRequest {
//!     output: format!("oci:{}", dir.path().join("image").display()).parse()?,
//!     cache_root: dir.path().join("cache"),
//!     sbom: None,
//!     registry: Default::default(),
//!     source_date_epoch: None,
//!     cache_from: Vec::new(),
//!     substituter: None,
//!     platforms: Vec::new(),
//! };
//! let built = build(&spec, &request, &Silent)?;
//! assert!(built.manifest_digest.starts_with("sha256:"));
//! assert_eq!(built.store_paths, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod base;
mod error;
pub mod image_commands;
pub mod init_binary;
pub mod location;
pub mod nix_builder;
pub mod open;
pub mod output;
pub mod pipeline;
pub mod push;
mod reporter;
pub mod reuse;
pub mod runnable;
pub mod sbom;
pub mod schedule;
pub mod store;
pub mod top;

pub use error::{BaseError, BuildError, ImageCommandError, NixBuilderError};
pub use location::{BadLocation, ImageLocation};
pub use output::cache_dir;
pub use pipeline::{build, BuildRequest, Built};
pub use reporter::{Bytes, Count, Reporter, Silent};
