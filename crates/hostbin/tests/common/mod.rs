//! What the hostbin tests share: `ldd` (glibc's own loader in trace mode) as the
//! second opinion, and the image paths of a result.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use gpubox_hostbin::{normalize, HostFile};

/// The files `ldd` says the loader opens for `binary`: every `=> /path` plus the interpreter.
pub fn ldd_paths(binary: &Path) -> BTreeSet<PathBuf> {
    let output = Command::new("ldd").arg(binary).output().expect("ldd runs");
    assert!(
        output.status.success(),
        "ldd {} failed: {output:?}",
        binary.display()
    );
    let text = String::from_utf8(output.stdout).expect("ldd prints UTF-8");
    assert!(
        !text.contains("not found"),
        "ldd could not resolve {}:\n{text}",
        binary.display()
    );
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once(" => ") {
                Some((_, right)) => right,
                None if line.starts_with('/') => line,
                None => return None,
            };
            let path = path.split(" (").next().unwrap_or(path);
            Some(normalize(Path::new(path)))
        })
        .collect()
}

pub fn image_paths(files: &[HostFile]) -> BTreeSet<PathBuf> {
    files.iter().map(|f| f.image_path.clone()).collect()
}
