//! Finding the CUDA release(s) a closure carries, and choosing the image's one.
//!
//! Two sources, both cheap and both deterministic:
//! - the store path's name. Since CUDA 11 NVIDIA versions each toolkit component on
//!   its own (release notes, "CUDA Toolkit Major Component Versions"), and only some
//!   components carry the toolkit's major.minor in their own version. Counted:
//!   `cuda_*` (cudart 12.4.127, nvcc 12.4.131, cuda_compat 12.4.35753180, ...),
//!   `libnvjitlink` (12.4.127), `libcudla`, `cudatoolkit` and nixpkgs' `cuda-merged`
//!   (the toolkit's own version), and `libcublas` from 12.0 on (12.4.5.8 ships with
//!   CUDA 12.4; in 11.x it did not follow the toolkit: 11.11.3.6 shipped with 11.8).
//!   Not counted, because their versions are their own: libcufft (11.2.1.3 in CUDA
//!   12.4), libcurand (10.3.5.147), libcusolver (11.6.1.9), libcusparse (12.3.1.170),
//!   libnpp (12.2.5.30), libnvjpeg, libcufile (1.9.1.3), and libraries outside the
//!   toolkit such as cudnn (9.1.0.70), nccl, cutensor and tensorrt.
//! - `libcudart.so.<version>` files in `lib/` or `lib64/`: the runtime's real version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{CudaError, CudaVersion};

/// One piece of evidence that the closure holds a given CUDA release.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct CudaPackage {
    /// The store path (or the `libcudart.so.*` file, for hits found by file).
    pub path: PathBuf,
    /// The CUDA release it belongs to.
    pub version: CudaVersion,
    /// The version as written in the name, such as "12.4.127".
    pub full_version: String,
}

/// Package names (nixpkgs' `cudaPackages` pnames) whose version is the toolkit's, with
/// the first CUDA major from which that holds.
const TOOLKIT_NAMES: &[(&str, u32)] = &[
    ("cudatoolkit", 0),
    ("cuda-merged", 0),
    ("libnvjitlink", 0),
    ("libcudla", 0),
    ("libcublas", 12),
];

/// Every CUDA package among `store_paths`, sorted by version then path.
///
/// A name is read only from folders named like store paths (`<32 characters>-<name>`);
/// output suffixes such as `-lib` or `-dev` are allowed after the version. Folders are
/// listed with `list` (the names in a folder, `None` where there is none), so a caller
/// can answer for store paths that are not on disk; a closure path without `lib/` is
/// normal.
pub fn detect(
    store_paths: &[&Path],
    list: &dyn Fn(&Path) -> Option<Vec<std::ffi::OsString>>,
) -> Vec<CudaPackage> {
    let mut found = Vec::new();
    for path in store_paths {
        if let Some((version, full_version)) = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(store_name)
            .and_then(toolkit_version)
        {
            found.push(CudaPackage {
                path: path.to_path_buf(),
                version,
                full_version,
            });
        }
        for lib in ["lib", "lib64"] {
            found.extend(cudart_in(&path.join(lib), list));
        }
    }
    found.sort_by(|a, b| {
        (a.version, &a.path, &a.full_version).cmp(&(b.version, &b.path, &b.full_version))
    });
    found.dedup();
    found
}

/// The name part of a store path's last component (`<hash>-<name>`): 32 characters of
/// lowercase letters and digits, a dash, and a non-empty name.
fn store_name(file_name: &str) -> Option<&str> {
    let (hash, name) = file_name.split_at_checked(32)?;
    let name = name.strip_prefix('-')?;
    let hash_ok = hash
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (hash_ok && !name.is_empty()).then_some(name)
}

