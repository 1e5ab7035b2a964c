//! Every way the engine can fail, as one typed error: the libraries' errors
//! pass through unchanged, and errors caused by one item of the spec point at
//! that item in the file. It describes itself as a `miette` diagnostic (spans,
//! help), which front ends render; the engine never prints it.

use std::path::PathBuf;

use gpubox_spec::{Spec, SpecError};
use miette::{Diagnostic, NamedSource, SourceSpan};

#[derive(Debug, thiserror::Error, Diagnostic)]
#[non_exhaustive]
pub enum BuildError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Spec(Box<SpecError>),
    #[error("{what}")]
    InSpec {
        what: String,
        #[source_code]
        source_code: NamedSource<String>,
        #[label("here")]
        span: SourceSpan,
        #[source]
        cause: Box<BuildError>,
    },
    #[error(transparent)]
    Nix(#[from] gpubox_nix::NixError),
    #[error(transparent)]
    HostBin(#[from] gpubox_hostbin::HostBinError),
    #[error(transparent)]
    Rootfs(#[from] gpubox_rootfs::RootfsError),
    #[error(transparent)]
    Cache(#[from] gpubox_layers::cache::CacheError),
    #[error(transparent)]
    Blob(#[from] gpubox_oci::blob::BlobError),
    #[error(transparent)]
    Image(#[from] gpubox_oci::image::ImageError),
    #[error(transparent)]
    Output(#[from] gpubox_oci::layout::OutputError),
    #[error(transparent)]
    Atomic(#[from] gpubox_atomic::Error),
    #[error(transparent)]
    Read(#[from] gpubox_oci::source::ReadError),
    #[error(transparent)]
    Engine(#[from] gpubox_engines::EngineError),
    #[error(transparent)]
    Location(#[from] crate::location::BadLocation),
    #[error(transparent)]
    Push(#[from] gpubox_registry::PushError),
    #[error(transparent)]
    Pull(#[from] gpubox_registry::PullError),
    #[error(
        "docker://{reference}: its start-up plan (/etc/gpubox/init.json) cannot be read: {reason}"
    )]
    #[diagnostic(help("check the manifest against the spec instead: --spec FILE"))]
    BadPlan { reference: String, reason: String },
    #[error("docker://{reference}: the registry served the image without a digest to pin it by")]
    #[diagnostic(help("push the image again, or name its digest: NAME@sha256:..."))]
    Undigested { reference: String },
    #[error("cannot read {path}: {source}")]
    #[diagnostic(help("check that the file exists and that you may read it"))]
    InputNotReadable {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the manifest {path} does not have its digest {digest}")]
    #[diagnostic(help("the image layout is corrupt; write the image again"))]
    ManifestCorrupt {
        path: std::path::PathBuf,
        digest: gpubox_oci::Digest,
    },
    #[error(transparent)]
    Base(#[from] BaseError),
    #[error(transparent)]
    NotRunnable(Box<crate::runnable::NotRunnable>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    NixBuilder(#[from] NixBuilderError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    ImageCommand(#[from] ImageCommandError),
    #[error(transparent)]
    Cuda(#[from] gpubox_cuda::CudaError),
    // The reason is in the message and not a `source`, so it is shown once.
    #[error("cannot write the output {path}: {reason}")]
    #[diagnostic(help("check that you may write to its folder"))]
    OutputNotWritable {
        path: std::path::PathBuf,
        reason: std::io::Error,
    },
    #[error("hostBinaries: `{0}` was not found on PATH")]
    #[diagnostic(help("give the program's full path, e.g. `/usr/bin/{0}`"))]
    CommandNotFound(String),
    #[error("cannot use the cache folder: set GPUBOX_CACHE_DIR or HOME")]
    NoCacheDir,
    #[error("`{key}` is not a store path, and a spec that Nix writes names store paths only")]
    #[diagnostic(help(
        "give the package itself in the Nix module (e.g. pkgs.hello), not an installable"
    ))]
    NotAStorePath { key: String },
    #[error("cannot create a temporary file: {0}")]
    Temp(std::io::Error),
    #[error(
        "{output} holds one platform's image, and this build makes {}",
        platform_list(platforms)
    )]
    #[diagnostic(help(
        "pick one with --platform (e.g. --platform {}), or write the index to oci:DIR, \
         oci-archive:FILE or docker://HOST/REPO:TAG",
        platforms.first().map(|p| p.as_str()).unwrap_or("linux/amd64")
    ))]
    OnePlatformOutput {
        output: String,
        platforms: Vec<gpubox_spec::Platform>,
    },
    // The advice is in the message: the error is shown under its spec item.
    #[error("{what} is {machine} code, but it is meant for the {platform} image; {help}")]
    WrongArchitecture {
        what: String,
        machine: String,
        platform: gpubox_spec::Platform,
        help: String,
    },
    #[error(
        "{what} is for {system}, but this build makes only {}",
        platform_list(platforms)
    )]
    #[diagnostic(help(
        "add the platform to `platforms` (or pass --platform), or remove the entry"
    ))]
    NoPlatformFor {
        what: String,
        system: String,
        platforms: Vec<gpubox_spec::Platform>,
    },
    #[error("this gpubox carries no gpubox-init for {platform}")]
    #[diagnostic(help("{help}"))]
    NoInitFor {
        platform: gpubox_spec::Platform,
        help: String,
    },
    #[error("gpubox builds images for linux/amd64 and linux/arm64, and this machine is {machine}")]
    #[diagnostic(help("name the platforms to build with `platforms` or --platform"))]
    UnknownBuildMachine { machine: &'static str },
}

/// `linux/amd64 and linux/arm64`.
pub(crate) fn platform_list(platforms: &[gpubox_spec::Platform]) -> String {
    let names: Vec<&str> = platforms.iter().map(|p| p.as_str()).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

// Boxed: a spec error carries the spec's text, and every result of the
// engine would otherwise be as large.
impl From<SpecError> for BuildError {
    fn from(error: SpecError) -> BuildError {
        BuildError::Spec(Box::new(error))
    }
}

impl BuildError {
    /// Points the error at the spec item that caused it, when the spec knows where
    /// that item is.
    pub fn in_spec(self, spec: &Spec, span: Option<SourceSpan>, what: String) -> BuildError {
        match span {
            Some(span) => BuildError::InSpec {
                what,
                source_code: spec.source(),
                span,
                cause: Box::new(self),
            },
            None => self,
        }
    }
}

impl From<crate::runnable::NotRunnable> for BuildError {
    fn from(error: crate::runnable::NotRunnable) -> BuildError {
        BuildError::NotRunnable(Box::new(error))
    }
}

/// Why a base image cannot be used. The advice is in the message, as the
/// error is shown under the spec's `fromImage` line.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error(
        "the base has {base} layers, but maxLayers = {max_layers} leaves room for at most \
         {room} base layers beside gpubox's own; raise maxLayers (up to 125) or squash the \
         base (`podman build --squash-all`)"
    )]
    TooManyLayers {
        base: usize,
        max_layers: usize,
        room: usize,
    },
    #[error("the base is a {found} image, but this build makes a {expected} image; use a base built for {expected}")]
    Platform { found: String, expected: String },
    #[error("the base's config cannot be read: {0}")]
    Config(String),
    #[error(
        "the base's /etc is a symbolic link to {target}: gpubox's top layer has an /etc \
         folder (os-release, nsswitch.conf, accounts), which would replace the link and \
         hide everything the base keeps there; use a base whose /etc is a folder (a link \
         for each file in it, as NixOS makes them, is fine)"
    )]
    LinkedEtc { target: String },
    #[error(
        "the base's /{path} leads through more than {max} symbolic links ({chain}); \
         the base's links loop, so no process could read it either: fix the base image"
    )]
    LinkLoop {
        path: String,
        max: usize,
        chain: String,
    },
}

