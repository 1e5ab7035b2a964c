//! `gpubox-rootfs` decides what goes into the image's top layer: the files gpubox
//! generates (base `/etc` files, runtime folders, `gpubox-init`, links into the
//! closure) and the user's own files (`copyToRoot`, `hostBinaries`).
//!
//! It returns a sorted list of [`Entry`] values and the environment variables the
//! generated files imply (`SSL_CERT_FILE`, `LOCALE_ARCHIVE`); it writes nothing.
//!
//! Precedence, so that the result never depends on the order sources are listed:
//! - the user's sources must agree with each other: two of them writing the same
//!   path differently, or one putting files under a path another made a file or a
//!   symlink, is an error naming both;
//! - generated files are defaults: a user source that writes the same path wins
//!   (a custom `/etc/passwd`, say), and a generated file whose folder a user source
//!   made a symlink is left out.

mod base;
mod tree;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use gpubox_hostbin::HostFile;
use gpubox_nix::{Closure, StorePath};
use gpubox_oci::entry::BadImagePath;
use gpubox_oci::tar::{walk, WalkError, WalkOptions};
use gpubox_oci::{Entry, EntryKind, FileSource, ImagePath};
use gpubox_spec::CopyToRoot;

pub use tree::Origin;
use tree::Tree;

/// Everything the top layer is made from.
pub struct RootfsInput<'a> {
    /// The whole closure, searched for a shell, CA certificates, locales and
    /// `/etc/services`.
    pub closure: &'a Closure,
    /// The top-level packages: their `bin` and `sbin` programs get links in
    /// `/usr/local/bin` and `/usr/local/sbin`.
    pub packages: &'a [StorePath],
    pub copy_to_root: &'a [CopyToRoot],
    pub host_files: &'a [HostFile],
    /// The `gpubox-init` executable, placed at `/bin/gpubox-init`.
    pub init: Arc<[u8]>,
    pub user: &'a str,
    pub working_dir: &'a str,
    pub image_name: &'a str,
    pub image_tag: &'a str,
    /// Where the NVIDIA driver's libraries appear at run time, for
    /// `/etc/ld.so.conf.d`; empty when the image is not GPU-ready (`cuda.enable`
    /// false), which also leaves `/sbin/ldconfig` out.
    pub driver_library_dirs: &'a [&'a str],
}

/// The top layer's entries, sorted, and the environment they imply.
#[derive(Debug)]
pub struct Rootfs {
    pub entries: Vec<Entry>,
    pub env: BTreeMap<String, String>,
}

/// Why the top layer could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{origin}: {source}")]
    Walk { origin: Origin, source: WalkError },
    #[error("{origin}: {source}")]
    BadPath {
        origin: Origin,
        source: BadImagePath,
    },
    #[error(
        "{path} is written twice, differently: by {first} and by {second}; \
         remove one of them or make them agree"
    )]
    Conflict {
        path: ImagePath,
        first: Box<Origin>,
        second: Box<Origin>,
    },
    #[error(
        "{second} puts {path} inside {blocker}, which {first} makes a {blocker_kind}; \
         change one of them"
    )]
    NotADirectory {
        path: ImagePath,
        blocker: ImagePath,
        blocker_kind: &'static str,
        first: Box<Origin>,
        second: Box<Origin>,
    },
    #[error("cannot read {path} ({origin}): {source}")]
    Unreadable {
        path: PathBuf,
        origin: Origin,
        source: std::io::Error,
    },
    #[error(
        "the programs {name} of {first} and {second} would both be linked at {link}; \
         keep one of the two packages in systemPackages"
    )]
    ProgramClash {
        name: String,
        link: ImagePath,
        first: StorePath,
        second: StorePath,
    },
}

impl RootfsError {
    /// The `copyToRoot` item the error is about (the later one of two that
    /// disagree), so the caller can point at it in the spec.
    pub fn copy_to_root_index(&self) -> Option<usize> {
        let origin = match self {
            RootfsError::Walk { origin, .. }
            | RootfsError::BadPath { origin, .. }
            | RootfsError::Unreadable { origin, .. } => origin,
            RootfsError::Conflict { second, .. } | RootfsError::NotADirectory { second, .. } => {
                second
            }
            RootfsError::ProgramClash { .. } => return None,
        };
        match origin {
            Origin::CopyToRoot { index, .. } => Some(*index),
            Origin::HostBinaries { .. } | Origin::Generated => None,
        }
    }
}

/// Assembles the top layer.
pub fn assemble(input: &RootfsInput<'_>) -> Result<Rootfs, RootfsError> {
    let mut tree = Tree::default();
    for (index, item) in input.copy_to_root.iter().enumerate() {
        let origin = Origin::CopyToRoot {
            index,
            src: item.src.clone(),
        };
        add_copy(&mut tree, item, &origin)?;
    }
    for file in input.host_files {
        let origin = Origin::HostBinaries {
            src: file.source.clone(),
        };
        let path = image_path(&file.image_path.to_string_lossy(), &origin)?;
        let size = std::fs::metadata(&file.source)
            .map_err(|source| RootfsError::Unreadable {
                path: file.source.clone(),
                origin: origin.clone(),
                source,
            })?
            .len();
        let entry = Entry {
            path,
            kind: EntryKind::File {
                source: FileSource::Path(file.source.clone()),
                size,
            },
            mode: file.mode & 0o7777,
            uid: 0,
            gid: 0,
        };
        tree.insert(entry, origin)?;
    }
    let env = base::add_generated(&mut tree, input)?;
    Ok(Rootfs {
        entries: tree.into_entries(),
        env,
    })
}

fn image_path(raw: &str, origin: &Origin) -> Result<ImagePath, RootfsError> {
    ImagePath::new(raw).map_err(|source| RootfsError::BadPath {
        origin: origin.clone(),
        source,
    })
}

fn add_copy(tree: &mut Tree, item: &CopyToRoot, origin: &Origin) -> Result<(), RootfsError> {
    let dst = image_path(&item.dst, origin)?;
    let options = WalkOptions {
        mode: item.mode,
        uid: item.uid.unwrap_or(0),
        gid: item.gid.unwrap_or(0),
        hard_links: true,
    };
    for entry in walk(&item.src, dst, &options) {
        let entry = entry.map_err(|source| RootfsError::Walk {
            origin: origin.clone(),
            source,
        })?;
        // Checked now so an unreadable file stops the build before any layer is
        // written, with the user's item named.
        if let EntryKind::File {
            source: FileSource::Path(file),
            ..
        } = &entry.kind
        {
            std::fs::File::open(file).map_err(|source| RootfsError::Unreadable {
                path: file.clone(),
                origin: origin.clone(),
                source,
            })?;
        }
        tree.insert(entry, origin.clone())?;
    }
    Ok(())
}
