//! The layer cache: built store-path layers found again by what they hold,
//! images pulled from registries, images built into container engines, and
//! what base layers hold at the account files, all beside the [`BlobStore`]
//! that holds their bytes.
//!
//! Nix store paths never change once they exist, so a layer is fully described by
//! the store paths in it, the compression and the mtime its entries carry (plus the
//! version of gpubox's tar format). That description, hashed, is the cache key; the
//! value is the [`LayerBlob`] whose bytes live in the blob store. A rebuild where
//! one small path changed re-tars only the layer holding it.
//!
//! The folder holds:
//! - `layers/KEY.json`: a layer entry, one [`LayerBlob`];
//! - `images/HEX.json`: a pulled image's entry, named by its manifest digest and
//!   listing the config and layers the manifest names, so a rebuild on a
//!   registry base finds all of them and downloads nothing;
//! - `built/KEY.json`: an image a build wrote to a container engine
//!   ([`BuiltRecord`]), its manifest and config stored as blobs, KEY a hash of
//!   where it was written; so pushing that engine's image sends the
//!   compressed layers and the manifest the build made, found by the config
//!   digest the engine reports. Writing the same engine image again replaces
//!   the record, so the records of images since replaced do not pile up;
//! - `base-files/LAYER-KEY.json`: what the base layer with digest `sha256:LAYER`
//!   holds at some paths ([`LayerFiles`]), so a rebuild does not read the
//!   layer again; it lives as long as that layer's blob;
//! - `blobs/sha256/`, `tmp/`: the [`BlobStore`].
//!
//! Entries are written to a pending file and renamed into place (not synced,
//! like the blobs: [`gpubox_atomic`] with `sync(false)`), and a hit is
//! only trusted when its blobs are still in the store with the recorded sizes, so
//! an interrupted build or a pruned blob folder never yields a corrupt image.
//!
//! Builds, pulls and garbage collection share the folder through an advisory
//! lock on `<root>/lock`: every open [`LayerCache`] holds it shared, so builds
//! and pulls run side by side, and [`LayerCache::open_exclusive`] holds it
//! exclusively, so collection waits for them and those started meanwhile wait
//! for it. Only under the exclusive lock are leftover temporary files known to
//! be abandoned, and blobs no entry names known to be unwanted. The lock is
//! `flock(2)` through `libc` rather than `File::lock`, which needs Rust 1.89
//! while the workspace supports 1.85; being tied to the open file, it is
//! released when the cache is dropped or the process dies, so a killed build
//! never leaves the cache locked.
//!
//! A hit on a layer, every pull of an image and every use of a built image's
//! record refreshes its entry's mtime, which makes that mtime the entry's last
//! use: [`ExclusiveLayerCache::gc`] evicts the least recently used entries
//! first, layers and images alike.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use gpubox_atomic::partial::is_partial;
use gpubox_atomic::Options;
use gpubox_nix::{StorePath, UnpackedPaths};
use gpubox_oci::blob::{BlobError, BlobStore, LayerBlob};
use gpubox_oci::image::{BuiltImage, Descriptor, CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use gpubox_oci::source::LayerFiles;
use gpubox_oci::tar::{walk, Modes, WalkError, WalkOptions};
use gpubox_oci::{Compression, Digest, Entry, ImagePath};
use sha2::{Digest as _, Sha256};

/// Bumped whenever the bytes gpubox writes for the same inputs change, so old
/// cache entries are never mistaken for new ones.
const LAYER_FORMAT_VERSION: &str = "gpubox-store-layer-v2";

/// Bumped when what [`ImageReader::layer_files`] records changes, so old
/// records are not mistaken for new ones.
///
/// [`ImageReader::layer_files`]: gpubox_oci::source::ImageReader::layer_files
const BASE_FILES_VERSION: &str = "gpubox-base-files-v2";

/// Bumped when what a [`BuiltRecord`] holds changes.
const BUILT_VERSION: &str = "gpubox-built-image-v1";

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

/// Built layers, pulled images and the blob store that holds their bytes,
/// held open under the cache's lock (shared, or exclusive for
/// [`ExclusiveLayerCache`]).
pub struct LayerCache {
    store: BlobStore,
    /// `layers/`: layer entries.
    index: PathBuf,
    /// `images/`: pulled images' entries.
    images: PathBuf,
    /// `base-files/`: what base layers hold at some paths.
    base_files: PathBuf,
    /// `built/`: images built into container engines.
    built: PathBuf,
    /// Holds the lock for as long as the cache is open.
    _lock: File,
}

/// A cache opened with [`LayerCache::open_exclusive`]: no build or pull is
/// using it, so it may be collected.
pub struct ExclusiveLayerCache {
    cache: LayerCache,
}

/// A pulled image's entry: the blobs its manifest names.
#[derive(serde::Serialize, serde::Deserialize)]
struct ImageRecord {
    blobs: Vec<Descriptor>,
}

/// An image a build wrote to a container engine, as the build made it: its
/// manifest and config (both in the blob store) and its layers (compressed
/// blobs, with the diff_ids an engine reports them by).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuiltRecord {
    /// Where the build wrote it, as the user named it (`podman:demo:v1`).
    pub written_to: String,
    pub manifest: Descriptor,
    pub config: Descriptor,
    /// Bottom first, as the manifest names them.
    pub layers: Vec<LayerBlob>,
}

