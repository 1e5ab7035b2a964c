//! Reading an image back from an OCI layout folder, an oci-archive, a
//! docker-archive (ours, or what `docker save`, `podman save` and skopeo write)
//! or a blob store that a registry pull filled ([`IncomingBlob`] writes those
//! blobs), for `fromImage`, `gpubox inspect` and for tests.
//!
//! Archives are indexed once (member name to offset and size) and members are
//! then read with seeks, so nothing is unpacked. Every blob is checked against its
//! digest as it is read; a mismatch is an error naming the blob and the file.
//!
//! [`ImageReader::layer_files`] reads a few small files out of a layer with the
//! layer's whiteouts applied, so a caller can see what a base image holds at
//! those paths without unpacking it.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::archive::DockerManifestEntry;
use crate::blob::{BlobError, BlobStore, LayerBlob};
use crate::compress::Compression;
use crate::digest::{Digest, HashingWriter};
use crate::image::{Descriptor, Manifest, INDEX_MEDIA_TYPE};
use crate::tar::{read_entries, TarEntryKind, TarReadError};

/// A layer as an image names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerRef {
    /// The digest of the blob; for Docker archives, the sha256 of the member.
    pub digest: Digest,
    /// The size of the blob.
    pub size: u64,
    pub compression: Compression,
    /// The digest of the uncompressed tar, from the config's `rootfs.diff_ids`.
    pub diff_id: Option<Digest>,
}

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("not an OCI layout: {} has no oci-layout file", .0.display())]
    NotALayout(PathBuf),
    #[error("{what} in {} is not valid: {source}", path.display())]
    Json {
        what: String,
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{} holds no images", .0.display())]
    NoImages(PathBuf),
    #[error(
        "{} holds several images; name one with `:TAG` after the path; tags present: {tags}",
        path.display()
    )]
    TagNeeded { path: PathBuf, tags: String },
    #[error("tag `{tag}` not found in {}; tags present: {tags}", path.display())]
    TagNotFound {
        tag: String,
        path: PathBuf,
        tags: String,
    },
    #[error("{}: {detail}", path.display())]
    Unsupported { path: PathBuf, detail: String },
    #[error("{} has no `{member}` ({referrer}); the image is incomplete", path.display())]
    Missing {
        path: PathBuf,
        member: String,
        referrer: &'static str,
    },
    #[error("{what} in {} does not match its digest or size: {detail}; the image is corrupt", path.display())]
    Corrupt {
        what: String,
        path: PathBuf,
        detail: String,
    },
    #[error("{} is not a tar archive that gpubox can read: {detail}", path.display())]
    BadTar { path: PathBuf, detail: String },
    #[error("layer {index} does not exist: the image has {count} layers")]
    NoSuchLayer { index: usize, count: usize },
    #[error("cannot read the layer: {0}")]
    Layer(#[from] TarReadError),
    #[error("cannot read the layer stream: {0}")]
    LayerStream(io::Error),
    #[error("cannot copy a layer into the blob store: {0}")]
    Store(#[from] BlobError),
    #[error("blob {digest} from {origin} is not the blob its manifest names: {detail}; try again, and if it persists the image there is damaged")]
    BlobMismatch {
        digest: Digest,
        origin: String,
        detail: String,
    },
    #[error("cannot write blob {digest} to {}: {source}; check the free space and permissions there", path.display())]
    BlobWrite {
        digest: Digest,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ReadError {
    let path = path.to_owned();
    move |source| ReadError::Io {
        action,
        path,
        source,
    }
}

/// Where an image's files are: a folder, or members of a tar.
enum Backing {
    Folder(PathBuf),
    Tar {
        file: PathBuf,
        members: HashMap<String, Span>,
    },
}

/// Where a member's data lies in its tar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    offset: u64,
    size: u64,
}

impl Backing {
    fn location(&self) -> &Path {
        match self {
            Backing::Folder(path) | Backing::Tar { file: path, .. } => path,
        }
    }

    fn contains(&self, name: &str) -> bool {
        match self {
            Backing::Folder(dir) => dir.join(name).is_file(),
            Backing::Tar { members, .. } => members.contains_key(name),
        }
    }

    /// The member's bytes and size; `referrer` says why it should exist, for the
    /// error when it does not.
    /// when it is missing.
    fn open(&self, name: &str, referrer: &'static str) -> Result<(Box<dyn Read>, u64), ReadError> {
        let missing = || ReadError::Missing {
            path: self.location().to_owned(),
            member: name.to_owned(),
            referrer,
        };
        match self {
            Backing::Folder(dir) => {
                let path = dir.join(name);
                let file = File::open(&path).map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => missing(),
                    _ => io_error("open", &path)(e),
                })?;
                let size = file.metadata().map_err(io_error("read", &path))?.len();
                Ok((Box::new(file), size))
            }
            Backing::Tar { file, members } => {
                let span = *members.get(name).ok_or_else(missing)?;
                let mut f = File::open(file).map_err(io_error("open", file))?;
                f.seek(SeekFrom::Start(span.offset))
                    .map_err(io_error("seek in", file))?;
                Ok((Box::new(f.take(span.size)), span.size))
            }
        }
    }

    /// A small member (JSON) read whole; anything over 64 MiB is refused.
    fn read_small(&self, name: &str, referrer: &'static str) -> Result<Vec<u8>, ReadError> {
        const LIMIT: u64 = 64 << 20;
        let (reader, size) = self.open(name, referrer)?;
        if size > LIMIT {
            return Err(ReadError::Unsupported {
                path: self.location().to_owned(),
                detail: format!(
                    "`{name}` is {size} bytes; a JSON document over {LIMIT} bytes is refused"
                ),
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        reader
            .take(LIMIT)
            .read_to_end(&mut bytes)
            .map_err(io_error("read", self.location()))?;
        Ok(bytes)
    }

    /// A blob named by `descriptor`, read whole and checked.
    fn read_blob(
        &self,
        descriptor: &Descriptor,
        referrer: &'static str,
    ) -> Result<Vec<u8>, ReadError> {
        let name = blob_name(&descriptor.digest);
        let bytes = self.read_small(&name, referrer)?;
        let actual = Digest::of(&bytes);
        if actual != descriptor.digest || bytes.len() as u64 != descriptor.size {
            return Err(ReadError::Corrupt {
                what: format!("blob `{name}`"),
                path: self.location().to_owned(),
                detail: format!(
                    "it is {} bytes with digest {actual}, but {} bytes with digest {} were expected",
                    bytes.len(),
                    descriptor.size,
                    descriptor.digest
                ),
            });
        }
        Ok(bytes)
    }
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn parse_json<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    what: &str,
    path: &Path,
) -> Result<T, ReadError> {
    serde_json::from_slice(bytes).map_err(|source| ReadError::Json {
        what: what.to_owned(),
        path: path.to_owned(),
        source,
    })
}

/// An image opened for reading.
pub struct ImageReader {
    backing: Backing,
    config_json: Vec<u8>,
    manifest_digest: Option<Digest>,
    repo_tags: Vec<String>,
    layers: Vec<LayerRef>,
    /// The member or relative path holding each layer.
    layer_members: Vec<String>,
}

#[derive(Deserialize)]
struct IndexDocument {
    manifests: Vec<Descriptor>,
}

impl ImageReader {
    /// Opens the image tagged `tag` in the OCI layout folder `dir`; without a tag,
    /// the layout must hold exactly one image.
    pub fn open_oci_dir(dir: &Path, tag: Option<&str>) -> Result<ImageReader, ReadError> {
        let meta = std::fs::metadata(dir).map_err(io_error("open", dir))?;
        if !meta.is_dir() {
            return Err(ReadError::NotALayout(dir.to_owned()));
        }
        ImageReader::open_oci(Backing::Folder(dir.to_owned()), tag)
    }

    /// Opens the image tagged `tag` in the oci-archive `file`.
    pub fn open_oci_archive(file: &Path, tag: Option<&str>) -> Result<ImageReader, ReadError> {
        let members = index_tar(file)?;
        ImageReader::open_oci(
            Backing::Tar {
                file: file.to_owned(),
                members,
            },
            tag,
        )
    }

    fn open_oci(backing: Backing, tag: Option<&str>) -> Result<ImageReader, ReadError> {
        let location = backing.location().to_owned();
        if !backing.contains("oci-layout") {
            return Err(ReadError::NotALayout(location));
        }
        let index: IndexDocument = parse_json(
            &backing.read_small("index.json", "every OCI layout has one")?,
            "index.json",
            &location,
        )?;
        let chosen = choose_manifest(&index.manifests, tag, &location)?;
        if chosen.media_type == INDEX_MEDIA_TYPE
            || chosen.media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
        {
            return Err(ReadError::Unsupported {
                path: location,
                detail: format!(
                    "{} is a multi-platform image index; copy one platform out with skopeo first",
                    chosen.digest
                ),
            });
        }
        let manifest_json = backing.read_blob(chosen, "named by index.json")?;
        let repo_tags = chosen.ref_name().map(str::to_owned).into_iter().collect();
        ImageReader::from_manifest(backing, &manifest_json, chosen.digest.clone(), repo_tags)
    }

    /// Opens the image whose manifest is `manifest_json` (with digest
    /// `manifest_digest`, as pulled from a registry) and whose config and layers
    /// are in `store`. `name` is what the image goes by, the reference it was
    /// pulled by.
    pub fn open_pulled(
        store: &BlobStore,
        manifest_json: &[u8],
        manifest_digest: Digest,
        name: &str,
    ) -> Result<ImageReader, ReadError> {
        ImageReader::from_manifest(
            Backing::Folder(store.root().to_owned()),
            manifest_json,
            manifest_digest,
            vec![name.to_owned()],
        )
    }

    /// Reads the config a manifest names and lists its layers; blobs are found
    /// under `blobs/sha256/` of `backing`.
    fn from_manifest(
        backing: Backing,
        manifest_json: &[u8],
        manifest_digest: Digest,
        repo_tags: Vec<String>,
    ) -> Result<ImageReader, ReadError> {
        let location = backing.location().to_owned();
        let manifest: Manifest = parse_json(
            manifest_json,
            &format!("manifest {manifest_digest}"),
            &location,
        )?;
        let config_json = backing.read_blob(&manifest.config, "named by the manifest")?;
        let diff_ids = diff_ids(&config_json, &location)?;
        let layers = manifest
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                let compression =
                    Compression::from_media_type(&layer.media_type).ok_or_else(|| {
                        ReadError::Unsupported {
                            path: location.clone(),
                            detail: format!(
                            "layer {} has media type `{}`, which is not a tar layer gpubox knows",
                            layer.digest, layer.media_type
                        ),
                        }
                    })?;
                Ok(LayerRef {
                    digest: layer.digest.clone(),
                    size: layer.size,
                    compression,
                    diff_id: diff_ids.get(i).cloned(),
                })
            })
            .collect::<Result<Vec<_>, ReadError>>()?;
        Ok(ImageReader {
            layer_members: layers.iter().map(|l| blob_name(&l.digest)).collect(),
            manifest_digest: Some(manifest_digest),
            repo_tags,
            config_json,
            layers,
            backing,
        })
    }

    /// Opens the Docker archive `file`, which must hold one image. Each layer
    /// member is read once here, to learn its digest and compression.
    pub fn open_docker_archive(file: &Path) -> Result<ImageReader, ReadError> {
        let backing = Backing::Tar {
            file: file.to_owned(),
            members: index_tar(file)?,
        };
        let entries: Vec<DockerManifestEntry> = parse_json(
            &backing.read_small("manifest.json", "every Docker archive has one")?,
            "manifest.json",
            file,
        )?;
        let entry = match entries.as_slice() {
            [entry] => entry,
            [] => return Err(ReadError::NoImages(file.to_owned())),
            _ => {
                return Err(ReadError::Unsupported {
                    path: file.to_owned(),
                    detail: format!(
                        "manifest.json lists {} images; gpubox reads single-image archives",
                        entries.len()
                    ),
                })
            }
        };
        let config_json =
            backing.read_small(&normalize_member(&entry.config), "named by manifest.json")?;
        let diff_ids = diff_ids(&config_json, file)?;
        let mut layer_members = Vec::new();
        let mut layers = Vec::new();
        for (i, name) in entry.layers.iter().enumerate() {
            let name = normalize_member(name);
            let (reader, size) = backing.open(&name, "named by manifest.json")?;
            let (digest, compression) =
                digest_and_compression(reader).map_err(io_error("read", file))?;
            layers.push(LayerRef {
                digest,
                size,
                compression,
                diff_id: diff_ids.get(i).cloned(),
            });
            layer_members.push(name);
        }
        Ok(ImageReader {
            backing,
            config_json,
            manifest_digest: None,
            repo_tags: entry.repo_tags.clone(),
            layers,
            layer_members,
        })
    }

    /// The config as stored.
    pub fn config_json(&self) -> &[u8] {
        &self.config_json
    }

    /// The config, parsed.
    pub fn config(&self) -> Result<serde_json::Value, ReadError> {
        parse_json(
            &self.config_json,
            "the image config",
            self.backing.location(),
        )
    }

    /// The manifest's digest; Docker archives have no manifest blob.
    pub fn manifest_digest(&self) -> Option<Digest> {
        self.manifest_digest.clone()
    }

    /// The names the image goes by: the OCI tag, or a Docker archive's RepoTags.
    pub fn repo_tags(&self) -> Vec<String> {
        self.repo_tags.clone()
    }

    /// The layers, bottom first.
    pub fn layers(&self) -> &[LayerRef] {
        &self.layers
    }

    /// The uncompressed tar of layer `index`. The blob is checked against its
    /// digest as it is read; a mismatch surfaces as a read error at the end.
    pub fn open_layer(&self, index: usize) -> Result<Box<dyn Read + '_>, ReadError> {
        let (layer, raw) = self.open_raw_layer(index)?;
        layer
            .compression
            .decoder(BufReader::new(raw))
            .map_err(io_error(
                "start decompressing a layer of",
                self.backing.location(),
            ))
    }

    /// Copies layer `index` into `store` as it is stored here, byte for byte
    /// (never recompressed), under its own digest. The tar inside is read in
    /// the same pass for its diff_id, size and entry count; a diff_id that
    /// differs from the config's means the image is corrupt.
    pub fn copy_raw_layer(&self, index: usize, store: &BlobStore) -> Result<LayerBlob, ReadError> {
        let (layer, raw) = self.open_raw_layer(index)?;
        let location = self.backing.location();
        // A blob the store already has (a pulled base's) is read, not copied.
        let temp = if store.contains(&layer.digest) {
            None
        } else {
            Some(store.temp_file()?)
        };
        let copy: Box<dyn Write + '_> = match &temp {
            Some(temp) => Box::new(BufWriter::new(temp.as_file())),
            None => Box::new(io::sink()),
        };
        let mut blob = Tee { inner: raw, copy };
        let (summary, diff_id) = {
            let mut tar = Tee {
                inner: layer
                    .compression
                    .decoder(BufReader::new(&mut blob))
                    .map_err(io_error("start decompressing a layer of", location))?,
                copy: HashingWriter::new(io::sink()),
            };
            let summary = summarize_layer(&mut tar)?;
            (summary, tar.copy.finish().1)
        };
        // A decoder may stop at the end of its stream; the blob is copied whole.
        io::copy(&mut blob, &mut io::sink()).map_err(ReadError::LayerStream)?;
        let copy_path = temp.as_ref().map_or(store.root(), |t| t.path());
        blob.copy
            .flush()
            .map_err(io_error("write a layer copy to", copy_path))?;
        drop(blob);
        if let Some(expected) = layer.diff_id.as_ref().filter(|d| **d != diff_id) {
            return Err(ReadError::Corrupt {
                what: format!("layer {}", layer.digest),
                path: location.to_owned(),
                detail: format!(
                    "its tar has digest {diff_id}, but the config's diff_id is {expected}"
                ),
            });
        }
        if let Some(temp) = temp {
            store.persist(temp, &layer.digest)?;
        }
        Ok(LayerBlob {
            digest: layer.digest.clone(),
            size: layer.size,
            diff_id,
            uncompressed_size: summary.uncompressed_size,
            entry_count: summary.entry_count,
            compression: layer.compression,
        })
    }

    /// What layer `index` does at each of `wanted` (paths without a leading
    /// `/`, such as `etc/passwd`): a file's text, something else, or removal by
    /// a whiteout, an opaque folder or a parent replaced by a non-folder.
    /// Paths the layer leaves alone are absent from the answer. The whole
    /// layer is read, so its digest is checked.
    pub fn layer_files(&self, index: usize, wanted: &[&str]) -> Result<LayerFiles, ReadError> {
        scan_files(self.open_layer(index)?, wanted)
    }

    /// Layer `index` as stored (compressed or not), byte for byte, checked
    /// against its digest as it is read: what a push uploads.
    pub fn raw_layer(&self, index: usize) -> Result<Box<dyn Read + '_>, ReadError> {
        let (_, raw) = self.open_raw_layer(index)?;
        Ok(Box::new(raw))
    }

    /// Layer `index` as stored (compressed or not), checked against its
    /// digest as it is read.
    fn open_raw_layer(&self, index: usize) -> Result<(&LayerRef, impl Read + '_), ReadError> {
        let layer = self.layers.get(index).ok_or(ReadError::NoSuchLayer {
            index,
            count: self.layers.len(),
        })?;
        let name = &self.layer_members[index];
        let (reader, size) = self.backing.open(name, "named by the manifest")?;
        let location = self.backing.location();
        if size != layer.size {
            return Err(ReadError::Corrupt {
                what: format!("layer `{name}`"),
                path: location.to_owned(),
                detail: format!("it is {size} bytes, but the manifest says {}", layer.size),
            });
        }
        let verified = VerifyingReader::new(
            reader,
            size,
            layer.digest.clone(),
            format!("layer `{name}` in {}", location.display()),
        );
        Ok((layer, verified))
    }
}

