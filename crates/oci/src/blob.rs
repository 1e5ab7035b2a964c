//! A content-addressed blob store (`<root>/blobs/sha256/<hex>`, the OCI layout's
//! own shape) and the streaming pipeline that turns layer entries into a
//! compressed blob while computing both of its digests in the same pass.
//!
//! Nothing half-written is ever visible under `blobs/`: every blob is written to a
//! pending file under `<root>/tmp/` ([`gpubox_atomic::PendingFile`]) and renamed
//! into place once complete, and a failed write deletes its pending file. Blobs
//! are not fsynced: the benchmark this pipeline is measured against
//! (`tar | pigz`) does not either, and every read checks a blob's digest.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use gpubox_atomic::{Options, PendingFile};

use crate::chunked::ChunkedWriter;
use crate::compress::Compression;
use crate::digest::{Digest, HashingWriter};
use crate::entry::Entry;
use crate::tar::{TarError, TarWriter, WalkError};

/// A layer written to a [`BlobStore`]: what a manifest and an image config need
/// to name it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerBlob {
    /// Digest of the compressed blob (the manifest's layer digest).
    pub digest: Digest,
    /// Bytes of the compressed blob.
    pub size: u64,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    /// Entries in the tar, not counting PAX headers.
    pub entry_count: u64,
    pub compression: Compression,
    /// Annotations the layer's descriptor must carry: for `zstd:chunked`, where
    /// its table of contents is ([`crate::chunked`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Written as `"gzip"`, `"zstd"` or `"none"`, the names the CLI accepts.
impl serde::Serialize for Compression {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Compression {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Compression, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a blob could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(
        "cannot {action} `{}`: {source}; check the permissions and free space there",
        path.display()
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "the blob {digest} is not in the store (`{}` is missing); \
         build the image again to write it",
        path.display()
    )]
    Missing { digest: Digest, path: PathBuf },

    #[error(transparent)]
    Tar(TarError),

    #[error(transparent)]
    Walk(#[from] WalkError),
}

impl From<gpubox_atomic::Error> for BlobError {
    fn from(error: gpubox_atomic::Error) -> BlobError {
        let (action, path, source) = error.into_parts();
        BlobError::Io {
            action,
            path,
            source,
        }
    }
}

/// How blobs are written: readable by whoever reads the layout or archive
/// they end up in, and not synced (see the module documentation).
const BLOB_OPTIONS: Options = Options::new().mode(0o644).sync(false);

/// Bytes of uncompressed tar between two progress reports.
const PROGRESS_STEP: u64 = 1024 * 1024;

/// Buffer between the compressor and the blob file.
const FILE_BUFFER_SIZE: usize = 256 * 1024;

/// Blobs by digest under one folder. Cheap to share between threads writing
/// layers in parallel: each write has its own pending file.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
    blobs: PathBuf,
    tmp: PathBuf,
}

impl BlobStore {
    /// Opens the store at `root`, creating `blobs/sha256/` and `tmp/` as needed.
    pub fn open(root: &Path) -> Result<BlobStore, BlobError> {
        let store = BlobStore {
            root: root.to_path_buf(),
            blobs: root.join("blobs").join("sha256"),
            tmp: root.join("tmp"),
        };
        for dir in [&store.blobs, &store.tmp] {
            fs::create_dir_all(dir).map_err(|source| BlobError::Io {
                action: "create the blob store folder",
                path: dir.clone(),
                source,
            })?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives (whether or not it is there yet).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Writes `entries` as one tar layer compressed with `compression`, every
    /// entry with modification time `mtime`. The tar is never stored: it is
    /// hashed (diff_id), compressed, hashed again (digest) and written in one
    /// pass. `progress` receives the uncompressed bytes written since its last
    /// call, about every MiB.
    pub fn write_layer<I>(
        &self,
        entries: I,
        compression: Compression,
        mtime: u64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<LayerBlob, BlobError>
    where
        I: IntoIterator<Item = Result<Entry, WalkError>>,
    {
        let temp = self.temp_file()?;
        let write_error = |source| BlobError::Io {
            action: "write the layer to",
            path: temp.path().to_path_buf(),
            source,
        };
        let file = BufWriter::with_capacity(FILE_BUFFER_SIZE, temp.file());
        let (file, layer) = if compression == Compression::None {
            // The blob is the tar: one hash serves as both digests.
            let (file, tar) = write_tar(entries, file, mtime, progress, &write_error)?;
            let (digest, size) = (tar.diff_id.clone(), tar.uncompressed_size);
            (file, tar.into_layer(digest, size, compression))
        } else if compression == Compression::ZstdChunked {
            let chunked = ChunkedWriter::new(HashingWriter::new(file)).map_err(write_error)?;
            let (chunked, tar) = write_tar(entries, chunked, mtime, progress, &write_error)?;
            let (hashing, info) = chunked.finish().map_err(write_error)?;
            let (file, digest, size) = hashing.finish();
            let mut layer = tar.into_layer(digest, size, compression);
            layer.annotations = info.annotations;
            (file, layer)
        } else {
            let encoder = compression
                .encoder(HashingWriter::new(file))
                .map_err(write_error)?;
            let (encoder, tar) = write_tar(entries, encoder, mtime, progress, &write_error)?;
            let (file, digest, size) = encoder.finish().map_err(write_error)?.finish();
            (file, tar.into_layer(digest, size, compression))
        };
        file.into_inner().map_err(|e| write_error(e.into_error()))?;
        self.persist(temp, &layer.digest)?;
        Ok(layer)
    }

    /// Stores `bytes` (an image config or manifest) and returns their digest.
    pub fn write_bytes(&self, bytes: &[u8]) -> Result<Digest, BlobError> {
        let digest = Digest::of(bytes);
        if self.contains(&digest) {
            return Ok(digest);
        }
        let temp = self.temp_file()?;
        temp.file()
            .write_all(bytes)
            .map_err(|source| BlobError::Io {
                action: "write the blob to",
                path: temp.path().to_path_buf(),
                source,
            })?;
        self.persist(temp, &digest)?;
        Ok(digest)
    }

    /// Opens the blob with `digest` for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, BlobError> {
        let path = self.path(digest);
        File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => BlobError::Missing {
                digest: digest.clone(),
                path,
            },
            _ => BlobError::Io {
                action: "open the blob",
                path,
                source,
            },
        })
    }