impl BuiltRecord {
    /// The blobs the record names (digest and size): manifest, config,
    /// layers.
    fn blobs(&self) -> impl Iterator<Item = (&Digest, u64)> {
        [&self.manifest, &self.config]
            .into_iter()
            .map(|d| (&d.digest, d.size))
            .chain(self.layers.iter().map(|l| (&l.digest, l.size)))
    }

    /// The diff_ids of its layers, bottom first.
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }
}

impl LayerCache {
    /// Opens (creating if needed) the cache rooted at `root`, sharing it with
    /// other builds and pulls; waits while a collection holds it.
    pub fn open(root: &Path) -> Result<LayerCache, CacheError> {
        LayerCache::open_locked(root, libc::LOCK_SH)
    }

    /// Opens (creating if needed) the cache rooted at `root` for collection;
    /// waits until no build, pull or other collection holds it.
    pub fn open_exclusive(root: &Path) -> Result<ExclusiveLayerCache, CacheError> {
        let cache = LayerCache::open_locked(root, libc::LOCK_EX)?;
        Ok(ExclusiveLayerCache { cache })
    }

    fn open_locked(root: &Path, operation: libc::c_int) -> Result<LayerCache, CacheError> {
        let store = BlobStore::open(root)?;
        let [index, images, base_files, built] =
            ["layers", "images", "base-files", "built"].map(|name| root.join(name));
        for dir in [&index, &images, &base_files, &built] {
            fs::create_dir_all(dir).map_err(|source| CacheError::Io {
                path: dir.clone(),
                source,
            })?;
        }
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
            images,
            base_files,
            built,
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

    /// The key of a layer of files (`copyToRoot`, `hostBinaries`, generated)
    /// whose uncompressed tar has digest `diff_id`: its content decides it.
    pub fn content_key(diff_id: &Digest, compression: Compression) -> String {
        let mut hasher = Sha256::new();
        hasher.update(LAYER_FORMAT_VERSION);
        hasher.update([0]);
        hasher.update(compression.to_string());
        hasher.update([0]);
        hasher.update(diff_id.to_string());
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
        let (file, blob) = self.entry(key)?;
        // Best effort: a cache another user owns still serves hits, it only
        // ages as if unused.
        let _ = file.set_modified(SystemTime::now());
        Some(blob)
    }

    /// The entry under `key` (its open file and its layer), if it and its blob
    /// are still there.
    fn entry(&self, key: &str) -> Option<(File, LayerBlob)> {
        let mut file = File::open(self.index.join(format!("{key}.json"))).ok()?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).ok()?;
        let blob: LayerBlob = serde_json::from_slice(&text).ok()?;
        self.is_intact(&blob.digest, blob.size)
            .then_some((file, blob))
    }

    /// Whether the layer with digest `digest` is stored under `key`, blob and
    /// all; unlike [`LayerCache::get`], asking does not count as a use.
    pub fn holds(&self, key: &str, digest: &Digest) -> bool {
        self.entry(key)
            .is_some_and(|(_, blob)| blob.digest == *digest)
    }

    /// Records `blob` under `key`.
    pub fn put(&self, key: &str, blob: &LayerBlob) -> Result<(), CacheError> {
        self.write_record(&self.index, &format!("{key}.json"), blob)
    }

    /// Records the pulled image whose manifest has digest `manifest` and names
    /// `blobs` (its config and layers, already in the store), marking it as
    /// just used: collection keeps those blobs while the entry stays.
    pub fn put_image(&self, manifest: &Digest, blobs: &[Descriptor]) -> Result<(), CacheError> {
        let record = ImageRecord {
            blobs: blobs.to_vec(),
        };
        self.write_record(&self.images, &format!("{}.json", manifest.hex()), &record)
    }

    /// Records `image`, which a build wrote to `written_to` (a container
    /// engine's image, `podman:demo:v1`): its manifest and config go into
    /// the blob store beside its layers, and the record replaces any earlier
    /// one for the same place.
    pub fn put_built(&self, written_to: &str, image: &BuiltImage) -> Result<(), CacheError> {
        self.store.write_bytes(&image.manifest)?;
        self.store.write_bytes(&image.config)?;
        let descriptor = |media_type: &str, digest: &Digest, size: usize| Descriptor {
            media_type: media_type.to_owned(),
            digest: digest.clone(),
            size: size as u64,
            annotations: BTreeMap::new(),
        };
        let record = BuiltRecord {
            written_to: written_to.to_owned(),
            manifest: descriptor(
                MANIFEST_MEDIA_TYPE,
                &image.manifest_digest,
                image.manifest.len(),
            ),
            config: descriptor(CONFIG_MEDIA_TYPE, &image.config_digest, image.config.len()),
            layers: image.layers.clone(),
        };
        self.write_record(&self.built, &built_name(written_to), &record)
    }

