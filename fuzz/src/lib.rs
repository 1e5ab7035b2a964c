//! What the fuzz targets share: a scratch file for the readers that take a path.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `data` to this process's scratch file `name` (on a tmpfs where there is one) and
/// returns its path; `None` when it cannot be written, so the input is skipped.
pub fn scratch_file(name: &str, data: &[u8]) -> Option<PathBuf> {
    let dir = ["/dev/shm", "/tmp"]
        .into_iter()
        .map(Path::new)
        .find(|dir| dir.is_dir())
        .map_or_else(std::env::temp_dir, Path::to_path_buf);
    let path = dir.join(format!("gpubox-fuzz-{}-{name}", std::process::id()));
    let mut file = std::fs::File::create(&path).ok()?;
    file.write_all(data).ok()?;
    Some(path)
}
