//! `gpubox nix`: the Nix front end's builders and image commands (the engine's
//! `nix_builder` and `image_commands` do the work; this runs them).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use gpubox_build::image_commands::{
    command_lines, github_login, needs, shown, ImageCommand, Surroundings,
};
use gpubox_build::{BuildError, Reporter};
use gpubox_engines::Engine;

use crate::error::CliError;
use crate::progress::Progress;

/// `--help`'s list of image commands, with nix2gpu's names.
pub fn image_command_parser() -> impl clap::builder::TypedValueParser<Value = ImageCommand> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(
        ImageCommand::ALL.map(|(_, name, help)| PossibleValue::new(name).help(help)),
    )
    .try_map(|name| name.parse::<ImageCommand>())
}

/// `gpubox nix spec-builder`. `nix build` shows a failed build's last 10
/// lines: after the diagnostic comes its gist on one line, so that much
/// always shows.
pub fn spec_builder(progress: &Progress) -> ExitCode {
    let Err(error) = gpubox_build::nix_builder::spec_builder(progress) else {
        return ExitCode::SUCCESS;
    };
    let mut gist = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(inner) = cause {
        gist = format!("{gist}: {inner}");
        cause = inner.source();
    }
    eprintln!("{:?}", miette::Report::new(error));
    eprintln!("gpubox refused the spec: {gist}");
    ExitCode::FAILURE
}

/// Runs an image command's gpubox command lines in order through `run_line`,
/// which parses each as if typed, so its ARGS mean what they mean on the
/// command line.
pub fn run_image_command(
    command: ImageCommand,
    spec_file: &Path,
    args: &[String],
    progress: &Progress,
    mut run_line: impl FnMut(Vec<String>) -> Result<ExitCode, CliError>,
) -> Result<ExitCode, CliError> {
    let spec = gpubox_spec::load(spec_file)?;
    let needed = needs(command, args);
    // In the cache's folder, so the layout hard-links the cached blobs; named
    // as unfinished, so an interrupt or `cache gc` removes what is left.
    let scratch = if needed.scratch {
        let tmp = gpubox_build::cache_dir(None)?.join("tmp");
        let unwritable = |reason| BuildError::OutputNotWritable {
            path: tmp.clone(),
            reason,
        };
        std::fs::create_dir_all(&tmp).map_err(unwritable)?;
        Some(
            tempfile::Builder::new()
                .prefix(&gpubox_atomic::partial::prefix())
                .tempdir_in(&tmp)
                .map_err(unwritable)?,
        )
    } else {
        None
    };
    let around = Surroundings {
        engine: if needed.engine {
            [Engine::Podman, Engine::Docker]
                .into_iter()
                .find(|engine| gpubox_engines::probe(*engine).is_some())
        } else {
            None
        },
        github_login: if needed.github_login {
            Some(github_login(&std::env::vars().collect())?)
        } else {
            None
        },
        workspace: std::env::current_dir().map_err(|source| BuildError::InputNotReadable {
            path: PathBuf::from("."),
            source,
        })?,
        scratch: scratch
            .as_ref()
            .map(|dir| dir.path().join("image"))
            .unwrap_or_default(),
    };
    let mut code = ExitCode::SUCCESS;
    for line in command_lines(command, spec_file, &spec, args, &around)? {
        progress.step(&format!("{command}: gpubox {}", shown(&line)));
        code = run_line(line)?;
    }
    Ok(code)
}
