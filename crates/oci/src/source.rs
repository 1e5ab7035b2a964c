//! Reading an image back from an OCI layout folder, an oci-archive or a
//! docker-archive (ours, or what `docker save`, `podman save` and skopeo write),
//! for `gpubox inspect` and for tests.
//!
//! Archives are indexed once (member name to offset and size) and members are
//! then read with seeks, so nothing is unpacked. Every blob is checked against its
//! digest as it is read; a mismatch is an error naming the blob and the file.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
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
        let manifest: Manifest = parse_json(
            &manifest_json,
            &format!("manifest {}", chosen.digest),
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
            manifest_digest: Some(chosen.digest.clone()),
            repo_tags: chosen.ref_name().map(str::to_owned).into_iter().collect(),
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
        let temp = store.temp_file()?;
        let mut blob = Tee {
            inner: raw,
            copy: BufWriter::new(temp.as_file()),
        };
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
        blob.copy
            .flush()
            .map_err(io_error("write a layer copy to", temp.path()))?;
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
        store.persist(temp, &layer.digest)?;
        Ok(LayerBlob {
            digest: layer.digest.clone(),
            size: layer.size,
            diff_id,
            uncompressed_size: summary.uncompressed_size,
            entry_count: summary.entry_count,
            compression: layer.compression,
        })
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

    #[test]
    fn member_names_are_normalized() {
        assert_eq!(normalize_member("./blobs//sha256/./ab"), "blobs/sha256/ab");
        assert_eq!(normalize_member("/abc/../manifest.json"), "manifest.json");
    }
}
