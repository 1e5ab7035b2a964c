//! Names of files and folders that are still being written.
//!
//! Everything gpubox writes next to a user's output or into its cache is first
//! written under a name starting with [`prefix`] and renamed into place once
//! complete. The prefix carries the process id, so after an interrupt the CLI
//! can remove exactly its own unfinished files ([`remove_own`]) and never those
//! of another build running beside it.

use std::fs;
use std::path::Path;

/// The name prefix of this process's unfinished files: `.gpubox-partial-<pid>-`.
pub fn prefix() -> String {
    format!(".gpubox-partial-{}-", std::process::id())
}

/// Removes this process's unfinished files and folders directly inside `folder`.
/// Best effort: it runs while the process is being interrupted, and a file that
/// cannot be removed is left for the user to see rather than reported.
pub fn remove_own(folder: &Path) {
    let prefix = prefix();
    let Ok(entries) = fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(kind) if kind.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_this_process_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(format!("{}a", prefix())), "x").unwrap();
        fs::create_dir_all(dir.path().join(format!("{}dir/inner", prefix()))).unwrap();
        fs::write(dir.path().join(".gpubox-partial-1-other"), "x").unwrap();
        fs::write(dir.path().join("image.tar"), "x").unwrap();
        remove_own(dir.path());
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".gpubox-partial-1-other", "image.tar"]);
    }
}
