//! Every way a gpubox command can fail, as one diagnostic for `miette` to
//! render: the engine's and the host libraries' errors pass through unchanged.

use miette::Diagnostic;

#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum CliError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Build(#[from] gpubox_build::BuildError),
    #[error(transparent)]
    Cdi(#[from] gpubox_cdi::CdiError),
    #[error(transparent)]
    Cache(#[from] gpubox_layers::cache::CacheError),
    #[error(transparent)]
    #[diagnostic(help("run `gpubox doctor` for each fix"))]
    NoGpuEngine(#[from] gpubox_host::run::NoGpuEngine),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Deploy(#[from] gpubox_deploy::DeployError),
    #[error("cannot resolve docker://{reference} to its digest and platforms")]
    #[diagnostic(help(
        "push the image first (gpubox build -o docker://... or gpubox push) and check --tls-verify \
         and --creds; a NAME@sha256:... reference is used as written where the registry cannot \
         be reached"
    ))]
    Unresolved {
        reference: String,
        #[source]
        source: Box<gpubox_build::BuildError>,
    },
    #[error("cannot read USER:PASS from standard input (--creds-stdin): {0}")]
    CredsStdin(std::io::Error),
    #[error("cannot set up the handling of Ctrl-C: {0}")]
    Signals(std::io::Error),
    #[error("cannot write to standard output: {0}")]
    Stdout(std::io::Error),
    #[error("--cache-from {reference}: {reason}")]
    #[diagnostic(help(
        "--cache-from names a registry image (docker://HOST[:PORT]/REPO:TAG) on the registry \
         that `-o docker://...` pushes to; layers are reused by mounting them there"
    ))]
    CacheFrom {
        reference: String,
        reason: &'static str,
    },
    #[error("gpubox doctor {option}: {mode}")]
    #[diagnostic(help("leave {option} out"))]
    DoctorOption {
        option: &'static str,
        mode: &'static str,
    },
    #[error("{0} already exists; nothing was written")]
    #[diagnostic(help("keep your file, or move it away and run `gpubox init` again"))]
    StarterExists(std::path::PathBuf),
    #[error("cannot write {path}: {reason}")]
    #[diagnostic(help("check that you may write there"))]
    WriteFile {
        path: std::path::PathBuf,
        reason: std::io::Error,
    },
}

/// Errors of the libraries the engine's error already names.
macro_rules! through_build_error {
    ($($error:ty),*) => {$(
        impl From<$error> for CliError {
            fn from(error: $error) -> CliError {
                CliError::Build(error.into())
            }
        }
    )*};
}

through_build_error!(
    gpubox_spec::SpecError,
    gpubox_build::BadLocation,
    gpubox_registry::PushError,
    gpubox_engines::EngineError
);