    /// The built image whose config has digest `config`, when its record and
    /// every blob it names are intact; the most recently used when several
    /// places hold it. A hit marks the record as just used.
    pub fn built_image(&self, config: &Digest) -> Option<BuiltRecord> {
        let (path, record) = self
            .built_records()
            .into_iter()
            .find(|(_, record)| record.config.digest == *config && self.is_whole(record))?;
        touch(&path);
        Some(record)
    }

    /// The built image whose layers are the bottom of `diff_ids` (all of
    /// them, or the layers an engine's image was made on), the one with the
    /// most layers first; for saying how an engine's image differs from what
    /// gpubox built. Its blobs may be gone.
    pub fn built_under(&self, diff_ids: &[Digest]) -> Option<BuiltRecord> {
        self.built_records()
            .into_iter()
            .map(|(_, record)| record)
            .filter(|record| {
                !record.layers.is_empty()
                    && record.layers.len() <= diff_ids.len()
                    && record.diff_ids() == diff_ids[..record.layers.len()]
            })
            .max_by_key(|record| record.layers.len())
    }

    /// The compressed blob the cache holds for each of `diff_ids` it has one
    /// for (intact): from built images' records first (the compression last
    /// built with), then from layer entries. Hits mark nothing as used.
    pub fn layers_by_diff_id(&self, diff_ids: &[Digest]) -> HashMap<Digest, LayerBlob> {
        let wanted: HashSet<&Digest> = diff_ids.iter().collect();
        let mut found: HashMap<Digest, LayerBlob> = HashMap::new();
        let take = |found: &mut HashMap<Digest, LayerBlob>, blob: &LayerBlob| {
            if wanted.contains(&blob.diff_id)
                && !found.contains_key(&blob.diff_id)
                && self.is_intact(&blob.digest, blob.size)
            {
                found.insert(blob.diff_id.clone(), blob.clone());
            }
        };
        for (_, record) in self.built_records() {
            for blob in &record.layers {
                take(&mut found, blob);
            }
        }
        if found.len() < wanted.len() {
            for (path, _) in list(&self.index).unwrap_or_default() {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                if name.is_none_or(|n| is_partial(&n) || !n.ends_with(".json")) {
                    continue;
                }
                let blob = fs::read(&path)
                    .ok()
                    .and_then(|text| serde_json::from_slice::<LayerBlob>(&text).ok());
                if let Some(blob) = blob {
                    take(&mut found, &blob);
                }
            }
        }
        found
    }

    /// The built images' records that parse, most recently used first.
    fn built_records(&self) -> Vec<(PathBuf, BuiltRecord)> {
        let mut records: Vec<(SystemTime, PathBuf, BuiltRecord)> = list(&self.built)
            .unwrap_or_default()
            .into_iter()
            .filter(|(path, metadata)| {
                metadata.is_file()
                    && path
                        .file_name()
                        .map(|n| n.to_string_lossy())
                        .is_some_and(|n| !is_partial(&n) && n.ends_with(".json"))
            })
            .filter_map(|(path, metadata)| {
                let record = serde_json::from_slice(&fs::read(&path).ok()?).ok()?;
                let used = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                Some((used, path, record))
            })
            .collect();
        records.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        records
            .into_iter()
            .map(|(_, path, record)| (path, record))
            .collect()
    }

    /// Whether every blob `record` names is in the store with its size.
    fn is_whole(&self, record: &BuiltRecord) -> bool {
        record
            .blobs()
            .all(|(digest, size)| self.is_intact(digest, size))
    }

