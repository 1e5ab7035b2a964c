//! gpubox's image spec: reads `gpubox.toml` (or the same document as JSON),
//! applies defaults and merges (`env` + `extraEnv`, `labels` + `extraLabels`),
//! and validates every key, reporting the file, line and column of a bad value.
//!
//! This crate owns the spec's keys, their defaults and their checks. It does no
//! I/O beyond reading the spec file: relative paths are made absolute against
//! the spec's folder without touching the file system, and Nix, PATH lookups
//! and file contents are left to the crates and the CLI that use the `Spec`.
//!
//! In JSON, a key set to `null` counts as not set.

mod check;
mod error;
mod machine;
mod platform;
mod starter;
mod tree;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{NamedSource, SourceSpan};

pub use error::{Location, SpecError};
pub use machine::{
    AgeSpec, MachineSpec, SecretSpec, ServiceSpec, SshSpec, TailscaleSpec, UserSpec,
    DEFAULT_HOST_KEY_DIR, DEFAULT_READINESS_TIMEOUT_MS, DEFAULT_RESTART_DELAY_MS,
    DEFAULT_SECRETS_DIR, DEFAULT_STOP_TIMEOUT_MS, DEFAULT_TAILSCALE_STATE_DIR,
};
pub use platform::{installable_system, Platform, NIX_SYSTEMS, PLATFORMS};
pub use starter::{image_name_for, starter_flake, starter_toml};

use check::Checker;
use tree::Format;

/// `PATH` in the image when the spec has no `env` table.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `created` when neither SOURCE_DATE_EPOCH nor the spec sets it:
/// 1970-01-01T00:00:01Z (one second, as some tools treat 0 as "unset").
pub const DEFAULT_CREATED: i64 = 1;

/// The image's user when neither the spec nor a base image sets one.
pub const DEFAULT_USER: &str = "root";

/// The image's working folder when neither the spec nor a base image sets one.
pub const DEFAULT_WORKING_DIR: &str = "/root";

/// How `fromImage` may name a base image, as skopeo names these transports.
pub const FROM_IMAGE_TRANSPORTS: &[&str] =
    &["oci:", "oci-archive:", "docker-archive:", "docker://"];

/// A checked image spec with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The spec file, absolute.
    pub file: PathBuf,
    /// The spec's folder, absolute; relative paths in the spec were resolved against it.
    pub dir: PathBuf,
    pub name: String,
    /// Defaults to "latest".
    pub tag: String,
    /// `platforms`, as written and without repeats; empty means the build
    /// machine's platform only.
    pub platforms: Vec<Item<Platform>>,
    /// `platform."linux/arm64"`: the spec as that platform sees it, the
    /// table's keys replacing the top-level ones ([`Spec::for_platform`]).
    overrides: BTreeMap<Platform, Spec>,
    /// `fromImage`: the base image, as written (`oci:DIR[:TAG]`,
    /// `oci-archive:FILE[:TAG]`, `docker-archive:FILE` or `docker://REF`); a
    /// relative path in it is relative to [`Spec::dir`].
    pub from_image: Option<Item<String>>,
    pub system_packages: Vec<Item<PackageRef>>,
    /// `storePaths`: store paths whose closures join the image without links in
    /// `/usr/local/bin` (the Nix front end lists every store path its spec names
    /// here), each `/nix/store/HASH-NAME`.
    pub store_paths: Vec<Item<String>>,
    pub copy_to_root: Vec<Item<CopyToRoot>>,
    pub host_binaries: Vec<Item<HostBinary>>,
    /// `env` (or `PATH` = [`DEFAULT_PATH`] when absent) overlaid with `extraEnv`.
    pub env: BTreeMap<String, String>,
    /// Whether `env` or `extraEnv` wrote `PATH` (false when `PATH` in
    /// [`Spec::env`] is the [`DEFAULT_PATH`] filled in), so a base image's
    /// `PATH` can be kept unless the spec chose its own.
    pub env_sets_path: bool,
    /// `labels` overlaid with `extraLabels`.
    pub labels: BTreeMap<String, String>,
    /// Normalised to "PORT/PROTOCOL", in spec order, without repeats.
    pub exposed_ports: Vec<String>,
    /// `volumes`: the folders in the container that are persistent volumes
    /// (`/workspace`, where RunPod and vast.ai mount the user's data), for the
    /// image config's `Volumes`. Absolute, written without `.`, `..`, doubled
    /// or trailing `/`, in spec order, without repeats.
    pub volumes: Vec<Item<String>>,
    /// `user` as written; `None` means the base image's, else [`DEFAULT_USER`].
    pub user: Option<String>,
    /// `workingDir` as written; `None` means the base image's, else
    /// [`DEFAULT_WORKING_DIR`].
    pub working_dir: Option<String>,
    pub cmd: Vec<String>,
    /// Where `cmd` was written, when it was.
    pub cmd_span: Option<SourceSpan>,
    /// `None` means the build's default, `/bin/gpubox-init`.
    pub entrypoint: Option<Vec<String>>,
    /// Where `entrypoint` was written, when it was.
    pub entrypoint_span: Option<SourceSpan>,
    /// `checkPrograms` (default true): whether the build checks that `cmd`,
    /// `entrypoint` and each service's program exist in the image and can
    /// start; false for images that get them from a volume at run time.
    pub check_programs: bool,
    /// Defaults to 50; 2..=125.
    pub max_layers: usize,
    /// Unix seconds from the spec; see [`created_epoch`] for the value to use.
    pub created: Option<i64>,
    pub compression: Compression,
    /// The `cuda` table.
    pub cuda: CudaSpec,
    /// `registries`: where `gpubox push` without a destination pushes,
    /// each `docker://HOST[:PORT]/REPO[:TAG]`.
    pub registries: Vec<Item<String>>,
    /// The keys that run the container as a machine under `gpubox-init` (`users`,
    /// `ssh`, `age`, `tailscale`, `services`, `nix`, `home`, ...).
    pub machine: MachineSpec,
    /// The file name as given to [`parse`], for diagnostics.
    source_name: String,
    /// The spec text, so later stages can point into it.
    text: String,
}

