//! The layer cache: built store-path layers, found again by what they hold.
//!
//! Nix store paths never change once they exist, so a layer is fully described by
//! the store paths in it, the compression and the mtime its entries carry (plus the
//! version of gpubox's tar format). That description, hashed, is the cache key; the
//! value is the [`LayerBlob`] whose bytes live in the [`BlobStore`] beside it. A
//! rebuild where one small path changed re-tars only the layer holding it.
//!
//! Entries are written to a temporary file and renamed into place, and a hit is
//! only trusted when its blob is still in the store with the recorded size, so an
//! interrupted build or a pruned blob folder never yields a corrupt image.
//!
//! Builds and garbage collection share the folder through an advisory lock on
//! `<root>/lock`: every open [`LayerCache`] holds it shared, so builds run side by
//! side, and [`LayerCache::open_exclusive`] holds it exclusively, so collection
//! waits for running builds and builds started meanwhile wait for it. Only under
//! the exclusive lock are leftover temporary files known to be abandoned. The
//! lock is `flock(2)` through `libc` rather than `File::lock`, which needs Rust
//! 1.89 while the workspace supports 1.85; being tied to the open file, it is
//! released when the cache is dropped or the process dies, so a killed build
//! never leaves the cache locked.
//!
//! A hit refreshes its index file's mtime, which makes that mtime the entry's
//! last use: [`ExclusiveLayerCache::gc`] evicts the least recently used first.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use gpubox_nix::StorePath;
use gpubox_oci::blob::{BlobError, BlobStore, LayerBlob};
use gpubox_oci::tar::{walk, WalkError, WalkOptions};
use gpubox_oci::{Compression, Digest, Entry, ImagePath};
use sha2::{Digest as _, Sha256};

/// Bumped whenever the bytes gpubox writes for the same inputs change, so old
/// cache entries are never mistaken for new ones.
const LAYER_FORMAT_VERSION: &str = "gpubox-store-layer-v1";

/// Why the cache could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "cannot use the layer cache at {}: {source}; check its permissions and free \
         space, or use another cache folder",
        path.display()
    )]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// Built layers and the blob store that holds their bytes, held open under the
/// cache's lock (shared, or exclusive for [`ExclusiveLayerCache`]).
pub struct LayerCache {
    store: BlobStore,
    index: PathBuf,
    /// Holds the lock for as long as the cache is open.
    _lock: File,
}

/// A cache opened with [`LayerCache::open_exclusive`]: no build is using it, so
/// it may be collected.
pub struct ExclusiveLayerCache {
    cache: LayerCache,
}

impl LayerCache {
    /// Opens (creating if needed) the cache rooted at `root`, sharing it with
    /// other builds; waits while a collection holds it.
    pub fn open(root: &Path) -> Result<LayerCache, CacheError> {
        LayerCache::open_locked(root, libc::LOCK_SH)
    }

    /// Opens (creating if needed) the cache rooted at `root` for collection;
    /// waits until no build or other collection holds it.
    pub fn open_exclusive(root: &Path) -> Result<ExclusiveLayerCache, CacheError> {
        let cache = LayerCache::open_locked(root, libc::LOCK_EX)?;
        Ok(ExclusiveLayerCache { cache })
    }

    fn open_locked(root: &Path, operation: libc::c_int) -> Result<LayerCache, CacheError> {
        let store = BlobStore::open(root)?;
        let index = root.join("layers");
        fs::create_dir_all(&index).map_err(|source| CacheError::Io {
            path: index.clone(),
            source,
        })?;
        let lock_path = root.join("lock");
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .and_then(|file| flock(&file, operation).map(|()| file))
            .map_err(|source| CacheError::Io {
                path: lock_path,
                source,
            })?;
        Ok(LayerCache {
            store,
            index,
            _lock: lock,
        })
    }