    /// What the base layer `layer` holds at `wanted`, as recorded by
    /// [`LayerCache::put_base_files`]; `None` when nothing (readable) is.
    pub fn base_files(&self, layer: &Digest, wanted: &[&str]) -> Option<LayerFiles> {
        let record = self.base_files.join(base_files_name(layer, wanted));
        let bytes = fs::read(record).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records what the base layer `layer` holds at `wanted`. The record is
    /// collected once the layer's blob has left the store.
    pub fn put_base_files(
        &self,
        layer: &Digest,
        wanted: &[&str],
        files: &LayerFiles,
    ) -> Result<(), CacheError> {
        self.write_record(&self.base_files, &base_files_name(layer, wanted), files)
    }

    /// Writes `value` as JSON to `dir/name` through a pending file beside it.
    fn write_record(
        &self,
        dir: &Path,
        name: &str,
        value: &impl serde::Serialize,
    ) -> Result<(), CacheError> {
        let path = dir.join(name);
        let io = |source| CacheError::Io {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec(value).map_err(|e| io(e.into()))?;
        gpubox_atomic::write_bytes(&path, &RECORD_OPTIONS, &json).map_err(|e| io(e.into_parts().2))
    }

    /// Whether the store holds blob `digest` with `size` bytes.
    fn is_intact(&self, digest: &Digest, size: u64) -> bool {
        fs::metadata(self.store.path(digest)).is_ok_and(|on_disk| on_disk.len() == size)
    }

    /// What the cache holds. Under the shared lock, temporary files may belong
    /// to builds running now.
    pub fn info(&self) -> Result<CacheInfo, CacheError> {
        Ok(self.scan()?.info(self.store.root()))
    }

    /// The entry at `path`, with its blobs when it parses and all of them are
    /// intact.
    fn read_entry(&self, path: PathBuf, metadata: &fs::Metadata, kind: EntryKind) -> IndexEntry {
        let blobs = fs::read(&path)
            .ok()
            .and_then(|text| kind.blobs(&text))
            .filter(|blobs| blobs.iter().all(|(d, size)| self.is_intact(d, *size)))
            .map(|blobs| blobs.into_iter().map(|(d, _)| d.hex().to_owned()).collect());
        IndexEntry {
            path,
            kind,
            blobs,
            last_used: metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }

    /// Reads the entries, the blob folder, the base-files records and the
    /// temporary files.
    fn scan(&self) -> Result<Scan, CacheError> {
        let mut entries = Vec::new();
        let mut temp_files = Vec::new();
        let mut base_files = Vec::new();
        for (dir, kind) in [
            (&self.index, Some(EntryKind::Layer)),
            (&self.images, Some(EntryKind::Image)),
            (&self.built, Some(EntryKind::Built)),
            (&self.base_files, None),
        ] {
            for (path, metadata) in list(dir)? {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if is_partial(&name) {
                    temp_files.push(StoredFile::new(path, &metadata));
                    continue;
                }
                let Some(stem) = name.strip_suffix(".json").filter(|_| metadata.is_file()) else {
                    continue;
                };
                match kind {
                    Some(kind) => entries.push(self.read_entry(path, &metadata, kind)),
                    None => {
                        let layer = stem
                            .split_once('-')
                            .map(|(layer, _)| layer.to_owned())
                            .filter(|layer| layer.len() == 64);
                        base_files.push((layer, StoredFile::new(path, &metadata)));
                    }
                }
            }
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
        for (path, metadata) in list(&self.store.root().join("tmp"))? {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.as_deref().is_some_and(is_partial) {
                temp_files.push(StoredFile::new(path, &metadata));
            }
        }
        Ok(Scan {
            entries,
            blobs,
            base_files,
            temp_files,
        })
    }
}

impl ExclusiveLayerCache {
    /// What the cache holds; every temporary file in it is abandoned.
    pub fn info(&self) -> Result<CacheInfo, CacheError> {
        self.cache.info()
    }

    /// Removes entries whose blobs are missing or damaged, abandoned temporary
    /// files and blobs no entry refers to (such as top layers written only to
    /// files or registries); then, with `max_size`, the least recently used
    /// entries, layers, pulled and built images alike, and the blobs only
    /// they used, until the blobs left take at most
    /// `max_size` bytes; last, the base-files records whose layer's blob is
    /// gone. Images already written keep working: an OCI layout hard-links
    /// its blobs, and archives copy them.
    pub fn gc(&self, max_size: Option<u64>) -> Result<GcReport, CacheError> {
        let scan = self.cache.scan()?;
        let mut report = GcReport::default();
        for temp in &scan.temp_files {
            temp.remove()?;
            report.temp_files.add(temp.bytes);
        }
        let mut kept = Vec::new();
        for entry in scan.entries {
            match entry.blobs {
                Some(blobs) => kept.push((entry.last_used, entry.path, entry.kind, blobs)),
                None => {
                    remove_path(&entry.path)?;
                    *report.broken(entry.kind) += 1;
                }
            }
        }
        let mut users: HashMap<String, usize> = HashMap::new();
        for (_, _, _, blobs) in &kept {
            for hex in blobs {
                *users.entry(hex.clone()).or_default() += 1;
            }
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
            kept.sort();
            for (_, path, kind, entry_blobs) in &kept {
                if remaining.bytes <= max_size {
                    break;
                }
                remove_path(path)?;
                *report.evicted(*kind) += 1;
                for hex in entry_blobs {
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
        }
        for (layer, record) in &scan.base_files {
            // A record of an older naming has no layer, and is never read.
            if layer.as_ref().is_none_or(|hex| !blobs.contains_key(hex)) {
                record.remove()?;
                report.base_files.add(record.bytes);
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
    /// Layer entries, broken ones included.
    pub entries: u64,
    /// Layer entries whose blob is missing or has the wrong size.
    pub broken_entries: u64,
    /// Pulled images' entries, broken ones included.
    pub images: u64,
    /// Pulled images' entries with a blob missing or of the wrong size.
    pub broken_images: u64,
    /// Records of images built into container engines, broken ones included.
    pub built_images: u64,
    /// Built images' records with a blob missing or of the wrong size.
    pub broken_built_images: u64,
    /// Records of what base layers hold at the account files.
    pub base_files: Tally,
    /// Every blob in the store.
    pub blobs: Tally,
    /// Blobs some layer or image entry refers to.
    pub referenced: Tally,
    /// Blobs no entry refers to, such as top layers written only to files or
    /// registries, which are never looked up again.
    pub unreferenced: Tally,
    /// Unfinished files, of running builds or of interrupted ones.
    pub temp_files: Tally,
}

/// What [`ExclusiveLayerCache::gc`] removed and what it left.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    /// Layer entries removed because their blob was missing or had the wrong
    /// size.
    pub broken_entries: u64,
    /// Image entries removed because one of their blobs was.
    pub broken_images: u64,
    /// Built images' records removed because one of their blobs was.
    pub broken_built_images: u64,
    pub temp_files: Tally,
    pub unreferenced_blobs: Tally,
    /// Layer and image entries removed to get under the size limit, and the
    /// blobs only they referred to.
    pub evicted_entries: u64,
    pub evicted_images: u64,
    pub evicted_built_images: u64,
    pub evicted_blobs: Tally,
    /// Base-files records whose layer's blob is gone.
    pub base_files: Tally,
    /// The blobs left.
    pub remaining_blobs: Tally,
}

impl GcReport {
    /// Bytes freed in all.
    pub fn freed_bytes(&self) -> u64 {
        self.temp_files.bytes
            + self.unreferenced_blobs.bytes
            + self.evicted_blobs.bytes
            + self.base_files.bytes
    }

    fn broken(&mut self, kind: EntryKind) -> &mut u64 {
        match kind {
            EntryKind::Layer => &mut self.broken_entries,
            EntryKind::Image => &mut self.broken_images,
            EntryKind::Built => &mut self.broken_built_images,
        }
    }

    fn evicted(&mut self, kind: EntryKind) -> &mut u64 {
        match kind {
            EntryKind::Layer => &mut self.evicted_entries,
            EntryKind::Image => &mut self.evicted_images,
            EntryKind::Built => &mut self.evicted_built_images,
        }
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
    /// Base-files records, with the hex of their layer's digest when their
    /// name carries one.
    base_files: Vec<(Option<String>, StoredFile)>,
    temp_files: Vec<StoredFile>,
}

impl Scan {
    fn info(&self, root: &Path) -> CacheInfo {
        let referenced_hex: HashSet<&str> = self
            .entries
            .iter()
            .filter_map(|e| e.blobs.as_ref())
            .flatten()
            .map(String::as_str)
            .collect();
        let count = |kind: EntryKind, broken: bool| {
            self.entries
                .iter()
                .filter(|e| e.kind == kind && (!broken || e.blobs.is_none()))
                .count() as u64
        };
        let mut info = CacheInfo {
            root: root.to_path_buf(),
            entries: count(EntryKind::Layer, false),
            broken_entries: count(EntryKind::Layer, true),
            images: count(EntryKind::Image, false),
            broken_images: count(EntryKind::Image, true),
            built_images: count(EntryKind::Built, false),
            broken_built_images: count(EntryKind::Built, true),
            base_files: Tally::default(),
            blobs: Tally::default(),
            referenced: Tally::default(),
            unreferenced: Tally::default(),
            temp_files: Tally::default(),
        };
        for (_, record) in &self.base_files {
            info.base_files.add(record.bytes);
        }
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

/// What an entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum EntryKind {
    /// One built or copied layer (`layers/`).
    Layer,
    /// A pulled image's config and layers (`images/`).
    Image,
    /// An image built into a container engine (`built/`).
    Built,
}

impl EntryKind {
    /// The blobs (digest and size) an entry of this kind names, without
    /// repeats; `None` when it does not parse.
    fn blobs(self, text: &[u8]) -> Option<Vec<(Digest, u64)>> {
        let mut named: Vec<(Digest, u64)> = match self {
            EntryKind::Layer => {
                let blob: LayerBlob = serde_json::from_slice(text).ok()?;
                vec![(blob.digest, blob.size)]
            }
            EntryKind::Image => {
                let record: ImageRecord = serde_json::from_slice(text).ok()?;
                record
                    .blobs
                    .into_iter()
                    .map(|blob| (blob.digest, blob.size))
                    .collect()
            }
            EntryKind::Built => {
                let record: BuiltRecord = serde_json::from_slice(text).ok()?;
                record.blobs().map(|(d, size)| (d.clone(), size)).collect()
            }
        };
        named.sort_by(|a, b| a.0.hex().cmp(b.0.hex()));
        named.dedup_by(|a, b| a.0 == b.0);
        Some(named)
    }
}

struct IndexEntry {
    path: PathBuf,
    kind: EntryKind,
    /// The hex digests of the entry's blobs, when it parses and every one of
    /// them is intact.
    blobs: Option<Vec<String>>,
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

/// `LAYER-KEY.json`, the name of the record of what base layer `layer` holds
/// at `wanted`: the layer's digest first, so collection can tell whose record
/// it is; the key says which paths were read.
fn base_files_name(layer: &Digest, wanted: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(BASE_FILES_VERSION);
    for path in wanted {
        hasher.update([0]);
        hasher.update(path);
    }
    format!("{}-{}.json", layer.hex(), hex::encode(hasher.finalize()))
}

/// `KEY.json`, the name of the record of the image built to `written_to`.
fn built_name(written_to: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(BUILT_VERSION);
    hasher.update([0]);
    hasher.update(written_to);
    format!("{}.json", hex::encode(hasher.finalize()))
}

/// Marks the record at `path` as just used. Best effort: a cache another user
/// owns still serves hits, it only ages as if unused.
fn touch(path: &Path) {
    if let Ok(file) = File::open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// How records are written: private to the cache's owner (a base-files record
/// may hold a base image's `/etc/shadow`), and not synced, like the blobs: a hit
/// is only trusted once its blobs check out.
const RECORD_OPTIONS: Options = Options::new().mode(0o600).sync(false);

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
/// make the same closure tar differently on two machines. A path in `unpacked`
/// is read from its copy there (see [`UnpackedPaths`]), else from the store.
pub fn store_layer_entries<'a>(
    paths: &'a [StorePath],
    unpacked: &'a UnpackedPaths,
) -> impl Iterator<Item = Result<Entry, WalkError>> + 'a {
    let mut sorted: Vec<&StorePath> = paths.iter().collect();
    sorted.sort();
    let parents = ["nix", "nix/store"].into_iter().map(|dir| {
        let path = ImagePath::new(dir).map_err(|e| WalkError::BadPath(e.to_string()))?;
        Ok(Entry::directory(path, 0o755))
    });
    let options = WalkOptions {
        // The store's modes, so an unpacked copy reads as the store would.
        modes: Modes::Store,
        uid: 0,
        gid: 0,
        hard_links: false,
    };
    parents.chain(sorted.into_iter().flat_map(move |path| {
        let walked: Box<dyn Iterator<Item = Result<Entry, WalkError>>> =
            match ImagePath::new(path.as_str()) {
                Ok(dst) => {
                    let src = unpacked.get(path).unwrap_or(Path::new(path.as_str()));
                    Box::new(walk(src, dst, &options))
                }
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
        set_mtime(&root.join("layers").join(format!("{key}.json")), secs);
    }

    fn set_mtime(path: &Path, secs: u64) {
        let file = File::open(path).unwrap();
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

    /// A descriptor of a blob written to `cache`'s store.
    fn stored(cache: &LayerCache, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: "application/octet-stream".to_owned(),
            digest: cache.store().write_bytes(bytes).unwrap(),
            size: bytes.len() as u64,
            annotations: Default::default(),
        }
    }

    fn image_entry(root: &Path, manifest: &Digest) -> PathBuf {
        root.join("images").join(format!("{}.json", manifest.hex()))
    }

    #[test]
    fn a_pulled_image_keeps_its_blobs_until_it_is_evicted_whole() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let cache = LayerCache::open(root).unwrap();
        let config = stored(&cache, b"{\"os\":\"linux\"}");
        let base_layer = cached_layer(&cache, "base", 300);
        let shared = Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar".to_owned(),
            digest: base_layer.digest.clone(),
            size: base_layer.size,
            annotations: Default::default(),
        };
        let own = stored(&cache, &[7; 2000]);
        let manifest = Digest::of(b"a manifest");
        cache
            .put_image(&manifest, &[config.clone(), shared, own.clone()])
            .unwrap();
        let info = cache.info().unwrap();
        assert_eq!((info.entries, info.images, info.broken_images), (1, 1, 0));
        assert_eq!(info.referenced.count, 3);
        assert_eq!(info.unreferenced.count, 0);
        drop(cache);

        // Collection keeps everything an entry names.
        let report = LayerCache::open_exclusive(root).unwrap().gc(None).unwrap();
        assert_eq!(report.unreferenced_blobs, Tally::default());
        assert_eq!(report.remaining_blobs.count, 3);

        // The image was used longest ago: it goes first, with the blobs only
        // it used; the layer entry keeps the layer they share.
        set_mtime(&image_entry(root, &manifest), 1_000);
        set_last_used(root, "base", 2_000);
        let report = LayerCache::open_exclusive(root)
            .unwrap()
            .gc(Some(base_layer.size))
            .unwrap();
        assert_eq!((report.evicted_images, report.evicted_entries), (1, 0));
        assert_eq!(
            report.evicted_blobs,
            Tally {
                count: 2,
                bytes: config.size + own.size
            }
        );
        let cache = LayerCache::open(root).unwrap();
        assert!(!cache.store().contains(&config.digest));
        assert!(!cache.store().contains(&own.digest));
        assert_eq!(cache.get("base"), Some(base_layer));
        assert_eq!(cache.info().unwrap().images, 0);
    }

    #[test]
    fn pulling_again_marks_the_image_as_just_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path()).unwrap();
        let config = stored(&cache, b"{}");
        let manifest = Digest::of(b"m");
        cache
            .put_image(&manifest, std::slice::from_ref(&config))
            .unwrap();
        let entry = image_entry(dir.path(), &manifest);
        set_mtime(&entry, 1_000);
        cache.put_image(&manifest, &[config]).unwrap();
        let used = fs::metadata(&entry).unwrap().modified().unwrap();
        assert!(
            used > SystemTime::now() - Duration::from_secs(60),
            "{used:?}"
        );
    }

    #[test]
    fn an_image_missing_a_blob_is_broken_and_its_other_blobs_go() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let cache = LayerCache::open(root).unwrap();
        let config = stored(&cache, b"{}");
        let layer = stored(&cache, &[1; 50]);
        let manifest = Digest::of(b"m");
        cache
            .put_image(&manifest, &[config.clone(), layer.clone()])
            .unwrap();
        fs::remove_file(cache.store().path(&layer.digest)).unwrap();
        let info = cache.info().unwrap();
        assert_eq!((info.images, info.broken_images), (1, 1));
        drop(cache);

        let report = LayerCache::open_exclusive(root).unwrap().gc(None).unwrap();
        assert_eq!(report.broken_images, 1);
        assert_eq!(report.unreferenced_blobs.count, 1);
        assert!(!image_entry(root, &manifest).exists());
        assert!(!root.join("blobs/sha256").join(config.digest.hex()).exists());
    }

    #[test]
    fn base_files_records_live_as_long_as_their_layer_blob() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let cache = LayerCache::open(root).unwrap();
        let wanted = ["etc/passwd", "etc/group"];
        let kept = cached_layer(&cache, "kept", 100);
        let evicted = cached_layer(&cache, "evicted", 5000);
        let gone = Digest::of(b"a layer that was never stored");
        let mut files = LayerFiles::new();
        files.insert(
            "etc/passwd".to_owned(),
            gpubox_oci::source::LayerFile::Removed,
        );
        for layer in [&kept.digest, &evicted.digest, &gone] {
            cache.put_base_files(layer, &wanted, &files).unwrap();
        }
        assert_eq!(cache.base_files(&kept.digest, &wanted), Some(files.clone()));
        // Other paths are another record.
        assert_eq!(cache.base_files(&kept.digest, &["etc/passwd"]), None);
        // A record named as before records carried their layer.
        fs::write(
            root.join("base-files")
                .join(format!("{}.json", "a".repeat(64))),
            b"{}",
        )
        .unwrap();
        assert_eq!(cache.info().unwrap().base_files.count, 4);
        set_last_used(root, "evicted", 1_000);
        set_last_used(root, "kept", 2_000);
        drop(cache);

        let report = LayerCache::open_exclusive(root).unwrap().gc(None).unwrap();
        assert_eq!(report.base_files.count, 2);
        let cache = LayerCache::open(root).unwrap();
        assert_eq!(cache.base_files(&gone, &wanted), None);
        assert!(cache.base_files(&evicted.digest, &wanted).is_some());
        drop(cache);

        // Evicting a layer takes its record with it.
        let report = LayerCache::open_exclusive(root)
            .unwrap()
            .gc(Some(kept.size))
            .unwrap();
        assert_eq!((report.evicted_entries, report.base_files.count), (1, 1));
        let cache = LayerCache::open(root).unwrap();
        assert_eq!(cache.base_files(&evicted.digest, &wanted), None);
        assert_eq!(cache.base_files(&kept.digest, &wanted), Some(files));
        assert_eq!(cache.info().unwrap().base_files.count, 1);
    }

    /// An image "built" from `layers` with a top layer of its own (a blob no
    /// layer entry names), as the pipeline hands it to an output.
    fn built(cache: &LayerCache, layers: &[LayerBlob], top_bytes: usize) -> BuiltImage {
        let top = cache
            .store()
            .write_layer(
                [Ok(Entry::bytes(
                    ImagePath::new("top").unwrap(),
                    0o644,
                    vec![b't'; top_bytes],
                ))],
                Compression::Gzip,
                0,
                &|_| {},
            )
            .unwrap();
        let mut layers = layers.to_vec();
        layers.push(top);
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
        let config =
            serde_json::to_vec(&serde_json::json!({ "rootfs": { "diff_ids": diff_ids } })).unwrap();
        let manifest = format!(
            "{{\"config\":\"{}\",\"top\":{top_bytes}}}",
            Digest::of(&config)
        )
        .into_bytes();
        BuiltImage {
            config_digest: Digest::of(&config),
            config,
            manifest_digest: Digest::of(&manifest),
            manifest,
            layers,
            annotations: Default::default(),
            platform: Default::default(),
        }
    }

    #[test]
    fn a_built_image_is_found_by_its_config_with_its_manifest_and_layers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let cache = LayerCache::open(root).unwrap();
        let store_layer = cached_layer(&cache, "store", 500);
        let image = built(&cache, std::slice::from_ref(&store_layer), 40);
        assert_eq!(cache.built_image(&image.config_digest), None);
        cache.put_built("podman:demo:v1", &image).unwrap();

        let record = cache.built_image(&image.config_digest).unwrap();
        assert_eq!(record.written_to, "podman:demo:v1");
        assert_eq!(record.manifest.digest, image.manifest_digest);
        assert_eq!(record.manifest.media_type, MANIFEST_MEDIA_TYPE);
        assert_eq!(record.config.digest, image.config_digest);
        assert_eq!(record.layers, image.layers);
        // The manifest and config are blobs now, byte for byte.
        assert_eq!(
            fs::read(cache.store().path(&image.manifest_digest)).unwrap(),
            image.manifest
        );
        assert_eq!(
            fs::read(cache.store().path(&image.config_digest)).unwrap(),
            image.config
        );
        assert_eq!(cache.built_image(&Digest::of(b"another config")), None);
        let info = cache.info().unwrap();
        assert_eq!((info.built_images, info.broken_built_images), (1, 0));
        assert_eq!(info.unreferenced.count, 0);

        // An image built on it is found by the layers they share, and each
        // diff_id by its compressed blob; unknown ones are not.
        let mut engine_diff_ids = record.diff_ids();
        let unknown = Digest::of(b"a layer the engine added");
        engine_diff_ids.push(unknown.clone());
        assert_eq!(cache.built_under(&engine_diff_ids), Some(record.clone()));
        assert_eq!(cache.built_under(&engine_diff_ids[1..]), None);
        let found = cache.layers_by_diff_id(&engine_diff_ids);
        assert_eq!(found.len(), 2);
        assert_eq!(found[&store_layer.diff_id], store_layer);
        assert_eq!(found[&image.layers[1].diff_id], image.layers[1]);
        assert!(!found.contains_key(&unknown));
        // A layer entry alone is found too.
        let other = cached_layer(&cache, "other", 70);
        let found = cache.layers_by_diff_id(std::slice::from_ref(&other.diff_id));
        assert_eq!(found[&other.diff_id], other);

        // Writing the same place again replaces the record; collection then
        // drops the old top layer and manifest, and keeps the new image whole.
        let rebuilt = built(&cache, std::slice::from_ref(&store_layer), 41);
        cache.put_built("podman:demo:v1", &rebuilt).unwrap();
        assert_eq!(cache.built_image(&image.config_digest), None);
        assert!(cache.built_image(&rebuilt.config_digest).is_some());
        drop(cache);
        let report = LayerCache::open_exclusive(root).unwrap().gc(None).unwrap();
        assert_eq!(report.unreferenced_blobs.count, 3, "{report:?}");
        let cache = LayerCache::open(root).unwrap();
        assert!(cache.built_image(&rebuilt.config_digest).is_some());
        assert!(!cache.store().contains(&image.layers[1].digest));
    }

    #[test]
    fn a_built_image_missing_a_blob_is_not_found_and_is_collected() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let cache = LayerCache::open(root).unwrap();
        let image = built(&cache, &[], 10);
        cache.put_built("docker-daemon:demo:v1", &image).unwrap();
        fs::remove_file(cache.store().path(&image.layers[0].digest)).unwrap();
        assert_eq!(cache.built_image(&image.config_digest), None);
        assert!(cache
            .layers_by_diff_id(&[image.layers[0].diff_id.clone()])
            .is_empty());
        // Still says how an engine's image relates to what was built.
        assert!(cache
            .built_under(&[image.layers[0].diff_id.clone()])
            .is_some());
        let info = cache.info().unwrap();
        assert_eq!((info.built_images, info.broken_built_images), (1, 1));
        drop(cache);
        let report = LayerCache::open_exclusive(root).unwrap().gc(None).unwrap();
        assert_eq!(report.broken_built_images, 1);
        assert_eq!(
            LayerCache::open(root).unwrap().info().unwrap().built_images,
            0
        );
    }

    #[test]
    fn built_images_are_evicted_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let cache = LayerCache::open(root).unwrap();
        let old = built(&cache, &[], 3000);
        let new = built(&cache, &[], 20);
        cache.put_built("podman:old", &old).unwrap();
        cache.put_built("podman:new", &new).unwrap();
        set_mtime(&root.join("built").join(built_name("podman:old")), 1_000);
        set_mtime(&root.join("built").join(built_name("podman:new")), 2_000);
        let new_bytes: u64 = new.layers[0].size + (new.config.len() + new.manifest.len()) as u64;
        drop(cache);
        let report = LayerCache::open_exclusive(root)
            .unwrap()
            .gc(Some(new_bytes))
            .unwrap();
        assert_eq!(report.evicted_built_images, 1, "{report:?}");
        let cache = LayerCache::open(root).unwrap();
        assert_eq!(cache.built_image(&old.config_digest), None);
        assert!(cache.built_image(&new.config_digest).is_some());
    }
}