/// [`ImageReader::layer_files`] of an uncompressed layer tar.
fn scan_files(layer: impl Read, wanted: &[&str]) -> Result<LayerFiles, ReadError> {
    let recording = RefCell::new(Recording::default());
    let mut tar = Recorder {
        inner: layer,
        recording: &recording,
    };
    let mut found = LayerFiles::new();
    let mut removed: BTreeSet<&str> = BTreeSet::new();
    for entry in read_entries(&mut tar) {
        let entry = entry?;
        let path = String::from_utf8_lossy(&entry.path).into_owned();
        let (folder, name) = path.rsplit_once('/').unwrap_or(("", &path));
        let under = |dir: &str, w: &str| {
            dir.is_empty() || w.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
        };
        if name == OPAQUE_WHITEOUT {
            removed.extend(wanted.iter().copied().filter(|w| under(folder, w)));
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let hidden = match folder {
                "" => hidden.to_owned(),
                folder => format!("{folder}/{hidden}"),
            };
            removed.extend(
                wanted
                    .iter()
                    .copied()
                    .filter(|w| *w == hidden || under(&hidden, w)),
            );
        } else if wanted.contains(&path.as_str()) {
            let text = match entry.kind {
                TarEntryKind::File => recording.borrow().content(entry.size),
                _ => None,
            };
            found.insert(path, text.map_or(LayerFile::Other, LayerFile::Text));
        } else if entry.kind != TarEntryKind::Directory {
            // A parent that is now a link or a file: what lies below is
            // not something gpubox can follow.
            for w in wanted.iter().filter(|w| under(&path, w)) {
                found.insert((*w).to_owned(), LayerFile::Other);
            }
        }
        // What the next entry's read brings starts afresh.
        recording.borrow_mut().restart();
    }
    // The rest of the stream, so the layer's digest is checked.
    io::copy(&mut tar, &mut io::sink()).map_err(ReadError::LayerStream)?;
    for path in removed {
        found.entry(path.to_owned()).or_insert(LayerFile::Removed);
    }
    Ok(found)
}