    /// The blob store holding every cached layer's bytes.
    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    /// The key of a layer holding exactly `paths` (in any order).
    pub fn key(paths: &[StorePath], compression: Compression, mtime: u64) -> String {
        let mut sorted: Vec<&str> = paths.iter().map(StorePath::as_str).collect();
        sorted.sort_unstable();
        let mut hasher = Sha256::new();
        hasher.update(LAYER_FORMAT_VERSION);
        hasher.update([0]);
        hasher.update(compression.to_string());
        hasher.update([0]);
        hasher.update(mtime.to_le_bytes());
        for path in sorted {
            hasher.update([0]);
            hasher.update(path);
        }
        hex::encode(hasher.finalize())
    }

    /// The key of a base image's layer. Its blob is content-addressed, so its
    /// digest alone decides everything gpubox records about it.
    pub fn base_key(digest: &Digest) -> String {
        let mut hasher = Sha256::new();
        hasher.update("gpubox-base-layer-v1");
        hasher.update([0]);
        hasher.update(digest.to_string());
        hex::encode(hasher.finalize())
    }

    /// The layer stored under `key`, if it and its blob are still there. A hit
    /// marks the entry as just used.
    pub fn get(&self, key: &str) -> Option<LayerBlob> {
        let mut file = File::open(self.index.join(format!("{key}.json"))).ok()?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).ok()?;
        let blob: LayerBlob = serde_json::from_slice(&text).ok()?;
        let on_disk = fs::metadata(self.store.path(&blob.digest)).ok()?;
        if on_disk.len() != blob.size {
            return None;
        }
        // Best effort: a cache another user owns still serves hits, it only
        // ages as if unused.
        let _ = file.set_modified(SystemTime::now());
        Some(blob)
    }

    /// Records `blob` under `key`.
    pub fn put(&self, key: &str, blob: &LayerBlob) -> Result<(), CacheError> {
        let io = |source| CacheError::Io {
            path: self.index.clone(),
            source,
        };
        let json = serde_json::to_vec(blob).map_err(|e| io(e.into()))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(&gpubox_oci::partial::prefix())
            .tempfile_in(&self.index)
            .map_err(io)?;
        tmp.write_all(&json).map_err(io)?;
        tmp.persist(self.index.join(format!("{key}.json")))
            .map_err(|e| io(e.error))?;
        Ok(())
    }

    /// What the cache holds. Under the shared lock, temporary files may belong
    /// to builds running now.
    pub fn info(&self) -> Result<CacheInfo, CacheError> {
        Ok(self.scan()?.info(self.store.root()))
    }

    /// Reads the index, the blob folder and the temporary files.
    fn scan(&self) -> Result<Scan, CacheError> {
        let mut entries = Vec::new();
        for (path, metadata) in list(&self.index)? {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.as_deref().is_some_and(is_partial) {
                continue;
            }
            if !metadata.is_file() || path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let blob = fs::read(&path)
                .ok()
                .and_then(|text| serde_json::from_slice::<LayerBlob>(&text).ok())
                .filter(|blob| {
                    fs::metadata(self.store.path(&blob.digest))
                        .is_ok_and(|on_disk| on_disk.len() == blob.size)
                });
            let last_used = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            entries.push(IndexEntry {
                path,
                blob,
                last_used,
            });
        }
        let blobs_dir = self.store.root().join("blobs").join("sha256");
        let blobs = list(&blobs_dir)?
            .into_iter()
            .map(|(path, metadata)| {
                let hex = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (hex, StoredFile::new(path, &metadata))
            })
            .collect();
        let mut temp_files = Vec::new();
        for dir in [self.store.root().join("tmp"), self.index.clone()] {
            for (path, metadata) in list(&dir)? {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                if name.as_deref().is_some_and(is_partial) {
                    temp_files.push(StoredFile::new(path, &metadata));
                }
            }
        }
        Ok(Scan {
            entries,
            blobs,
            temp_files,
        })
    }
}

