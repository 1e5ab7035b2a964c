//! Every way a gpubox command can fail, as one diagnostic type: the libraries'
//! typed errors pass through unchanged, and errors caused by one item of the spec
//! point at that item in the file.

use gpubox_spec::{Spec, SpecError};
use miette::{Diagnostic, NamedSource, SourceSpan};

#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum CliError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Spec(#[from] SpecError),
    #[error("{what}")]
    InSpec {
        what: String,
        #[source_code]
        source_code: NamedSource<String>,
        #[label("here")]
        span: SourceSpan,
        #[source]
        cause: Box<CliError>,
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
    Read(#[from] gpubox_oci::source::ReadError),
    #[error(transparent)]
    Engine(#[from] gpubox_registry::EngineError),
    #[error(transparent)]
    Target(#[from] crate::target::BadTarget),
    #[error(transparent)]
    Push(#[from] gpubox_registry::PushError),
    #[error(transparent)]
    Pull(#[from] gpubox_registry::PullError),
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
    Base(#[from] crate::commands::base::BaseError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    NixFrontEnd(#[from] crate::commands::nix::NixFrontEndError),
    #[error(transparent)]
    Cuda(#[from] gpubox_cuda::CudaError),
    #[error(transparent)]
    Cdi(#[from] gpubox_cdi::CdiError),
    #[error(transparent)]
    #[diagnostic(help("run `gpubox doctor` for each fix"))]
    NoGpuEngine(#[from] crate::commands::run::NoGpuEngine),
    #[error("cannot write the output {path}: {source}")]
    #[diagnostic(help("check that the folder exists and that you may write to it"))]
    OutputNotWritable {
        path: std::path::PathBuf,
        source: std::io::Error,
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
    #[error("cannot read USER:PASS from standard input (--creds-stdin): {0}")]
    CredsStdin(std::io::Error),
    #[error("cannot set up the handling of Ctrl-C: {0}")]
    Signals(std::io::Error),
    #[error("cannot create a temporary file: {0}")]
    Temp(std::io::Error),
}

impl CliError {
    /// Points the error at the spec item that caused it, when the spec knows where
    /// that item is.
    pub fn in_spec(self, spec: &Spec, span: Option<SourceSpan>, what: String) -> CliError {
        match span {
            Some(span) => CliError::InSpec {
                what,
                source_code: spec.source(),
                span,
                cause: Box::new(self),
            },
            None => self,
        }
    }
}