/// A whiteout's name starts with this; the rest names the path it removes.
const WHITEOUT_PREFIX: &str = ".wh.";
/// This name in a folder hides everything lower layers have in it.
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// Files larger than this are not read by [`ImageReader::layer_files`].
const SMALL_FILE_LIMIT: u64 = 1 << 20;

/// What a layer does at one path, as [`ImageReader::layer_files`] sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LayerFile {
    /// A regular file holding this UTF-8 text.
    Text(String),
    /// Something else there: a link, a folder, a device, or a file too large
    /// or not UTF-8.
    Other,
    /// Removed from what the layers below have.
    Removed,
}

/// The changes one layer makes, by path; paths it leaves alone are absent.
pub type LayerFiles = BTreeMap<String, LayerFile>;

/// Lays layers' changes (bottom first) over each other: what the image shows
/// at each path. Paths that end up removed or never present are absent, so
/// no value is [`LayerFile::Removed`].
pub fn stack_layer_files<'a>(
    layers: impl IntoIterator<Item = &'a LayerFiles>,
) -> BTreeMap<String, LayerFile> {
    let mut image = BTreeMap::new();
    for layer in layers {
        for (path, change) in layer {
            match change {
                LayerFile::Removed => image.remove(path),
                other => image.insert(path.clone(), other.clone()),
            };
        }
    }
    image
}