impl ExclusiveLayerCache {
    /// What the cache holds; every temporary file in it is abandoned.
    pub fn info(&self) -> Result<CacheInfo, CacheError> {
        self.cache.info()
    }

    /// Removes index entries whose blob is missing or damaged, abandoned
    /// temporary files and blobs no entry refers to (such as top layers); then, with `max_size`, the least recently used entries and
    /// their blobs until the blobs left take at most `max_size` bytes. Images
    /// already written keep working: an OCI layout hard-links its blobs, and
    /// archives copy them.
    pub fn gc(&self, max_size: Option<u64>) -> Result<GcReport, CacheError> {
        let scan = self.cache.scan()?;
        let mut report = GcReport::default();
        for temp in &scan.temp_files {
            temp.remove()?;
            report.temp_files.add(temp.bytes);
        }
        let mut kept = Vec::new();
        for entry in scan.entries {
            match entry.blob {
                Some(blob) => kept.push((entry.path, entry.last_used, blob)),
                None => {
                    remove_path(&entry.path)?;
                    report.broken_entries += 1;
                }
            }
        }
        let mut users: HashMap<String, usize> = HashMap::new();
        for (_, _, blob) in &kept {
            *users.entry(blob.digest.hex().to_owned()).or_default() += 1;
        }
        let mut remaining = Tally::default();
        let mut blobs = HashMap::new();
        for (hex, blob) in scan.blobs {
            if users.contains_key(&hex) {
                remaining.add(blob.bytes);
                blobs.insert(hex, blob);
            } else {
                blob.remove()?;
                report.unreferenced_blobs.add(blob.bytes);
            }
        }
        if let Some(max_size) = max_size {
            // Oldest first; the path breaks ties so the order never depends on
            // the order the folder was listed in.
            kept.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
            for (path, _, blob) in &kept {
                if remaining.bytes <= max_size {
                    break;
                }
                remove_path(path)?;
                report.evicted_entries += 1;
                let hex = blob.digest.hex();
                let last_user = users.get_mut(hex).is_some_and(|n| {
                    *n -= 1;
                    *n == 0
                });
                if let Some(stored) = last_user.then(|| blobs.remove(hex)).flatten() {
                    stored.remove()?;
                    report.evicted_blobs.add(stored.bytes);
                    remaining.count -= 1;
                    remaining.bytes -= stored.bytes;
                }
            }
        }
        report.remaining_blobs = remaining;
        Ok(report)
    }
}

/// What a cache holds, as `gpubox cache info` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheInfo {
    pub root: PathBuf,
    /// Index entries, broken ones included.
    pub entries: u64,
    /// Entries whose blob is missing or has the wrong size.
    pub broken_entries: u64,
    /// Every blob in the store.
    pub blobs: Tally,
    /// Blobs some entry refers to.
    pub referenced: Tally,
    /// Blobs no entry refers to, such as top layers, which are never looked up
    /// again.
    pub unreferenced: Tally,
    /// Unfinished files, of running builds or of interrupted ones.
    pub temp_files: Tally,
}

/// What [`ExclusiveLayerCache::gc`] removed and what it left.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    /// Entries removed because their blob was missing or had the wrong size.
    pub broken_entries: u64,
    pub temp_files: Tally,
    pub unreferenced_blobs: Tally,
    /// Entries removed to get under the size limit, and the blobs only they
    /// referred to.
    pub evicted_entries: u64,
    pub evicted_blobs: Tally,
    /// The blobs left.
    pub remaining_blobs: Tally,
}

impl GcReport {
    /// Bytes freed in all.
    pub fn freed_bytes(&self) -> u64 {
        self.temp_files.bytes + self.unreferenced_blobs.bytes + self.evicted_blobs.bytes
    }
}

/// A number of files and their size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub count: u64,
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
    }
}

