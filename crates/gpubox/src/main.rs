//! `gpubox`, the command line: builds GPU-ready OCI images from Nix closures and
//! local files, and inspects images wherever they are.
//!
//! This crate wires the library crates together in the order data flows (spec ->
//! closure -> layers -> image -> output) and is the only place that talks to the
//! terminal: progress, reports and error diagnostics.

mod commands;
mod error;
mod interrupt;
mod progress;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::build::BuildRequest;
use crate::error::CliError;
use crate::progress::Progress;
use crate::target::Target;

#[derive(Parser)]
#[command(
    name = "gpubox",
    version,
    about = "Build GPU-ready OCI images from Nix closures and local files, without a daemon"
)]
struct Cli {
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the image a spec describes and write it to DEST.
    Build {
        /// The spec, TOML or JSON.
        #[arg(default_value = "gpubox.toml")]
        spec: PathBuf,
        /// Where the image goes: oci:DIR[:TAG], oci-archive:FILE,
        /// docker-archive:FILE, docker-daemon:NAME:TAG or podman:NAME:TAG.
        #[arg(short, long, value_name = "DEST")]
        output: String,
        /// Where built layers are kept for the next build [default:
        /// $GPUBOX_CACHE_DIR, $XDG_CACHE_HOME/gpubox or ~/.cache/gpubox].
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Show an image's config, environment and layers.
    Inspect {
        /// oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE,
        /// docker-daemon:NAME:TAG or podman:NAME:TAG.
        source: String,
        /// Print JSON instead of a report.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{:?}", miette::Report::new(error));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let progress = Progress::new(cli.quiet);
    match cli.command {
        Command::Build {
            spec,
            output,
            cache_dir,
        } => {
            let request = BuildRequest {
                spec,
                output: output.parse::<Target>()?,
                cache_dir,
            };
            let digest = commands::build::run(&request, &progress)?;
            if !cli.quiet {
                println!("{digest}");
            }
            Ok(())
        }
        Command::Inspect { source, json } => {
            let source: Target = source.parse()?;
            commands::inspect::run(&source, json, &mut std::io::stdout().lock())
        }
    }
}