    /// A pending file under `tmp/` for a blob whose digest is known once it
    /// is written; [`BlobStore::persist`] names it.
    pub(crate) fn temp_file(&self) -> Result<PendingFile, BlobError> {
        Ok(PendingFile::new_in(&self.tmp, &BLOB_OPTIONS)?)
    }

    /// Moves a complete pending file to its place under `blobs/`; when the blob
    /// is already there (same digest, same bytes) the pending file is dropped.
    pub(crate) fn persist(&self, temp: PendingFile, digest: &Digest) -> Result<(), BlobError> {
        let target = self.path(digest);
        if target.is_file() {
            return Ok(());
        }
        Ok(temp.commit_to(&target)?)
    }
}

/// What writing a tar found out, before its compressed form is known.
struct WrittenTar {
    diff_id: Digest,
    uncompressed_size: u64,
    entry_count: u64,
}

impl WrittenTar {
    fn into_layer(self, digest: Digest, size: u64, compression: Compression) -> LayerBlob {
        LayerBlob {
            digest,
            size,
            diff_id: self.diff_id,
            uncompressed_size: self.uncompressed_size,
            entry_count: self.entry_count,
            compression,
            annotations: BTreeMap::new(),
        }
    }
}

/// Writes `entries` as a tar into `out`, hashing and reporting progress on the
/// way, and returns `out` with what it learned.
fn write_tar<W: Write>(
    entries: impl IntoIterator<Item = Result<Entry, WalkError>>,
    out: W,
    mtime: u64,
    progress: &(dyn Fn(u64) + Sync),
    write_error: &dyn Fn(io::Error) -> BlobError,
) -> Result<(W, WrittenTar), BlobError> {
    let tar_error = |e| match e {
        TarError::Io { path: None, source } => write_error(source),
        other => BlobError::Tar(other),
    };
    let reporting = ProgressWriter {
        inner: HashingWriter::new(out),
        progress,
        unreported: 0,
    };
    let mut tar = TarWriter::new(reporting, mtime);
    for entry in entries {
        tar.append(&entry?).map_err(tar_error)?;
    }
    let entry_count = tar.entry_count();
    let reporting = tar.finish().map_err(tar_error)?;
    let (out, diff_id, uncompressed_size) = reporting.finish().finish();
    let tar = WrittenTar {
        diff_id,
        uncompressed_size,
        entry_count,
    };
    Ok((out, tar))
}

/// Passes writes on and reports their sizes to `progress`, in steps of about
/// [`PROGRESS_STEP`] so the callback costs nothing measurable.
struct ProgressWriter<'a, W> {
    inner: W,
    progress: &'a (dyn Fn(u64) + Sync),
    unreported: u64,
}

impl<W: Write> Write for ProgressWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.unreported += n as u64;
        if self.unreported >= PROGRESS_STEP {
            (self.progress)(self.unreported);
            self.unreported = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> ProgressWriter<'_, W> {
    /// Reports what is left and returns the inner writer.
    fn finish(self) -> W {
        if self.unreported > 0 {
            (self.progress)(self.unreported);
        }
        self.inner
    }
}