/// The cache's files as one listing found them.
struct Scan {
    entries: Vec<IndexEntry>,
    /// Blobs by file name (the digest's hex).
    blobs: HashMap<String, StoredFile>,
    temp_files: Vec<StoredFile>,
}

impl Scan {
    fn info(&self, root: &Path) -> CacheInfo {
        let referenced_hex: HashSet<&str> = self
            .entries
            .iter()
            .filter_map(|e| e.blob.as_ref().map(|b| b.digest.hex()))
            .collect();
        let mut info = CacheInfo {
            root: root.to_path_buf(),
            entries: self.entries.len() as u64,
            broken_entries: self.entries.iter().filter(|e| e.blob.is_none()).count() as u64,
            blobs: Tally::default(),
            referenced: Tally::default(),
            unreferenced: Tally::default(),
            temp_files: Tally::default(),
        };
        for (hex, blob) in &self.blobs {
            info.blobs.add(blob.bytes);
            if referenced_hex.contains(hex.as_str()) {
                info.referenced.add(blob.bytes);
            } else {
                info.unreferenced.add(blob.bytes);
            }
        }
        for temp in &self.temp_files {
            info.temp_files.add(temp.bytes);
        }
        info
    }
}

struct IndexEntry {
    path: PathBuf,
    /// The entry's layer, when it parses and its blob is intact.
    blob: Option<LayerBlob>,
    last_used: SystemTime,
}

/// A file (or, for temporary files, possibly a folder) in the cache.
struct StoredFile {
    path: PathBuf,
    bytes: u64,
    is_dir: bool,
}

impl StoredFile {
    fn new(path: PathBuf, metadata: &fs::Metadata) -> StoredFile {
        let is_dir = metadata.is_dir();
        let bytes = if is_dir { 0 } else { metadata.len() };
        StoredFile {
            path,
            bytes,
            is_dir,
        }
    }

    fn remove(&self) -> Result<(), CacheError> {
        if self.is_dir {
            ignore_missing(fs::remove_dir_all(&self.path), &self.path)
        } else {
            remove_path(&self.path)
        }
    }
}

/// Whether `name` is an unfinished file of some gpubox process.
fn is_partial(name: &str) -> bool {
    name.starts_with(PARTIAL_PREFIX)
}

/// The part of [`gpubox_oci::partial::prefix`] every process shares.
const PARTIAL_PREFIX: &str = ".gpubox-partial-";

fn remove_path(path: &Path) -> Result<(), CacheError> {
    ignore_missing(fs::remove_file(path), path)
}

