//! Writing an image as a single tar stream: `oci-archive` (an OCI layout in a tar)
//! and `docker-archive` (what `docker load`, `podman load` and skopeo read).
//!
//! Members are written in [`ImagePath`] order with uid/gid 0 and mtime 0: the
//! archive is a container for content-addressed blobs, so its bytes depend only on
//! the image, never on when it was exported. Layers are streamed from the blob
//! store and checked against their digests on the way (a damaged blob fails the
//! export); no layer is held in memory.
//! A file output is written through [`gpubox_atomic::write`] (errors become
//! [`OutputError`]s), so a failed export leaves nothing behind.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

use crate::blob::{BlobStore, LayerBlob};
use crate::digest::Digest;
use crate::entry::{Entry, ImagePath};
use crate::image::{canonical_json, BuiltImage};
use crate::index::Artifact;
pub use crate::layout::OutputError;
use crate::layout::{documents, io_error, Index, OCI_LAYOUT_CONTENT};
use crate::source::VerifyingReader;
use crate::tar::TarWriter;

/// mtime of every archive member; see the module documentation.
pub const ARCHIVE_MTIME: u64 = 0;

/// One member of an archive.
enum Member<'a> {
    Directory,
    Bytes(Vec<u8>),
    /// A layer blob as stored (compressed as it was built).
    StoredLayer(&'a LayerBlob),
    /// A layer blob decompressed to its plain tar.
    UncompressedLayer(&'a LayerBlob),
}

/// Writes `artifact` (an image, or an index and its images) to `w` as an OCI
/// layout in a tar, under `tag` when given.
pub fn write_oci_archive<W: Write>(
    w: W,
    tag: Option<&str>,
    artifact: &Artifact,
    blobs: &BlobStore,
) -> Result<W, OutputError> {
    let mut members = BTreeMap::new();
    members.insert(archive_path("blobs"), Member::Directory);
    members.insert(archive_path("blobs/sha256"), Member::Directory);
    let blob_path = |d: &Digest| archive_path(&format!("blobs/sha256/{}", d.hex()));
    for layer in artifact.images().iter().flat_map(|image| &image.layers) {
        members.insert(blob_path(&layer.digest), Member::StoredLayer(layer));
    }
    for (digest, bytes) in documents(artifact) {
        members.insert(blob_path(digest), Member::Bytes(bytes.to_vec()));
    }
    members.insert(
        archive_path("index.json"),
        Member::Bytes(Index::single(tag, artifact)?.to_json()?),
    );
    members.insert(
        archive_path("oci-layout"),
        Member::Bytes(OCI_LAYOUT_CONTENT.to_vec()),
    );
    write_members(w, members, blobs)
}

/// One image in a Docker archive's `manifest.json`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DockerManifestEntry {
    /// Member holding the config.
    pub(crate) config: String,
    /// `null` in what `docker save` writes for an untagged image.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(crate) repo_tags: Vec<String>,
    /// Members holding the layers, bottom first.
    pub(crate) layers: Vec<String>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Option::<Vec<String>>::deserialize(d).map(Option::unwrap_or_default)
}

/// Writes `image` to `w` as a Docker archive with uncompressed layers named by
/// their diff IDs, as skopeo writes it. `repo_tags` are `NAME:TAG` references,
/// e.g. `example.com/app:1.0`; they may be empty.
pub fn write_docker_archive<W: Write>(
    w: W,
    repo_tags: &[String],
    image: &BuiltImage,
    blobs: &BlobStore,
) -> Result<W, OutputError> {
    let mut members = BTreeMap::new();
    let layer_name = |l: &LayerBlob| format!("{}.tar", l.diff_id.hex());
    for layer in &image.layers {
        members.insert(
            archive_path(&layer_name(layer)),
            Member::UncompressedLayer(layer),
        );
    }
    let config_name = format!("{}.json", image.config_digest.hex());
    members.insert(
        archive_path(&config_name),
        Member::Bytes(image.config.clone()),
    );
    let manifest = [DockerManifestEntry {
        config: config_name,
        repo_tags: repo_tags.to_vec(),
        layers: image.layers.iter().map(layer_name).collect(),
    }];
    members.insert(
        archive_path("manifest.json"),
        Member::Bytes(canonical_json(&manifest)?),
    );
    if let (Some(top), false) = (image.layers.last(), repo_tags.is_empty()) {
        members.insert(
            archive_path("repositories"),
            Member::Bytes(legacy_repositories(repo_tags, &top.diff_id)?),
        );
    }
    write_members(w, members, blobs)
}

