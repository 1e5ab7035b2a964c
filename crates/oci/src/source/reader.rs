//! Opening an image for reading ([`ImageReader`]): from an OCI layout folder,
//! an oci-archive, a docker-archive (ours, or what `docker save`, `podman save`
//! and skopeo write) or a blob store that a registry pull filled; its config,
//! its layers, and copies of them into a [`BlobStore`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::Deserialize;

use super::backing::{blob_name, index_tar, normalize_member, Backing};
use super::error::{io_error, ReadError};
use super::incoming::{Tee, VerifyingReader};
use super::layer_files::{scan_files, LayerFiles};
use super::summary::summarize_layer;
use crate::archive::DockerManifestEntry;
use crate::blob::{BlobStore, LayerBlob};
use crate::compress::Compression;
use crate::digest::{Digest, HashingWriter};
use crate::image::{Descriptor, ImagePlatform, Manifest, INDEX_MEDIA_TYPE};

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
    /// The manifest's annotations of the layer (none in a Docker archive); gpubox
    /// writes what made the layer there ([`crate::image::layer_annotations`]).
    pub annotations: BTreeMap<String, String>,
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

/// The multi-platform index an image was opened through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedIndex {
    pub digest: Digest,
    /// The index as stored (its digest checked).
    pub document: Vec<u8>,
    /// Every entry's platform and manifest descriptor, in the index's order.
    pub platforms: Vec<(ImagePlatform, Descriptor)>,
}

impl OpenedIndex {
    /// Reads the index `document` (digest `digest`, checked by the caller) of
    /// the image at `location`.
    pub fn parse(
        digest: Digest,
        document: Vec<u8>,
        location: &Path,
    ) -> Result<OpenedIndex, ReadError> {
        let nested: PlatformIndex = parse_json(&document, &format!("index {digest}"), location)?;
        let platforms = nested
            .manifests
            .into_iter()
            .filter_map(|e| Some((e.platform?, e.descriptor)))
            .collect();
        Ok(OpenedIndex {
            digest,
            document,
            platforms,
        })
    }