/// The bytes the last entry's read brought (headers, content, padding), up to
/// a limit past which only the fact that there was more is kept.
#[derive(Default)]
struct Recording {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl Recording {
    fn restart(&mut self) {
        self.bytes.clear();
        self.overflowed = false;
    }

    /// The text of a file of `size` bytes whose content and padding end
    /// the recording.
    fn content(&self, size: u64) -> Option<String> {
        const BLOCK: u64 = 512;
        if self.overflowed || size > SMALL_FILE_LIMIT {
            return None;
        }
        let padded = usize::try_from(size.div_ceil(BLOCK) * BLOCK).ok()?;
        let start = self.bytes.len().checked_sub(padded)?;
        let content = self.bytes.get(start..start + usize::try_from(size).ok()?)?;
        String::from_utf8(content.to_vec()).ok()
    }
}

/// Passes reads on and records them in `recording`.
struct Recorder<'a, R> {
    inner: R,
    recording: &'a RefCell<Recording>,
}

impl<R: Read> Read for Recorder<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Room for a file at the limit, its padding and its headers.
        const KEEP: usize = SMALL_FILE_LIMIT as usize + (64 << 10);
        let n = self.inner.read(buf)?;
        let mut recording = self.recording.borrow_mut();
        if recording.bytes.len() + n > KEEP {
            recording.overflowed = true;
            recording.bytes.clear();
        } else if !recording.overflowed {
            recording.bytes.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

/// A blob arriving from elsewhere (a registry), written into a [`BlobStore`]
/// as its bytes come: counted and hashed on the way into a temporary file,
/// and moved under `blobs/` by [`IncomingBlob::finish`] only when its size and
/// digest are the ones expected. Dropped unfinished, it leaves nothing.
pub struct IncomingBlob<'s> {
    store: &'s BlobStore,
    temp: tempfile::NamedTempFile,
    hasher: Sha256,
    written: u64,
    expected: Digest,
    size: u64,
    origin: String,
}

