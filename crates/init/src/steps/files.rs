//! File operations the start-up steps (the GPU step's links too) share: folders with
//! a mode, and files ([`gpubox_atomic`]) and links written under an unfinished name
//! and renamed, so an interrupted start never leaves half a file.
//!
//! Unfinished names carry the init's process id ([`partial`]), which is 1 at every
//! start, so what a start killed mid-write left in a folder is removed before the next
//! write there. The steps write one file at a time, so this removes nothing of the
//! current start.

use std::fs::{DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use gpubox_atomic::{folder_of, partial, Options};

/// Creates `path` and its missing parents with `mode`; existing folders are kept.
pub fn create_dir_all(path: &Path, mode: u32) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(mode).create(path)
}

/// Creates `path` (its parent must exist) with exactly `mode`, whatever the umask.
pub fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    DirBuilder::new().mode(mode).create(path)?;
    std::fs::set_permissions(path, Permissions::from_mode(mode))
}

/// Who a written file belongs to: `None` keeps the init's own user (root).
pub type Owner = Option<(u32, u32)>;

/// Writes `contents` to `path` through a pending file in the same folder, with `mode`
/// and `owner` set before the rename, so the file never exists with other permissions
/// or half written. The error is the system's, for the caller to name the path.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32, owner: Owner) -> io::Result<()> {
    partial::remove_own(folder_of(path));
    let options = Options::new().mode(mode).owner(owner);
    gpubox_atomic::write_bytes(path, &options, contents).map_err(io::Error::from)
}

/// Points a symbolic link at `path` to `target`, replacing what was there at once.
/// A link is not a file [`gpubox_atomic`] can write: it is made under an unfinished
/// name and renamed.
pub fn symlink_atomic(target: &Path, path: &Path) -> io::Result<()> {
    let folder = folder_of(path);
    partial::remove_own(folder);
    let (temporary, ()) = partial::create_unique(folder, "", |temporary| {
        std::os::unix::fs::symlink(target, temporary)
    })?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn files_and_links_replace_at_once_and_clear_what_a_killed_start_left() {
        let dir = tempfile::tempdir().unwrap();
        let left = dir.path().join(partial::unique_name());
        std::fs::write(&left, "half").unwrap();

        let file = dir.path().join("key");
        write_atomic(&file, b"secret", 0o640, None).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"secret");
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o7777, 0o640);
        assert!(!left.exists());

        let link = dir.path().join("link");
        symlink_atomic(Path::new("key"), &link).unwrap();
        symlink_atomic(Path::new("other"), &link).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("other"));

        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["key", "link"]);

        let error = write_atomic(&dir.path().join("no/such/file"), b"x", 0o600, None).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(error.to_string().contains("create it first"), "{error}");
    }
}
