//! `gpubox init [DIR] [--nix]`: writes the starter spec (and flake) into DIR, never
//! over a file that is there.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::CliError;

/// Writes `DIR/gpubox.toml` (and `DIR/flake.nix` with `nix`), creating DIR; refuses,
/// writing nothing, when any of them exists. Returns the files written.
pub fn run(dir: &Path, nix: bool) -> Result<Vec<PathBuf>, CliError> {
    let folder_name = std::path::absolute(dir)
        .ok()
        .and_then(|absolute| {
            absolute
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let name = gpubox_spec::image_name_for(&folder_name);
    let mut files = vec![(dir.join("gpubox.toml"), gpubox_spec::starter_toml(&name))];
    if nix {
        files.push((
            dir.join("flake.nix"),
            gpubox_spec::starter_flake().to_owned(),
        ));
    }
    if let Some((existing, _)) = files.iter().find(|(path, _)| path.exists()) {
        return Err(CliError::StarterExists(existing.clone()));
    }
    std::fs::create_dir_all(dir).map_err(|reason| CliError::WriteFile {
        path: dir.to_owned(),
        reason,
    })?;
    for (path, text) in &files {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .map_err(|reason| CliError::WriteFile {
                path: path.clone(),
                reason,
            })?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}
