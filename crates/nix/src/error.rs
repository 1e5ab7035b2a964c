use std::process::ExitStatus;

use crate::StorePath;

/// What can go wrong when naming, building or querying store paths.
#[derive(Debug, thiserror::Error)]
pub enum NixError {
    #[error(
        "`{program}` was not found on PATH; install Nix (https://nixos.org/download) \
         or add the directory holding `{program}` to PATH"
    )]
    NotInstalled { program: String },

    #[error(
        "`{text}` is not a Nix store path: {reason}; expected /nix/store/<32-character hash>-<name>"
    )]
    InvalidStorePath { text: String, reason: String },

    #[error(
        "store path {path} is not in the Nix store (missing on disk or not registered as valid); \
         build or fetch it first (e.g. `nix-store --realise {path}` or `nix build`), \
         or check the path for typos"
    )]
    PathMissing { path: StorePath },

    #[error("`{command}` failed ({status}); Nix said:\n{stderr}")]
    CommandFailed {
        command: String,
        status: ExitStatus,
        /// Nix's own message, verbatim and trimmed (only its last lines when a
        /// build log makes it long).
        stderr: String,
    },

    #[error(
        "could not read the output of `{command}`: {detail}; check that `nix --version` \
         is 2.8 or newer and report this with the output attached"
    )]
    BadOutput { command: String, detail: String },

    #[error(
        "the closure Nix exported to this build is not what gpubox expects: {detail}; \
         check that `nix --version` is 2.8 or newer and report this"
    )]
    BadExportedGraph { detail: String },

    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
}
