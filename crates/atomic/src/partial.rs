//! Names of files and folders that are still being written.
//!
//! Everything gpubox writes next to a user's output or into its cache is first
//! written under a name starting with [`prefix`] and renamed into place once
//! complete. The prefix carries the process id, so after an interrupt the CLI
//! can remove exactly its own unfinished files ([`remove_own`]) and never those
//! of another build running beside it.
//!
//! Names are [`prefix`] and a counter ([`unique_name`]), not random: nothing here
//! needs a source of randomness, and a name says which process left it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The part of [`prefix`] every process shares: what marks a name as
/// unfinished whoever wrote it.
pub const SHARED_PREFIX: &str = ".gpubox-partial-";

/// The name prefix of this process's unfinished files: `.gpubox-partial-<pid>-`.
pub fn prefix() -> String {
    format!("{SHARED_PREFIX}{}-", std::process::id())
}

/// A name for an unfinished file or folder that no other call in this process
/// returns: [`prefix`] and a counter, `.gpubox-partial-<pid>-<n>`. Another
/// process with the same id (a PID 1 started again, say) may have left one
/// behind, so create it with `create_new` and take the next name when it exists.
pub fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}{}", prefix(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// How many names [`create_unique`] tries before it gives up.
const NAME_TRIES: u32 = 1000;

/// Creates a file, folder or link under a fresh unfinished name in `folder`:
/// [`unique_name`], then `-hint` when `hint` is not empty (to tell a person
/// what it was to become). `create` is called with the path, again with the
/// next name while it fails with `AlreadyExists` (a name an earlier process
/// with the same id left), up to a thousand names. Returns the path and what
/// `create` returned, or `create`'s error.
pub fn create_unique<T>(
    folder: &Path,
    hint: &str,
    mut create: impl FnMut(&Path) -> io::Result<T>,
) -> io::Result<(PathBuf, T)> {
    let mut tries = 1;
    loop {
        let mut name = unique_name();
        if !hint.is_empty() {
            name.push('-');
            name.push_str(hint);
        }
        let path = folder.join(name);
        match create(&path) {
            Ok(made) => return Ok((path, made)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < NAME_TRIES => {
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether `name` is an unfinished file or folder of some gpubox process.
pub fn is_partial(name: &str) -> bool {
    name.starts_with(SHARED_PREFIX)
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

    #[test]
    fn unique_names_are_partial_and_never_repeat() {
        let (a, b) = (unique_name(), unique_name());
        assert_ne!(a, b);
        assert!(a.starts_with(&prefix()) && b.starts_with(&prefix()));
        assert!(is_partial(&a) && is_partial(".gpubox-partial-1-x"));
        assert!(!is_partial("image.tar"));
    }

    #[test]
    fn names_left_by_an_earlier_process_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut tried = Vec::new();
        let (path, ()) = create_unique(dir.path(), "out", |path| {
            tried.push(path.to_owned());
            match tried.len() {
                1..=3 => Err(io::ErrorKind::AlreadyExists.into()),
                _ => fs::create_dir(path),
            }
        })
        .unwrap();
        assert_eq!(tried.len(), 4);
        assert_eq!(tried[3], path);
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            name.starts_with(&prefix()) && name.ends_with("-out"),
            "{name}"
        );
        assert!(path.is_dir());

        let error = create_unique(dir.path(), "", |_| -> io::Result<()> {
            Err(io::ErrorKind::PermissionDenied.into())
        })
        .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
    }
}
