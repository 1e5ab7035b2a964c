//! A small record of which repositories on which registry received which
//! blobs in earlier pushes, so a later push to another repository of the same
//! registry can mount them instead of uploading them again.
//!
//! The record is only a hint: a missing, unreadable or corrupt file reads as
//! empty, and a failed write is ignored; a stale entry only costs one mount
//! request that the registry refuses.

use std::collections::BTreeMap;
use std::path::Path;

/// Repositories remembered per blob; the most recent pushes win.
const REPOS_PER_BLOB: usize = 4;

/// registry -> blob digest -> repositories, most recent first.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct BlobRecord {
    registries: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl BlobRecord {
    /// Reads the record at `path`; anything wrong with it reads as empty.
    pub fn load(path: &Path) -> BlobRecord {
        let registries = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|value| value.get("registries").cloned())
            .and_then(|value| serde_json::from_value(value).ok())
            .unwrap_or_default();
        BlobRecord { registries }
    }

    /// Repositories of `registry` other than `except` known to hold `digest`.
    pub fn holders(&self, registry: &str, digest: &str, except: &str) -> Vec<String> {
        self.registries
            .get(registry)
            .and_then(|blobs| blobs.get(digest))
            .map(|repos| repos.iter().filter(|r| *r != except).cloned().collect())
            .unwrap_or_default()
    }

    /// Notes that `repository` of `registry` now holds `digests`.
    pub fn add<'d>(
        &mut self,
        registry: &str,
        repository: &str,
        digests: impl IntoIterator<Item = &'d str>,
    ) {
        let blobs = self.registries.entry(registry.to_owned()).or_default();
        for digest in digests {
            let repos = blobs.entry(digest.to_owned()).or_default();
            repos.retain(|r| r != repository);
            repos.insert(0, repository.to_owned());
            repos.truncate(REPOS_PER_BLOB);
        }
    }

    /// Writes the record to `path` through a temporary file and a rename, so
    /// readers see the old record or the new one. Failing is harmless.
    pub fn save(&self, path: &Path) {
        let Some(dir) = path.parent() else {
            return;
        };
        let json = serde_json::json!({ "registries": self.registries });
        let options = gpubox_atomic::Options::new().sync(false);
        let written = std::fs::create_dir_all(dir).and_then(|()| {
            gpubox_atomic::write_bytes(path, &options, json.to_string().as_bytes())
                .map_err(std::io::Error::from)
        });
        // A hint that could not be saved only makes the next push upload more.
        drop(written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_files_read_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/record.json");
        assert_eq!(BlobRecord::load(&path), BlobRecord::default());
        let mut record = BlobRecord::default();
        record.add("r:5000", "a", ["sha256:1", "sha256:2"]);
        record.add("r:5000", "b", ["sha256:1"]);
        record.save(&path);
        let loaded = BlobRecord::load(&path);
        assert_eq!(loaded, record);
        assert_eq!(loaded.holders("r:5000", "sha256:1", "c"), ["b", "a"]);
        assert_eq!(loaded.holders("r:5000", "sha256:1", "b"), ["a"]);
        assert!(loaded.holders("other", "sha256:1", "c").is_empty());
        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(BlobRecord::load(&path), BlobRecord::default());
    }

    #[test]
    fn few_repositories_are_kept_per_blob() {
        let mut record = BlobRecord::default();
        for repo in ["a", "b", "c", "d", "e", "a"] {
            record.add("r", repo, ["sha256:1"]);
        }
        assert_eq!(record.holders("r", "sha256:1", ""), ["a", "e", "d", "c"]);
    }
}