impl Spec {
    /// The spec as `platform` sees it: with the keys of its `platform."…"`
    /// table in place of the top-level ones, or the spec itself.
    pub fn for_platform(&self, platform: Platform) -> &Spec {
        self.overrides.get(&platform).unwrap_or(self)
    }

    /// The platforms to build: `platforms`, or the build machine's; `None`
    /// when the spec names none and gpubox does not build for this machine.
    pub fn platforms_to_build(&self) -> Option<Vec<Platform>> {
        if self.platforms.is_empty() {
            Platform::build_machine().map(|p| vec![p])
        } else {
            Some(self.platforms.iter().map(|p| p.value).collect())
        }
    }

    /// The spec text under its file name, for a `miette` diagnostic that
    /// points at an [`Item`]'s span when a later stage fails on that item.
    pub fn source(&self) -> NamedSource<String> {
        NamedSource::new(&self.source_name, self.text.clone())
    }

    /// The 1-based line and column of a span's start, for messages that are
    /// not rendered by `miette`.
    pub fn location(&self, span: SourceSpan) -> Location {
        Location::of(&self.text, span.offset())
    }
}

/// A spec value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<T> {
    pub value: T,
    /// Byte span of the value in the spec text (both TOML and JSON have one).
    pub span: Option<SourceSpan>,
}

/// One entry of `systemPackages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageRef {
    /// A string starting with `/nix/store/`: `/nix/store/HASH-NAME`.
    StorePath(String),
    /// Any other string, for `nix build` (`nixpkgs#hello`, `.#foo`).
    Installable(String),
    /// `{ file, attr?, system? }`, for `nix-build FILE [-A ATTR] [--argstr
    /// system SYSTEM]`; `file` is absolute.
    NixFile {
        file: PathBuf,
        attr: Option<String>,
        /// A Nix system of [`NIX_SYSTEMS`]: the package is for that platform only.
        system: Option<String>,
    },
}

impl PackageRef {
    /// The Nix system the entry says it is built for: a file's `system`, or a
    /// system in an installable's attribute path (`#legacyPackages.aarch64-linux.hello`).
    /// Store paths say it by their ELF files, which the build reads.
    pub fn system(&self) -> Option<&str> {
        match self {
            PackageRef::NixFile { system, .. } => system.as_deref(),
            PackageRef::Installable(installable) => installable_system(installable),
            PackageRef::StorePath(_) => None,
        }
    }
}