impl<'s> IncomingBlob<'s> {
    /// Starts a blob of `size` bytes with digest `expected`; `origin` (where
    /// it comes from) is named in errors.
    pub fn new(
        store: &'s BlobStore,
        expected: Digest,
        size: u64,
        origin: &str,
    ) -> Result<IncomingBlob<'s>, ReadError> {
        Ok(IncomingBlob {
            temp: store.temp_file()?,
            store,
            hasher: Sha256::new(),
            written: 0,
            expected,
            size,
            origin: origin.to_owned(),
        })
    }

    /// Appends the next bytes; more than the expected size is an error.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ReadError> {
        self.written += bytes.len() as u64;
        if self.written > self.size {
            return Err(self.mismatch(format!("it is longer than {} bytes", self.size)));
        }
        self.hasher.update(bytes);
        self.temp
            .as_file()
            .write_all(bytes)
            .map_err(|source| ReadError::BlobWrite {
                digest: self.expected.clone(),
                path: self.temp.path().to_owned(),
                source,
            })
    }

    /// Checks the size and digest and moves the blob into the store.
    pub fn finish(self) -> Result<(), ReadError> {
        if self.written != self.size {
            return Err(self.mismatch(format!("it is {} bytes, not {}", self.written, self.size)));
        }
        let actual = hex::encode(self.hasher.clone().finalize());
        if actual != self.expected.hex() {
            return Err(self.mismatch(format!("its content has digest sha256:{actual}")));
        }
        self.store.persist(self.temp, &self.expected)?;
        Ok(())
    }

    fn mismatch(&self, detail: String) -> ReadError {
        ReadError::BlobMismatch {
            digest: self.expected.clone(),
            origin: self.origin.clone(),
            detail,
        }
    }
}

