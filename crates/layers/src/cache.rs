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

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use gpubox_nix::StorePath;
use gpubox_oci::blob::{BlobError, BlobStore, LayerBlob};
use gpubox_oci::tar::{walk, WalkError, WalkOptions};
use gpubox_oci::{Compression, Entry, ImagePath};
use sha2::{Digest as _, Sha256};

/// Bumped whenever the bytes gpubox writes for the same inputs change, so old
/// cache entries are never mistaken for new ones.
const LAYER_FORMAT_VERSION: &str = "gpubox-store-layer-v1";

/// Why the cache could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot use the layer cache folder {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// Built layers and the blob store that holds their bytes.
pub struct LayerCache {
    store: BlobStore,
    index: PathBuf,
}

impl LayerCache {
    /// Opens (creating if needed) the cache rooted at `root`.
    pub fn open(root: &Path) -> Result<LayerCache, CacheError> {
        let store = BlobStore::open(root)?;
        let index = root.join("layers");
        fs::create_dir_all(&index).map_err(|source| CacheError::Io {
            path: index.clone(),
            source,
        })?;
        Ok(LayerCache { store, index })
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

    /// The layer stored under `key`, if it and its blob are still there.
    pub fn get(&self, key: &str) -> Option<LayerBlob> {
        let text = fs::read(self.index.join(format!("{key}.json"))).ok()?;
        let blob: LayerBlob = serde_json::from_slice(&text).ok()?;
        let on_disk = fs::metadata(self.store.path(&blob.digest)).ok()?;
        (on_disk.len() == blob.size).then_some(blob)
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
