//! Shell completions and man pages, generated from the command-line definitions so
//! they never fall behind them.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::error::CliError;

/// Writes the completion script for `shell` to `out`.
pub fn completions<C: CommandFactory>(
    shell: clap_complete::Shell,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    // Into memory first: the generator panics when its writer fails.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut C::command(), "gpubox", &mut script);
    out.write_all(&script).map_err(CliError::Stdout)
}

/// Writes `gpubox.1` to `out`, or, with `dir`, one page per command into it
/// (`gpubox.1`, `gpubox-build.1`, ...), for `MANPATH` or packaging.
pub fn man<C: CommandFactory>(dir: Option<&Path>, out: &mut dyn Write) -> Result<(), CliError> {
    let command = C::command();
    match dir {
        None => clap_mangen::Man::new(command)
            .render(out)
            .map_err(CliError::Stdout),
        Some(dir) => {
            let written =
                std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(command, dir));
            written.map_err(|reason| CliError::WriteFile {
                path: dir.to_owned(),
                reason,
            })
        }
    }
}
