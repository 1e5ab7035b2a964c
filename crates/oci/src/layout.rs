//! Writing an image as an OCI image layout folder (`oci:DIR[:TAG]`).
//!
//! A new folder is built next to where it goes, under an unfinished name
//! ([`gpubox_atomic::partial`]), and renamed into place at the end, so an
//! interrupted build leaves nothing at `DIR`. An existing layout gets the new
//! blobs (hard-linked from the blob store when it is on the same file system)
//! and a new `index.json`, swapped in by rename; an entry with the same tag is
//! replaced and the others are kept, as skopeo does. Files are written through
//! [`gpubox_atomic`].

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use gpubox_atomic::{folder_of, partial, Options};

use crate::blob::{BlobError, BlobStore};
use crate::digest::Digest;
use crate::image::{
    canonical_json, name_annotations, Descriptor, ImageError, ANNOTATION_REF_NAME, INDEX_MEDIA_TYPE,
};
use crate::index::Artifact;
use crate::tar::TarError;

/// The content of the `oci-layout` file.
pub const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Why an image could not be written out.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "{} exists and is not an OCI image layout folder (a folder with an oci-layout \
         file); choose a new or empty folder, or remove it first",
        .0.display()
    )]
    NotALayout(PathBuf),
    #[error("cannot read the existing {}: {source}; fix or remove it", path.display())]
    BadIndex {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "blob {digest} of the image is not in the blob store at {}; rebuild the image",
        store.display()
    )]
    MissingBlob { digest: Digest, store: PathBuf },
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Tar(#[from] TarError),
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl From<gpubox_atomic::Error> for OutputError {
    fn from(error: gpubox_atomic::Error) -> OutputError {
        let (action, path, source) = error.into_parts();
        OutputError::Io {
            action,
            path,
            source,
        }
    }
}

pub(crate) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> OutputError {
    let path = path.to_owned();
    move |source| OutputError::Io {
        action,
        path,
        source,
    }
}

/// An `index.json`: the fields gpubox writes, and whatever else another tool put
/// there, kept as it was.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Index {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    manifests: Vec<serde_json::Value>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

impl Index {
    /// An index holding only `artifact` (an image or an index), under `tag` when given.
    pub(crate) fn single(tag: Option<&str>, artifact: &Artifact) -> Result<Index, OutputError> {
        let mut index = Index {
            schema_version: 2,
            media_type: Some(INDEX_MEDIA_TYPE.to_owned()),
            manifests: Vec::new(),
            other: BTreeMap::new(),
        };
        index.add(tag, artifact)?;
        Ok(index)
    }

    /// Adds `artifact`, replacing an entry with the same tag (or, untagged, the
    /// same untagged manifest), and sorts the entries by tag and then digest.
    fn add(&mut self, tag: Option<&str>, artifact: &Artifact) -> Result<(), OutputError> {
        let (media_type, top_digest, bytes) = artifact.top();
        let new_digest = top_digest.to_string();
        let entry = Descriptor {
            media_type: media_type.to_owned(),
            digest: top_digest.clone(),
            size: bytes.len() as u64,
            annotations: tag.map(name_annotations).unwrap_or_default(),
        };
        let entry = serde_json::to_value(&entry).map_err(|source| ImageError::Json {
            what: "index entry",
            source,
        })?;
        let ref_name = |e: &serde_json::Value| {
            e.pointer("/annotations")
                .and_then(|a| a.get(ANNOTATION_REF_NAME))
                .and_then(|n| n.as_str())
                .map(str::to_owned)
        };
        let digest =
            |e: &serde_json::Value| e.get("digest").and_then(|d| d.as_str()).map(str::to_owned);
        self.manifests.retain(|e| match tag {
            Some(t) => ref_name(e).as_deref() != Some(t),
            None => ref_name(e).is_some() || digest(e).as_deref() != Some(new_digest.as_str()),
        });
        self.manifests.push(entry);
        self.manifests.sort_by_key(|e| (ref_name(e), digest(e)));
        self.schema_version = 2;
        self.media_type = Some(INDEX_MEDIA_TYPE.to_owned());
        Ok(())
    }

    pub(crate) fn to_json(&self) -> Result<Vec<u8>, OutputError> {
        Ok(canonical_json(self)?)
    }
}

/// Writes `artifact` (an image, or an index and its images) into the OCI layout
/// at `dir`, creating it (and its parents) when missing, under `tag` when given.
pub fn write_oci_dir(
    dir: &Path,
    tag: Option<&str>,
    artifact: &Artifact,
    blobs: &BlobStore,
) -> Result<(), OutputError> {
    check_blobs_present(artifact, blobs)?;
    let image = artifact;
    match fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_layout(dir, tag, image, blobs),
        Err(e) => Err(io_error("read", dir)(e)),
        Ok(meta) if !meta.is_dir() => Err(OutputError::NotALayout(dir.to_owned())),
        Ok(_) => {
            let is_layout = dir.join("oci-layout").is_file();
            let is_empty = fs::read_dir(dir)
                .map_err(io_error("list", dir))?
                .next()
                .is_none();
            if !is_layout && !is_empty {
                return Err(OutputError::NotALayout(dir.to_owned()));
            }
            update_layout(dir, tag, image, blobs)
        }
    }
}