/// The `cuda` table: whether gpubox makes the image GPU-ready, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CudaSpec {
    /// `enable` (default true): set the NVIDIA variables, labels and library path.
    pub enable: bool,
    /// `version`: MAJOR.MINOR overriding what the closure says.
    pub version: Option<String>,
    /// `capabilities` (default "compute,utility"): NVIDIA_DRIVER_CAPABILITIES.
    pub capabilities: String,
    /// `allowMixedVersions` (default false): accept two CUDA releases in one closure.
    pub allow_mixed_versions: bool,
}

impl Default for CudaSpec {
    fn default() -> CudaSpec {
        CudaSpec {
            enable: true,
            version: None,
            capabilities: "compute,utility".to_owned(),
            allow_mixed_versions: false,
        }
    }
}

/// One entry of `copyToRoot`: a local file or folder placed at `dst` in the image.
///
/// `mode`, `uid` and `gid` apply to every entry copied (the file, or the
/// folder and everything under it), like Docker's `COPY --chmod`/`--chown`.
/// When absent, the source's permission bits and uid/gid 0 are used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyToRoot {
    /// Absolute, resolved against the spec's folder (not checked to exist).
    pub src: PathBuf,
    /// Absolute path in the image, not under `/nix/store`, without `..`; as written.
    pub dst: String,
    /// Permission bits, at most 0o7777.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// One entry of `hostBinaries`: a binary from the host copied into the image
/// with the libraries it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBinary {
    pub src: HostBinarySrc,
    /// Path in the image (checked like `copyToRoot`'s `dst`); `None` lets the
    /// CLI choose.
    pub dst: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostBinarySrc {
    /// Written with a `/`: absolute, resolved against the spec's folder.
    Path(PathBuf),
    /// A bare name, for the build to look up on PATH.
    Command(String),
}

/// How layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    /// zstd with each file in frames of its own and a table of contents, for
    /// partial (lazy) pulls: `zstd:chunked`.
    ZstdChunked,
    None,
}

impl Compression {
    /// The spelling used in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::ZstdChunked => "zstd:chunked",
            Compression::None => "none",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    /// Parses the spec's spelling, so a CLI flag can take the same words.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [
            Compression::Gzip,
            Compression::Zstd,
            Compression::ZstdChunked,
            Compression::None,
        ]
        .into_iter()
        .find(|compression| compression.as_str() == text)
        .ok_or_else(|| {
            format!("unknown compression {text:?}; use gzip, zstd, zstd:chunked or none")
        })
    }
}

/// Reads and checks the spec at `path`.
pub fn load(path: &Path) -> Result<Spec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Checks spec `text`. `file` names it in diagnostics and locates the spec's
/// folder; the text is JSON when `file` ends in `.json` or the text starts
/// with `{`, TOML otherwise.
pub fn parse(text: &str, file: &Path) -> Result<Spec, SpecError> {
    let absolute = std::path::absolute(file).map_err(|source| SpecError::Locate {
        path: file.to_owned(),
        source,
    })?;
    let dir = absolute
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let is_json = file
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("json"))
        || text.trim_start().starts_with('{');
    let format = if is_json { Format::Json } else { Format::Toml };
    let checker = Checker {
        source: Arc::new(NamedSource::new(
            file.display().to_string(),
            text.to_owned(),
        )),
        format,
        dir: &dir,
    };
    let root = match format {
        Format::Toml => tree::parse_toml(text),
        Format::Json => tree::parse_json(text),
    }
    .map_err(|error| checker.syntax(error.message, error.span))?;
    checker.spec(&root, absolute)
}

/// The image's creation time in Unix seconds: SOURCE_DATE_EPOCH when set
/// (and not empty), else the spec's `created`, else [`DEFAULT_CREATED`].
/// The CLI passes the variable's value; this crate reads no environment.
pub fn created_epoch(
    spec_created: Option<i64>,
    source_date_epoch: Option<&str>,
) -> Result<i64, SpecError> {
    match source_date_epoch.filter(|value| !value.is_empty()) {
        Some(value) => value
            .parse::<i64>()
            .ok()
            .filter(|seconds| *seconds >= 0 && value.bytes().all(|byte| byte.is_ascii_digit()))
            .ok_or_else(|| SpecError::SourceDateEpoch {
                value: value.to_owned(),
            }),
        None => Ok(spec_created.unwrap_or(DEFAULT_CREATED)),
    }
}