/// Passes reads on and writes a copy of every byte read to `copy`.
struct Tee<R, W> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// The tag a manifest is chosen by, among `manifests`.
fn choose_manifest<'a>(
    manifests: &'a [Descriptor],
    tag: Option<&str>,
    location: &Path,
) -> Result<&'a Descriptor, ReadError> {
    let tags = || {
        let names: BTreeSet<&str> = manifests.iter().filter_map(Descriptor::ref_name).collect();
        if names.is_empty() {
            "(none)".to_owned()
        } else {
            names.into_iter().collect::<Vec<_>>().join(", ")
        }
    };
    match tag {
        Some(tag) => manifests
            .iter()
            .find(|m| m.ref_name() == Some(tag))
            .ok_or_else(|| ReadError::TagNotFound {
                tag: tag.to_owned(),
                path: location.to_owned(),
                tags: tags(),
            }),
        None => match manifests {
            [] => Err(ReadError::NoImages(location.to_owned())),
            [only] => Ok(only),
            _ => Err(ReadError::TagNeeded {
                path: location.to_owned(),
                tags: tags(),
            }),
        },
    }
}

/// `rootfs.diff_ids` of a config.
fn diff_ids(config_json: &[u8], location: &Path) -> Result<Vec<Digest>, ReadError> {
    #[derive(Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<Digest>,
    }
    let config: Config = parse_json(config_json, "the image config", location)?;
    Ok(config.rootfs.diff_ids)
}

/// The sha256 of a stream and the compression its first bytes show.
fn digest_and_compression(reader: impl Read) -> io::Result<(Digest, Compression)> {
    let mut reader = BufReader::new(reader);
    let compression = Compression::sniff(reader.fill_buf()?);
    let mut hashing = HashingWriter::new(io::sink());
    io::copy(&mut reader, &mut hashing)?;
    let (_, digest, _) = hashing.finish();
    Ok((digest, compression))
}

/// Passes on exactly `size` bytes of `inner`, hashing them, and fails the read
/// that ends the stream when the digest is not the expected one; a stream that
/// ends early fails too. The error messages start with `label`.
pub(crate) struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    remaining: u64,
    expected: Digest,
    label: String,
}

impl<R: Read> VerifyingReader<R> {
    pub(crate) fn new(inner: R, size: u64, expected: Digest, label: String) -> Self {
        VerifyingReader {
            inner,
            hasher: Sha256::new(),
            remaining: size,
            expected,
            label,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} ends {} bytes early", self.label, self.remaining),
            ));
        }
        self.hasher.update(&buf[..n]);
        self.remaining -= n as u64;
        if self.remaining == 0 {
            let actual = hex::encode(std::mem::take(&mut self.hasher).finalize());
            if actual != self.expected.hex() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} has digest sha256:{actual}, not {}: it is damaged",
                        self.label, self.expected
                    ),
                ));
            }
        }
        Ok(n)
    }
}

/// What a layer holds, for `gpubox inspect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSummary {
    /// Bytes of the uncompressed tar.
    pub uncompressed_size: u64,
    pub entry_count: u64,
    /// The `/nix/store/<hash>-<name>` paths with anything in the layer, sorted.
    pub store_paths: Vec<String>,
}