    /// The entry for `architecture` (GOARCH's spelling); `None` means the build
    /// machine's, or the only one.
    pub fn entry_for(
        &self,
        architecture: Option<&str>,
        location: &Path,
    ) -> Result<Descriptor, ReadError> {
        let wanted = architecture.unwrap_or(crate::image::HOST_ARCHITECTURE);
        self.platforms
            .iter()
            .find(|(p, _)| p.os == "linux" && p.architecture == wanted)
            .or(match (architecture, self.platforms.as_slice()) {
                (None, [only]) => Some(only),
                _ => None,
            })
            .map(|(_, descriptor)| descriptor.clone())
            .ok_or_else(|| ReadError::PlatformNotFound {
                path: location.to_owned(),
                wanted: format!("linux/{wanted}"),
                available: self
                    .platforms
                    .iter()
                    .map(|(p, _)| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// An image opened for reading.
pub struct ImageReader {
    backing: Backing,
    /// The index the image was chosen from, when it was.
    index: Option<OpenedIndex>,
    /// The manifest as stored, where the source has one (not a docker-archive).
    manifest_json: Option<Vec<u8>>,
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

/// An index entry with its platform, as a nested index lists its images.
#[derive(Deserialize)]
struct PlatformEntry {
    #[serde(flatten)]
    descriptor: Descriptor,
    #[serde(default)]
    platform: Option<ImagePlatform>,
}

#[derive(Deserialize)]
struct PlatformIndex {
    manifests: Vec<PlatformEntry>,
}

impl ImageReader {
    /// Opens the image tagged `tag` in the OCI layout folder `dir`; without a tag,
    /// the layout must hold exactly one image (or index). Of an index, the
    /// build machine's platform is read (see [`ImageReader::open_oci_dir_for`]).
    pub fn open_oci_dir(dir: &Path, tag: Option<&str>) -> Result<ImageReader, ReadError> {
        ImageReader::open_oci_dir_for(dir, tag, None)
    }

    /// [`ImageReader::open_oci_dir`], reading the `architecture` (GOARCH's
    /// spelling) image of an index; `None` means the build machine's, or an
    /// index's only image.
    pub fn open_oci_dir_for(
        dir: &Path,
        tag: Option<&str>,
        architecture: Option<&str>,
    ) -> Result<ImageReader, ReadError> {
        let meta = std::fs::metadata(dir).map_err(io_error("open", dir))?;
        if !meta.is_dir() {
            return Err(ReadError::NotALayout(dir.to_owned()));
        }
        ImageReader::open_oci(Backing::Folder(dir.to_owned()), tag, architecture)
    }

    /// Opens the image tagged `tag` in the oci-archive `file`.
    pub fn open_oci_archive(file: &Path, tag: Option<&str>) -> Result<ImageReader, ReadError> {
        ImageReader::open_oci_archive_for(file, tag, None)
    }

    /// [`ImageReader::open_oci_archive`], reading the `architecture` image of an
    /// index as [`ImageReader::open_oci_dir_for`] does.
    pub fn open_oci_archive_for(
        file: &Path,
        tag: Option<&str>,
        architecture: Option<&str>,
    ) -> Result<ImageReader, ReadError> {
        let members = index_tar(file)?;
        ImageReader::open_oci(
            Backing::Tar {
                file: file.to_owned(),
                members,
            },
            tag,
            architecture,
        )
    }

    /// The multi-platform index this image was chosen from, if any.
    pub fn index(&self) -> Option<&OpenedIndex> {
        self.index.as_ref()
    }

    /// Records that the image was chosen from `index` (a registry's).
    pub fn chosen_from(&mut self, index: OpenedIndex) {
        self.index = Some(index);
    }

    fn open_oci(
        backing: Backing,
        tag: Option<&str>,
        architecture: Option<&str>,
    ) -> Result<ImageReader, ReadError> {
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
        let repo_tags = chosen.ref_name().map(str::to_owned).into_iter().collect();
        if chosen.media_type == INDEX_MEDIA_TYPE
            || chosen.media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
        {
            let document = backing.read_blob(chosen, "named by index.json")?;
            let opened = OpenedIndex::parse(chosen.digest.clone(), document, &location)?;
            let entry = opened.entry_for(architecture, &location)?;
            let manifest_json = backing.read_blob(&entry, "named by the index")?;
            let mut reader =
                ImageReader::from_manifest(backing, &manifest_json, entry.digest, repo_tags)?;
            reader.index = Some(opened);
            return Ok(reader);
        }
        let manifest_json = backing.read_blob(chosen, "named by index.json")?;
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
                    annotations: layer.annotations.clone(),
                })
            })
            .collect::<Result<Vec<_>, ReadError>>()?;
        Ok(ImageReader {
            layer_members: layers.iter().map(|l| blob_name(&l.digest)).collect(),
            index: None,
            manifest_json: Some(manifest_json.to_vec()),
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
                annotations: BTreeMap::new(),
            });
            layer_members.push(name);
        }
        Ok(ImageReader {
            backing,
            index: None,
            manifest_json: None,
            config_json,
            manifest_digest: None,
            repo_tags: entry.repo_tags.clone(),
            layers,
            layer_members,
        })
    }

    /// The manifest as stored (its digest checked), where the source keeps one:
    /// not in a docker-archive.
    pub fn manifest_json(&self) -> Option<&[u8]> {
        self.manifest_json.as_deref()
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
            Some(temp) => Box::new(BufWriter::new(temp.file())),
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
            annotations: crate::chunked::blob_annotations(&layer.annotations),
        })
    }

    /// What layer `index` does at each of `wanted` (paths without a leading
    /// `/`, such as `etc/passwd`): a file's text, a link, something else, or
    /// removal by a whiteout or an opaque folder; and at the folders above them,
    /// where it makes a link, a file or a folder ([`LayerFiles`]). Paths the
    /// layer leaves alone are absent from the answer. The whole layer is read,
    /// so its digest is checked.
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