/// Checks every blob before anything is written, so a broken store changes
/// nothing on disk.
fn check_blobs_present(artifact: &Artifact, blobs: &BlobStore) -> Result<(), OutputError> {
    let mut layers = artifact.images().iter().flat_map(|image| &image.layers);
    match layers.find(|l| !blobs.contains(&l.digest)) {
        Some(layer) => Err(OutputError::MissingBlob {
            digest: layer.digest.clone(),
            store: blobs.root().to_owned(),
        }),
        None => Ok(()),
    }
}

fn create_layout(
    dir: &Path,
    tag: Option<&str>,
    image: &Artifact,
    blobs: &BlobStore,
) -> Result<(), OutputError> {
    let parent = folder_of(dir);
    fs::create_dir_all(parent).map_err(io_error("create the folder", parent))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (staged, ()) = partial::create_unique(parent, &name, |path| fs::create_dir(path))
        .map_err(io_error("create a temporary folder in", parent))?;
    let staging = Staging {
        path: staged,
        moved: false,
    };
    let root = &staging.path;
    // The umask applies to a new folder; a layout is meant to be shared.
    set_mode(root, 0o755)?;
    gpubox_atomic::write_bytes(
        &root.join("oci-layout"),
        &Options::new(),
        OCI_LAYOUT_CONTENT,
    )?;
    add_blobs(root, image, blobs)?;
    let index = Index::single(tag, image)?.to_json()?;
    gpubox_atomic::write_bytes(&root.join("index.json"), &Options::new(), &index)?;
    staging.move_to(dir)?;
    Ok(gpubox_atomic::sync_folder(parent)?)
}

/// A layout being built under an unfinished name; removed when dropped before
/// [`Staging::move_to`] puts it in place.
struct Staging {
    path: PathBuf,
    moved: bool,
}

impl Staging {
    fn move_to(mut self, dir: &Path) -> Result<(), OutputError> {
        fs::rename(&self.path, dir).map_err(io_error("move the finished layout to", dir))?;
        self.moved = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.moved {
            // Best effort: the error that led here is the one to report.
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

fn update_layout(
    dir: &Path,
    tag: Option<&str>,
    image: &Artifact,
    blobs: &BlobStore,
) -> Result<(), OutputError> {
    let layout_file = dir.join("oci-layout");
    if !layout_file.exists() {
        gpubox_atomic::write_bytes(&layout_file, &Options::new(), OCI_LAYOUT_CONTENT)?;
    }
    add_blobs(dir, image, blobs)?;
    let index_path = dir.join("index.json");
    let mut index = match fs::read(&index_path) {
        Ok(bytes) => {
            serde_json::from_slice::<Index>(&bytes).map_err(|source| OutputError::BadIndex {
                path: index_path.clone(),
                source,
            })?
        }
        // A layout whose previous write stopped before its index: start afresh.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Index {
            schema_version: 2,
            media_type: Some(INDEX_MEDIA_TYPE.to_owned()),
            manifests: Vec::new(),
            other: BTreeMap::new(),
        },
        Err(e) => return Err(io_error("read", &index_path)(e)),
    };
    index.add(tag, image)?;
    Ok(gpubox_atomic::write_bytes(
        &index_path,
        &Options::new(),
        &index.to_json()?,
    )?)
}

/// Puts the layers, configs, manifests and index under `root/blobs/sha256/`,
/// skipping the ones already there (blobs are named by their content, so a
/// layer two platforms share is written once).
fn add_blobs(root: &Path, artifact: &Artifact, blobs: &BlobStore) -> Result<(), OutputError> {
    let folder = root.join("blobs").join("sha256");
    fs::create_dir_all(&folder).map_err(io_error("create the folder", &folder))?;
    for layer in artifact.images().iter().flat_map(|image| &image.layers) {
        let target = folder.join(layer.digest.hex());
        if !target.exists() {
            link_or_copy(&blobs.path(&layer.digest), &target)?;
        }
    }
    for (digest, bytes) in documents(artifact) {
        let target = folder.join(digest.hex());
        if !target.exists() {
            gpubox_atomic::write_bytes(&target, &Options::new(), bytes)?;
        }
    }
    Ok(gpubox_atomic::sync_folder(&folder)?)
}

/// The JSON documents of `artifact` by digest: each image's config and
/// manifest, then the index where there is one.
pub(crate) fn documents(artifact: &Artifact) -> Vec<(&Digest, &[u8])> {
    let mut documents: Vec<(&Digest, &[u8])> = artifact
        .images()
        .iter()
        .flat_map(|image| {
            [
                (&image.config_digest, image.config.as_slice()),
                (&image.manifest_digest, image.manifest.as_slice()),
            ]
        })
        .collect();
    if let Artifact::Index(index) = artifact {
        documents.push((&index.index_digest, &index.index));
    }
    documents
}

/// Hard-links `source` to `target`, or copies it through a pending file when
/// they are on different file systems or the file system has no hard links.
fn link_or_copy(source: &Path, target: &Path) -> Result<(), OutputError> {
    match fs::hard_link(source, target) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e)
            if e.kind() == io::ErrorKind::CrossesDevices
                || e.raw_os_error() == Some(libc::EPERM)
                || e.raw_os_error() == Some(libc::EMLINK) => {}
        Err(e) => return Err(io_error("hard-link the blob to", target)(e)),
    }
    let mut from = File::open(source).map_err(io_error("open", source))?;
    gpubox_atomic::write(target, &Options::new(), |file| {
        io::copy(&mut from, file)
            .map(drop)
            .map_err(io_error("copy a blob to", target))
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), OutputError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_error("set permissions of", path))
}
