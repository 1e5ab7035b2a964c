//! File operations the start-up steps (the GPU step's links too) share: folders with
//! a mode, and files and links written to a temporary name and renamed, so an
//! interrupted start never leaves half a file.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

/// Writes `contents` to `path` through a temporary file in the same folder, with
/// `mode` and `owner` set before the rename, so the file never exists with other
/// permissions or half written.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32, owner: Owner) -> io::Result<()> {
    let temporary = temporary_name(path);
    // A start that was killed mid-write left it; the init is PID 1 every time, so the
    // name comes back.
    let _ = std::fs::remove_file(&temporary);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(contents)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        file.set_permissions(Permissions::from_mode(mode))?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// Points a symbolic link at `path` to `target`, replacing what was there at once.
pub fn symlink_atomic(target: &Path, path: &Path) -> io::Result<()> {
    let temporary = temporary_name(path);
    let _ = std::fs::remove_file(&temporary);
    std::os::unix::fs::symlink(target, &temporary)?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

/// A name next to `path` that no other writer of it uses at the same time.
pub fn temporary_name(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.gpubox-init-{}", std::process::id()))
}