/// Why a Nix builder cannot go on.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum NixBuilderError {
    #[error("$NIX_ATTRS_JSON_FILE is not set: `gpubox nix {builder}` is the builder of a derivation with __structuredAttrs, run by Nix")]
    #[diagnostic(help("build the image with `nix build` (see the README's \"From Nix\"); to check a spec by hand, use `gpubox build`"))]
    NotInABuild { builder: &'static str },
    #[error("cannot read the attributes Nix gave this build ({path}): {detail}")]
    #[diagnostic(help(
        "gpubox's builders need Nix 2.8 or newer; report this with the file attached"
    ))]
    BadAttributes { path: PathBuf, detail: String },
}

/// Why an image command cannot go on.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ImageCommandError {
    #[error("`{given}` is not an image command")]
    #[diagnostic(help("the commands are {known}"))]
    UnknownCommand { given: String, known: String },
    #[error("copyTo needs the destination as its first argument")]
    #[diagnostic(help("e.g. `nix run .#IMAGE.copyTo -- oci:DIR`, `-- oci-archive:image.tar` or `-- docker://HOST/REPO:TAG`"))]
    NoDestination,
    #[error("deploy needs the target as its first argument")]
    #[diagnostic(help(
        "e.g. `nix run .#IMAGE.deploy -- kubernetes -o IMAGE.yaml` (or vast, runpod)"
    ))]
    NoTarget,
    #[error("{command}: the spec has no `registries`{also}")]
    #[diagnostic(help("add one, e.g. registries = [ \"ghcr.io/my-org\" ] (the image's name and tag are added), or use `copyTo docker://HOST/REPO:TAG`"))]
    NoRegistries {
        command: &'static str,
        also: &'static str,
    },
    #[error("{command}: neither podman nor a Docker engine answers here")]
    #[diagnostic(help("start one (`podman info` or `docker info` must work), or write the image with `copyTo oci-archive:image.tar`"))]
    NoEngine { command: &'static str },
    #[error("copyToGithub: no GitHub {what}")]
    #[diagnostic(help("{help}"))]
    NoGithubLogin { what: &'static str, help: String },
}