/// Reads an uncompressed layer tar to its end and summarizes it.
pub fn summarize_layer(tar: impl Read) -> Result<LayerSummary, ReadError> {
    let count = Cell::new(0);
    let mut counted = CountingReader {
        inner: tar,
        count: &count,
    };
    let mut entry_count = 0;
    let mut store_paths = BTreeSet::new();
    for entry in read_entries(&mut counted) {
        let entry = entry?;
        entry_count += 1;
        let path = String::from_utf8_lossy(&entry.path);
        let mut components = path.split('/').filter(|c| !c.is_empty() && *c != ".");
        if let (Some("nix"), Some("store"), Some(name)) =
            (components.next(), components.next(), components.next())
        {
            if !name.starts_with('.') {
                store_paths.insert(format!("/nix/store/{name}"));
            }
        }
    }
    // Whatever follows the end-of-archive blocks is part of the layer too.
    io::copy(&mut counted, &mut io::sink()).map_err(ReadError::LayerStream)?;
    Ok(LayerSummary {
        uncompressed_size: count.get(),
        entry_count,
        store_paths: store_paths.into_iter().collect(),
    })
}

/// Counts the bytes read through it into a cell that stays readable while the
/// reader is lent out.
struct CountingReader<'a, R> {
    inner: R,
    count: &'a Cell<u64>,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// A member name as tar writers vary it (`./a`, `/a`, `a/./b`) brought to the