/// Something already gone has been removed.
fn ignore_missing(result: io::Result<()>, path: &Path) -> Result<(), CacheError> {
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(CacheError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// The entries directly inside `dir` with their metadata (not following links).
fn list(dir: &Path) -> Result<Vec<(PathBuf, fs::Metadata)>, CacheError> {
    let io = |source| CacheError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        match entry.metadata() {
            Ok(metadata) => found.push((entry.path(), metadata)),
            // Removed between the listing and the look.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(found)
}

/// Takes `operation` (`LOCK_SH` or `LOCK_EX`) on `file`, waiting as long as it
/// takes.
fn flock(file: &File, operation: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock only reads the descriptor, which `file` keeps open.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// The entries of a layer holding `paths`: `/nix` and `/nix/store` (mode 0755),
/// then each store path's tree in order. Files inside store paths are written as
/// plain files even where the local store hard-links them: `nix-store --optimise`
/// decides those links per machine and a NAR has none, so honouring them would
/// make the same closure tar differently on two machines.
pub fn store_layer_entries(
    paths: &[StorePath],
) -> impl Iterator<Item = Result<Entry, WalkError>> + '_ {
    let mut sorted: Vec<&StorePath> = paths.iter().collect();
    sorted.sort();
    let parents = ["nix", "nix/store"].into_iter().map(|dir| {
        let path = ImagePath::new(dir).map_err(|e| WalkError::BadPath(e.to_string()))?;
        Ok(Entry::directory(path, 0o755))
    });
    let options = WalkOptions {
        mode: None,
        uid: 0,
        gid: 0,
        hard_links: false,
    };
    parents.chain(sorted.into_iter().flat_map(move |path| {
        let walked: Box<dyn Iterator<Item = Result<Entry, WalkError>>> =
            match ImagePath::new(path.as_str()) {
                Ok(dst) => Box::new(walk(Path::new(path.as_str()), dst, &options)),
                Err(e) => Box::new(std::iter::once(Err(WalkError::BadPath(e.to_string())))),
            };
        walked
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// A real uncompressed layer holding one file of `bytes` bytes, stored and
    /// indexed under `key`.
    fn cached_layer(cache: &LayerCache, key: &str, bytes: usize) -> LayerBlob {
        let path = ImagePath::new(key).unwrap();
        let entry = Entry::bytes(path, 0o644, vec![b'x'; bytes]);
        let blob = cache
            .store()
            .write_layer([Ok(entry)], Compression::None, 0, &|_| {})
            .unwrap();
        cache.put(key, &blob).unwrap();
        blob
    }

    fn set_last_used(root: &Path, key: &str, secs: u64) {
        let file = File::open(root.join("layers").join(format!("{key}.json"))).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    }

    fn last_used(root: &Path, key: &str) -> SystemTime {
        fs::metadata(root.join("layers").join(format!("{key}.json")))
            .unwrap()
            .modified()
            .unwrap()
    }

    /// Two good entries, a broken one, a config blob no entry refers to and a
    /// leftover temporary file in each of `tmp/` and `layers/`.
    struct Mixed {
        dir: tempfile::TempDir,
        good: [LayerBlob; 2],
        config: gpubox_oci::Digest,
    }

    fn mixed() -> Mixed {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path()).unwrap();
        let good = [
            cached_layer(&cache, "a", 100),
            cached_layer(&cache, "b", 3000),
        ];
        let broken = cached_layer(&cache, "broken", 10);
        fs::remove_file(cache.store().path(&broken.digest)).unwrap();
        let config = cache.store().write_bytes(b"{\"config\":1}").unwrap();
        fs::write(dir.path().join("tmp/.gpubox-partial-1-blob"), [0; 7]).unwrap();
        fs::write(dir.path().join("layers/.gpubox-partial-1-x.json"), [0; 5]).unwrap();
        Mixed { dir, good, config }
    }

    #[test]
    fn info_counts_entries_blobs_and_temp_files() {
        let mixed = mixed();
        let info = LayerCache::open(mixed.dir.path()).unwrap().info().unwrap();
        let good_bytes = mixed.good[0].size + mixed.good[1].size;
        assert_eq!(info.root, mixed.dir.path());
        assert_eq!(info.entries, 3);
        assert_eq!(info.broken_entries, 1);
        assert_eq!(info.blobs.count, 3);
        assert_eq!(info.blobs.bytes, good_bytes + 12);
        assert_eq!(
            info.referenced,
            Tally {
                count: 2,
                bytes: good_bytes
            }
        );
        assert_eq!(
            info.unreferenced,
            Tally {
                count: 1,
                bytes: 12
            }
        );
        assert_eq!(
            info.temp_files,
            Tally {
                count: 2,
                bytes: 12
            }
        );
    }

    #[test]
    fn gc_keeps_referenced_blobs_and_removes_the_rest() {
        let mixed = mixed();
        let root = mixed.dir.path();
        let report = LayerCache::open_exclusive(root).unwrap().gc(None).unwrap();
        assert_eq!(report.broken_entries, 1);
        assert_eq!(
            report.temp_files,
            Tally {
                count: 2,
                bytes: 12
            }
        );
        assert_eq!(
            report.unreferenced_blobs,
            Tally {
                count: 1,
                bytes: 12
            }
        );
        assert_eq!(report.evicted_entries, 0);
        assert_eq!(report.freed_bytes(), 24);
        assert_eq!(report.remaining_blobs.count, 2);

        let cache = LayerCache::open(root).unwrap();
        assert!(!cache.store().contains(&mixed.config));
        assert!(!root.join("layers/broken.json").exists());
        assert!(!root.join("tmp/.gpubox-partial-1-blob").exists());
        assert!(!root.join("layers/.gpubox-partial-1-x.json").exists());
        assert_eq!(cache.get("a").as_ref(), Some(&mixed.good[0]));
        assert_eq!(cache.get("b").as_ref(), Some(&mixed.good[1]));
        let info = cache.info().unwrap();
        assert_eq!((info.entries, info.unreferenced.count), (2, 0));
    }

    #[test]
    fn gc_with_a_size_limit_evicts_the_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let cache = LayerCache::open(root).unwrap();
        let old = cached_layer(&cache, "old", 5000);
        let middle = cached_layer(&cache, "middle", 100);
        let recent = cached_layer(&cache, "recent", 200);
        set_last_used(root, "old", 1_000);
        set_last_used(root, "middle", 2_000);
        set_last_used(root, "recent", 3_000);
        drop(cache);

        let limit = middle.size + recent.size;
        let report = LayerCache::open_exclusive(root)
            .unwrap()
            .gc(Some(limit))
            .unwrap();
        assert_eq!(report.evicted_entries, 1);
        assert_eq!(
            report.evicted_blobs,
            Tally {
                count: 1,
                bytes: old.size
            }
        );
        assert_eq!(
            report.remaining_blobs,
            Tally {
                count: 2,
                bytes: limit
            }
        );
        let cache = LayerCache::open(root).unwrap();
        assert_eq!(cache.get("old"), None);
        assert!(!cache.store().contains(&old.digest));
        assert_eq!(cache.get("middle"), Some(middle));
        assert_eq!(cache.get("recent"), Some(recent));
        drop(cache);

        // A limit of nothing empties the cache.
        let report = LayerCache::open_exclusive(root)
            .unwrap()
            .gc(Some(0))
            .unwrap();
        assert_eq!(report.evicted_entries, 2);
        assert_eq!(report.remaining_blobs, Tally::default());
        let info = LayerCache::open(root).unwrap().info().unwrap();
        assert_eq!((info.entries, info.blobs.count), (0, 0));
    }

    #[test]
    fn a_hit_marks_the_entry_as_just_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path()).unwrap();
        let blob = cached_layer(&cache, "k", 10);
        set_last_used(dir.path(), "k", 1_000);
        assert!(cache.get("k").is_some());
        let used = last_used(dir.path(), "k");
        assert!(
            used > SystemTime::now() - Duration::from_secs(60),
            "{used:?}"
        );
        // A miss (here: a damaged blob) does not count as a use.
        set_last_used(dir.path(), "k", 1_000);
        fs::write(cache.store().path(&blob.digest), b"short").unwrap();
        assert_eq!(cache.get("k"), None);
        assert_eq!(
            last_used(dir.path(), "k"),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000)
        );
    }

    #[test]
    fn gc_waits_for_open_builds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let build = LayerCache::open(&root).unwrap();
        // A second build shares the lock at once.
        drop(LayerCache::open(&root).unwrap());
        let finished = Arc::new(AtomicBool::new(false));
        let gc = std::thread::spawn({
            let finished = Arc::clone(&finished);
            move || {
                let report = LayerCache::open_exclusive(&root).unwrap().gc(None);
                finished.store(true, Ordering::SeqCst);
                report
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !finished.load(Ordering::SeqCst),
            "gc ran while a build held the cache"
        );
        drop(build);
        gc.join().unwrap().unwrap();
        assert!(finished.load(Ordering::SeqCst));
    }
}