/// The CUDA release of a store name like `cuda_cudart-12.4.127-lib`, when the package
/// is one whose version follows the toolkit's.
fn toolkit_version(name: &str) -> Option<(CudaVersion, String)> {
    // Nix splits pname and version at the first dash followed by a digit.
    let split = name
        .char_indices()
        .find(|&(i, c)| c == '-' && name[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
        .map(|(i, _)| i)?;
    let pname = &name[..split];
    let full_version = name[split + 1..].split('-').next()?;
    let version: CudaVersion = full_version.parse().ok()?;
    let counted = pname.starts_with("cuda_")
        || TOOLKIT_NAMES
            .iter()
            .any(|&(known, from_major)| pname == known && version.major >= from_major);
    // A single number ("cudatoolkit-12") says nothing about the minor.
    (counted && full_version.contains('.')).then(|| (version, full_version.to_string()))
}

/// The most precise `libcudart.so.X.Y[...]` in `dir`: the one with the most numbers
/// (`libcudart.so.12` alone names no minor and does not count).
fn cudart_in(
    dir: &Path,
    list: &dyn Fn(&Path) -> Option<Vec<std::ffi::OsString>>,
) -> Option<CudaPackage> {
    let mut best: Option<(Vec<u32>, PathBuf, String)> = None;
    for file_name in list(dir)? {
        let Some(suffix) = file_name
            .to_str()
            .and_then(|name| name.strip_prefix("libcudart.so."))
        else {
            continue;
        };
        let Some(parts) = crate::version::numeric_parts(suffix) else {
            continue;
        };
        let better = match &best {
            None => true,
            Some((best_parts, _, _)) => (parts.len(), &parts) > (best_parts.len(), best_parts),
        };
        if parts.len() >= 2 && better {
            best = Some((parts, dir.join(&file_name), suffix.to_string()));
        }
    }
    let (parts, path, full_version) = best?;
    Some(CudaPackage {
        path,
        version: CudaVersion::new(parts[0], parts[1]),
        full_version,
    })
}

/// The image's CUDA release: `declared` (the spec's `cuda.version`) when given, without
/// looking at `packages`; otherwise the one release found, `None` when none; two or more
/// releases are an error naming the paths, unless `allow_mixed`, which picks the highest.
pub fn resolve_version(
    packages: &[CudaPackage],
    allow_mixed: bool,
    declared: Option<CudaVersion>,
) -> Result<Option<CudaVersion>, CudaError> {
    if declared.is_some() {
        return Ok(declared);
    }
    let mut by_version: BTreeMap<CudaVersion, Vec<PathBuf>> = BTreeMap::new();
    for package in packages {
        let paths = by_version.entry(package.version).or_default();
        if !paths.contains(&package.path) {
            paths.push(package.path.clone());
        }
    }
    if by_version.len() > 1 && !allow_mixed {
        let versions = by_version
            .into_iter()
            .map(|(version, mut paths)| {
                paths.sort();
                (version, paths)
            })
            .collect();
        return Err(CudaError::MixedVersions { versions });
    }
    Ok(by_version.keys().next_back().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, File};

    fn on_disk(dir: &Path) -> Option<Vec<std::ffi::OsString>> {
        let read = fs::read_dir(dir).ok()?;
        Some(read.flatten().map(|e| e.file_name()).collect())
    }

    const HASH: &str = "0123456789abcdfghijklmnpqrsvwxyz";

    /// A fake store path `<dir>/<HASH>-<name>` holding the given files.
    fn store_path(root: &Path, name: &str, files: &[&str]) -> PathBuf {
        let path = root.join(format!("{HASH}-{name}"));
        fs::create_dir_all(&path).unwrap();
        for file in files {
            let file = path.join(file);
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            File::create(file).unwrap();
        }
        path
    }

    fn versions(found: &[CudaPackage]) -> Vec<String> {
        found
            .iter()
            .map(|p| format!("{} {}", p.version, p.full_version))
            .collect()
    }

    #[test]
    fn finds_toolkit_components_by_name() {
        let root = tempfile::tempdir().unwrap();
        let paths = [
            store_path(root.path(), "cudatoolkit-12.4.1", &[]),
            store_path(root.path(), "libcublas-12.4.5.8-lib", &[]),
            store_path(root.path(), "cuda_nvcc-12.4.131", &[]),
            store_path(root.path(), "cuda_compat-12.4.35753180", &[]),
            store_path(root.path(), "cuda-merged-12.4", &[]),
            store_path(root.path(), "libnvjitlink-12.4.127", &[]),
        ];
        let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        let found = detect(&refs, &on_disk);
        assert_eq!(found.len(), 6, "{found:?}");
        assert!(found.iter().all(|p| p.version == CudaVersion::new(12, 4)));
        assert!(versions(&found).contains(&"12.4 12.4.5.8".to_string()));
    }

    #[test]
    fn ignores_libraries_with_their_own_versions() {
        let root = tempfile::tempdir().unwrap();
        let paths = [
            store_path(root.path(), "cudnn-9.1.0.70", &[]),
            store_path(root.path(), "libcufft-11.2.1.3", &[]),
            store_path(root.path(), "libcurand-10.3.5.147", &[]),
            store_path(root.path(), "libnpp-12.2.5.30", &[]),
            store_path(root.path(), "nccl-2.21.5-1", &[]),
            store_path(root.path(), "libcublas-11.11.3.6", &[]),
            store_path(root.path(), "cudatoolkit-12", &[]),
            store_path(root.path(), "hello-2.12.1", &[]),
        ];
        let mut refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        // A name that is not a store path is not read as one.
        let plain = root.path().join("cuda_cudart-12.4.127");
        fs::create_dir(&plain).unwrap();
        refs.push(&plain);
        assert_eq!(detect(&refs, &on_disk), Vec::new());
    }

    #[test]
    fn reads_the_most_precise_libcudart() {
        let root = tempfile::tempdir().unwrap();
        let runtime = store_path(
            root.path(),
            "cuda_cudart-12.4.127-lib",
            &[
                "lib/libcudart.so",
                "lib/libcudart.so.12",
                "lib/libcudart.so.12.4.127",
            ],
        );
        // Only the file tells this one's version.
        let vendored = store_path(
            root.path(),
            "python3.12-torch-2.3.0",
            &["lib64/libcudart.so.11.8.89", "lib64/libcudart.so.11"],
        );
        let only_major = store_path(root.path(), "some-app-1.0", &["lib/libcudart.so.12"]);
        let found = detect(&[&vendored, &runtime, &only_major], &on_disk);
        assert_eq!(
            found,
            vec![
                CudaPackage {
                    path: vendored.join("lib64/libcudart.so.11.8.89"),
                    version: CudaVersion::new(11, 8),
                    full_version: "11.8.89".into(),
                },
                CudaPackage {
                    path: runtime.clone(),
                    version: CudaVersion::new(12, 4),
                    full_version: "12.4.127".into(),
                },
                CudaPackage {
                    path: runtime.join("lib/libcudart.so.12.4.127"),
                    version: CudaVersion::new(12, 4),
                    full_version: "12.4.127".into(),
                },
            ]
        );
    }

    #[test]
    fn detection_does_not_depend_on_input_order() {
        let root = tempfile::tempdir().unwrap();
        let a = store_path(root.path(), "cuda_cudart-12.6.77", &[]);
        let b = store_path(root.path(), "cuda_cudart-12.4.127", &[]);
        assert_eq!(detect(&[&a, &b], &on_disk), detect(&[&b, &a], &on_disk));
        assert_eq!(
            detect(&[&a, &b], &on_disk)[0].version,
            CudaVersion::new(12, 4)
        );
    }

    #[test]
    fn mixed_versions_are_refused_naming_both_paths() {
        let root = tempfile::tempdir().unwrap();
        let old = store_path(root.path(), "cuda_cudart-12.4.127", &[]);
        let new = store_path(root.path(), "cuda_cudart-12.6.77", &[]);
        let found = detect(&[&new, &old], &on_disk);
        let error = resolve_version(&found, false, None).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(&old.display().to_string()), "{message}");
        assert!(message.contains(&new.display().to_string()), "{message}");
        assert!(message.contains("CUDA 12.4 from"), "{message}");
        assert!(message.contains("CUDA 12.6 from"), "{message}");
        assert!(
            message.contains("cuda.allowMixedVersions = true"),
            "{message}"
        );
        match error {
            CudaError::MixedVersions { versions } => {
                assert_eq!(versions.len(), 2);
                assert_eq!(versions[0], (CudaVersion::new(12, 4), vec![old]));
            }
            other => panic!("expected MixedVersions, got {other:?}"),
        }
    }

    #[test]
    fn resolve_picks_declared_single_or_highest_when_allowed() {
        let root = tempfile::tempdir().unwrap();
        let old = store_path(root.path(), "cuda_cudart-12.4.127", &[]);
        let new = store_path(root.path(), "libcublas-12.6.4.1", &[]);
        let found = detect(&[&old, &new], &on_disk);
        assert_eq!(
            resolve_version(&found, true, None).unwrap(),
            Some(CudaVersion::new(12, 6))
        );
        assert_eq!(
            resolve_version(&found, false, Some(CudaVersion::new(12, 5))).unwrap(),
            Some(CudaVersion::new(12, 5))
        );
        assert_eq!(
            resolve_version(&found[..1], false, None).unwrap(),
            Some(CudaVersion::new(12, 4))
        );
        assert_eq!(resolve_version(&[], false, None).unwrap(), None);
    }
}