/// form manifests use (`a`, `a/b`).
fn normalize_member(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// Indexes the tar at `file`: normalized member name to the span of its data,
/// for regular files and for hard and symbolic links to them.
fn index_tar(file: &Path) -> Result<HashMap<String, Span>, ReadError> {
    const BLOCK: u64 = 512;
    let handle = File::open(file).map_err(io_error("open", file))?;
    let position = Cell::new(0);
    let mut reader = CountingReader {
        inner: BufReader::with_capacity(256 * 1024, handle),
        count: &position,
    };
    let mut members = HashMap::new();
    let mut links: Vec<(String, String)> = Vec::new();
    for entry in read_entries(&mut reader) {
        let entry = entry.map_err(|e| ReadError::BadTar {
            path: file.to_owned(),
            detail: e.to_string(),
        })?;
        let name = normalize_member(&String::from_utf8_lossy(&entry.path));
        let link = entry.link.as_deref().map(String::from_utf8_lossy);
        match (entry.kind, link) {
            (TarEntryKind::File, _) => {
                // The reader has just skipped this entry's data and padding.
                let end = position.get();
                let offset = end - entry.size.div_ceil(BLOCK) * BLOCK;
                members.insert(
                    name,
                    Span {
                        offset,
                        size: entry.size,
                    },
                );
            }
            (TarEntryKind::HardLink, Some(target)) => links.push((name, normalize_member(&target))),
            (TarEntryKind::Symlink, Some(target)) => {
                let target = match (target.starts_with('/'), name.rsplit_once('/')) {
                    (false, Some((folder, _))) => format!("{folder}/{target}"),
                    _ => target.into_owned(),
                };
                links.push((name, normalize_member(&target)));
            }
            _ => {}
        }
    }
    resolve_links(&mut members, &links);
    Ok(members)
}

/// Gives each link the span of the file it leads to, following chains of links.
fn resolve_links(members: &mut HashMap<String, Span>, links: &[(String, String)]) {
    const MAX_HOPS: usize = 16;
    let targets: HashMap<&str, &str> = links
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    for (name, target) in links {
        let mut current = target.as_str();
        for _ in 0..MAX_HOPS {
            if let Some(&span) = members.get(current) {
                members.insert(name.clone(), span);
                break;
            }
            match targets.get(current) {
                Some(next) => current = next,
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_in_an_archive_resolve_to_the_file_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let content = dir.path().join("content");
        std::fs::create_dir_all(content.join("legacy")).unwrap();
        std::fs::write(content.join("layer.tar"), vec![7u8; 1500]).unwrap();
        std::os::unix::fs::symlink("../layer.tar", content.join("legacy/layer.tar")).unwrap();
        std::fs::hard_link(content.join("layer.tar"), content.join("copy.tar")).unwrap();
        let archive = dir.path().join("a.tar");
        let status = std::process::Command::new("tar")
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(&content)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());

        let members = index_tar(&archive).unwrap();
        let file = members["layer.tar"];
        assert_eq!(file.size, 1500);
        assert_eq!(members["legacy/layer.tar"], file);
        assert_eq!(members["copy.tar"], file);
        let backing = Backing::Tar {
            file: archive,
            members,
        };
        let (reader, size) = backing.open("legacy/layer.tar", "test").unwrap();
        let mut bytes = Vec::new();
        reader.take(size).read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, vec![7u8; 1500]);
    }

    /// A tar (GNU tar, sorted names) of the folder `files` describes:
    /// (path, Some(content)) for a file, (path, None) for a folder.
    fn gnu_tar(files: &[(&str, Option<&str>)]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let at = dir.path().join(path);
            match content {
                Some(text) => {
                    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
                    std::fs::write(at, text).unwrap();
                }
                None => std::fs::create_dir_all(at).unwrap(),
            }
        }
        let out = std::process::Command::new("tar")
            .args(["--sort=name", "-cf", "-", "-C"])
            .arg(dir.path())
            .arg(".")
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    }

    #[test]
    fn layer_files_read_small_files_and_apply_whiteouts() {
        let wanted = ["etc/passwd", "etc/group", "etc/nsswitch.conf", "etc/hosts"];
        let big = "x".repeat(SMALL_FILE_LIMIT as usize + 1);
        let lower = gnu_tar(&[
            (
                "etc/passwd",
                Some("root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"),
            ),
            ("etc/group", Some("root:x:0:\n")),
            ("etc/hosts", Some(&big)),
            ("etc/nsswitch.conf", Some("passwd: files\n")),
            ("usr/share/big", Some(&big)),
        ]);
        let lower = scan_files(&lower[..], &wanted).unwrap();
        assert_eq!(
            lower["etc/passwd"],
            LayerFile::Text(
                "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n".into()
            )
        );
        assert_eq!(lower["etc/group"], LayerFile::Text("root:x:0:\n".into()));
        assert_eq!(lower["etc/hosts"], LayerFile::Other);

        let upper = gnu_tar(&[
            ("etc/.wh.group", Some("")),
            ("etc/nsswitch.conf", None),
            ("unrelated", Some("1")),
        ]);
        let upper = scan_files(&upper[..], &wanted).unwrap();
        assert_eq!(upper.get("etc/passwd"), None);
        assert_eq!(upper["etc/group"], LayerFile::Removed);
        assert_eq!(upper["etc/nsswitch.conf"], LayerFile::Other);

        let stacked = stack_layer_files([&lower, &upper]);
        assert!(matches!(stacked["etc/passwd"], LayerFile::Text(ref t) if t.contains("alice")));
        assert_eq!(stacked.get("etc/group"), None);
        assert_eq!(stacked["etc/nsswitch.conf"], LayerFile::Other);

        // An opaque /etc hides the lower layers' files but not its own.
        let opaque = gnu_tar(&[("etc/.wh..wh..opq", Some("")), ("etc/group", Some("g\n"))]);
        let opaque = scan_files(&opaque[..], &wanted).unwrap();
        let stacked = stack_layer_files([&lower, &opaque]);
        assert_eq!(
            stacked.into_iter().collect::<Vec<_>>(),
            [("etc/group".to_owned(), LayerFile::Text("g\n".into()))]
        );
        // Removing /etc itself removes everything under it.
        let gone = gnu_tar(&[(".wh.etc", Some(""))]);
        let gone = scan_files(&gone[..], &wanted).unwrap();
        assert!(stack_layer_files([&lower, &gone]).is_empty());
    }

    #[test]
    fn incoming_blobs_are_stored_only_when_complete_and_right() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let bytes = b"a blob from far away";
        let digest = Digest::of(bytes);

        let mut short =
            IncomingBlob::new(&store, digest.clone(), bytes.len() as u64, "here").unwrap();
        short.write(&bytes[..5]).unwrap();
        assert!(matches!(
            short.finish(),
            Err(ReadError::BlobMismatch { .. })
        ));
        let mut long = IncomingBlob::new(&store, digest.clone(), 3, "here").unwrap();
        assert!(matches!(
            long.write(bytes),
            Err(ReadError::BlobMismatch { .. })
        ));
        drop(long);
        let wrong = Digest::of(b"something else");
        let mut other =
            IncomingBlob::new(&store, wrong.clone(), bytes.len() as u64, "here").unwrap();
        other.write(bytes).unwrap();
        let error = other.finish().unwrap_err().to_string();
        assert!(
            error.contains("here") && error.contains(&digest.to_string()),
            "{error}"
        );
        assert!(!store.contains(&digest) && !store.contains(&wrong));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );

        let mut good =
            IncomingBlob::new(&store, digest.clone(), bytes.len() as u64, "here").unwrap();
        good.write(&bytes[..4]).unwrap();
        good.write(&bytes[4..]).unwrap();
        good.finish().unwrap();
        assert_eq!(std::fs::read(store.path(&digest)).unwrap(), bytes);
    }

    #[test]
    fn member_names_are_normalized() {
        assert_eq!(normalize_member("./blobs//sha256/./ab"), "blobs/sha256/ab");
        assert_eq!(normalize_member("/abc/../manifest.json"), "manifest.json");
    }
}