/// The pre-1.10 `repositories` file: repository name -> tag -> top layer ID. Old
/// tools read names from it; every current one reads `manifest.json`. The top
/// layer's ID is its diff ID, the name of its member without `.tar`.
fn legacy_repositories(repo_tags: &[String], top_layer: &Digest) -> Result<Vec<u8>, OutputError> {
    let mut repositories: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for reference in repo_tags {
        let (name, tag) = split_tag(reference);
        repositories
            .entry(name)
            .or_default()
            .insert(tag, top_layer.hex());
    }
    Ok(canonical_json(&repositories)?)
}

/// `name:tag` -> (`name`, `tag`); a reference without a tag means `latest`. A
/// `:` before the last `/` belongs to a registry port, not a tag.
fn split_tag(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (reference, "latest"),
    }
}

/// A top-level archive member name; these are fixed and known to be valid.
fn archive_path(name: &str) -> ImagePath {
    ImagePath::new(name).unwrap_or_else(|e| unreachable!("archive member name `{name}`: {e}"))
}

fn write_members<W: Write>(
    w: W,
    members: BTreeMap<ImagePath, Member<'_>>,
    blobs: &BlobStore,
) -> Result<W, OutputError> {
    let mut tar = TarWriter::new(w, ARCHIVE_MTIME);
    for (path, member) in members {
        match member {
            Member::Directory => tar.append(&Entry::directory(path, 0o755))?,
            Member::Bytes(bytes) => {
                tar.append(&Entry::bytes(path, 0o644, Arc::<[u8]>::from(bytes)))?
            }
            Member::StoredLayer(layer) => {
                let label = format!(
                    "blob {} in the blob store at {}",
                    layer.digest,
                    blobs.root().display()
                );
                let mut reader = VerifyingReader::new(
                    blobs.open_blob(&layer.digest)?,
                    layer.size,
                    layer.digest.clone(),
                    label,
                );
                tar.append_reader(&path, 0o644, layer.size, &mut reader)?;
            }
            Member::UncompressedLayer(layer) => {
                let blob = BufReader::new(blobs.open_blob(&layer.digest)?);
                let decoder = layer
                    .compression
                    .decoder(blob)
                    .map_err(io_error("start decompressing", &blobs.path(&layer.digest)))?;
                let label = format!(
                    "the uncompressed blob {} in the blob store at {}",
                    layer.digest,
                    blobs.root().display()
                );
                let mut reader = VerifyingReader::new(
                    decoder,
                    layer.uncompressed_size,
                    layer.diff_id.clone(),
                    label,
                );
                tar.append_reader(&path, 0o644, layer.uncompressed_size, &mut reader)?;
            }
        }
    }
    Ok(tar.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::path::Path;

    #[test]
    fn split_tag_keeps_registry_ports_in_the_name() {
        assert_eq!(split_tag("app:1.0"), ("app", "1.0"));
        assert_eq!(
            split_tag("localhost:5000/app"),
            ("localhost:5000/app", "latest")
        );
        assert_eq!(
            split_tag("localhost:5000/app:v2"),
            ("localhost:5000/app", "v2")
        );
    }

    #[test]
    fn atomic_writes_leave_nothing_on_error_and_name_missing_folders() {
        use std::fs;
        let write = |path: &Path, fill: &dyn Fn(&mut File) -> Result<(), OutputError>| {
            gpubox_atomic::write(path, &gpubox_atomic::Options::new(), fill)
        };
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.tar");
        let err = write(&target, &|file| {
            file.write_all(b"partial")
                .map_err(io_error("write", &target))?;
            Err(OutputError::NotALayout(target.clone()))
        })
        .unwrap_err();
        assert!(matches!(err, OutputError::NotALayout(_)));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);

        let missing = dir.path().join("no/such/out.tar");
        let err = write(&missing, &|_| Ok(())).unwrap_err();
        assert!(matches!(err, OutputError::Io { .. }));
        assert!(err
            .to_string()
            .contains(&dir.path().join("no/such").display().to_string()));

        write(&target, &|file| {
            file.write_all(b"done").map_err(io_error("write", &target))
        })
        .unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"done");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
