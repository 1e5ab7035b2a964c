//! A lazy walk of a file or folder on disk, yielding [`Entry`] values in
//! [`ImagePath`] order, ready for the tar writer.

use std::collections::hash_map::{self, HashMap};
use std::ffi::OsString;
use std::fs::{self, DirEntry, FileType, Metadata};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::entry::{Entry, EntryKind, FileSource, ImagePath};

/// The permission bits walked folders and files get. Symbolic links keep `0777`
/// whatever the rule: Linux ignores their mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Modes {
    /// Those on disk.
    #[default]
    OnDisk,
    /// These, for every folder and file, like `COPY --chmod`.
    All(u32),
    /// The Nix store's: folders 0555, files 0555 when their owner may run them,
    /// else 0444. The same as on disk for a path in the store; for a store path
    /// unpacked elsewhere, what the store would have.
    Store,
}

impl Modes {
    /// `Some(mode)` is [`Modes::All`], `None` [`Modes::OnDisk`].
    pub fn all_or_on_disk(mode: Option<u32>) -> Modes {
        mode.map_or(Modes::OnDisk, Modes::All)
    }

    fn of(self, metadata: &Metadata) -> u32 {
        match self {
            Modes::OnDisk => metadata.mode() & 0o7777,
            Modes::All(mode) => mode,
            Modes::Store if metadata.is_dir() || metadata.mode() & 0o100 != 0 => 0o555,
            Modes::Store => 0o444,
        }
    }
}

/// How walked entries are owned and permissioned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkOptions {
    pub modes: Modes,
    pub uid: u32,
    pub gid: u32,
    /// Whether a file with several names on disk becomes one file and hard links
    /// to it (otherwise each name is a full copy).
    pub hard_links: bool,
}

/// Why something on disk cannot become part of a layer.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error(
        "cannot put the {kind} `{}` into an image: layers hold only folders, regular files \
         and links; remove it or copy a folder that does not contain it",
        path.display()
    )]
    Unsupported { path: PathBuf, kind: &'static str },

    // The reason is in the message and not a `source`, so it is shown once.
    #[error("cannot read `{}`: {reason}; check that it exists and is readable", path.display())]
    Io { path: PathBuf, reason: io::Error },

    /// A name that cannot be a path inside an image; the message names it.
    #[error("{0}")]
    BadPath(String),
}

/// Yields `src` at `dst`, then, when it is a folder, everything below it: folders
/// before their contents, the children of each folder sorted by the bytes of
/// their names. Nothing is followed: symbolic links are entries (so a loop such as
/// tzdata's `posix -> .` is just a link). Memory holds the sorted children of the
/// folders on the current path, never the whole tree.
pub fn walk(src: &Path, dst: ImagePath, options: &WalkOptions) -> Walk {
    Walk {
        options: *options,
        start: Some((src.to_path_buf(), dst)),
        open_folders: Vec::new(),
        first_names: HashMap::new(),
    }
}

/// The iterator [`walk`] returns. After an error it goes on with the rest of the
/// tree (a folder that could not be read is skipped), so a caller may collect
/// every problem or stop at the first.
pub struct Walk {
    options: WalkOptions,
    start: Option<(PathBuf, ImagePath)>,
    open_folders: Vec<OpenFolder>,
    /// The first image path of each multiply-linked file, by (device, inode); only
    /// filled when hard links are kept.
    first_names: HashMap<(u64, u64), ImagePath>,
}

/// A folder whose children are being yielded.
struct OpenFolder {
    disk: PathBuf,
    image: ImagePath,
    children: std::vec::IntoIter<(OsString, DirEntry)>,
}

impl Iterator for Walk {
    type Item = Result<Entry, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some((disk, image)) = self.start.take() {
            return Some(match fs::symlink_metadata(&disk) {
                Ok(metadata) => self.visit(disk, image, &metadata),
                Err(reason) => Err(WalkError::Io { path: disk, reason }),
            });
        }
        loop {
            let folder = self.open_folders.last_mut()?;
            let Some((name, child)) = folder.children.next() else {
                self.open_folders.pop();
                continue;
            };
            let disk = folder.disk.join(&name);
            let image = match folder.image.join(name.as_bytes()) {
                Ok(image) => image,
                Err(e) => {
                    let shown = disk.display();
                    return Some(Err(WalkError::BadPath(format!(
                        "cannot name `{shown}` inside the image: {e}"
                    ))));
                }
            };
            // Relative to the open folder, without following a symbolic link.
            return Some(match child.metadata() {
                Ok(metadata) => self.visit(disk, image, &metadata),
                Err(reason) => Err(WalkError::Io { path: disk, reason }),
            });
        }
    }
}

impl Walk {
    /// The entry for `disk`; a folder is opened so that its children come next.
    fn visit(
        &mut self,
        disk: PathBuf,
        image: ImagePath,
        metadata: &Metadata,
    ) -> Result<Entry, WalkError> {
        let file_type = metadata.file_type();
        let mode = self.options.modes.of(metadata);
        let kind = if file_type.is_dir() {
            let children = sorted_children(&disk)?;
            self.open_folders.push(OpenFolder {
                disk,
                image: image.clone(),
                children,
            });
            EntryKind::Directory
        } else if file_type.is_file() {
            match self.earlier_name(&image, metadata) {
                Some(target) => EntryKind::HardLink { target },
                None => EntryKind::File {
                    source: FileSource::Path(disk),
                    size: metadata.len(),
                },
            }
        } else if file_type.is_symlink() {
            let target = fs::read_link(&disk)
                .map_err(|reason| WalkError::Io {
                    path: disk.clone(),
                    reason,
                })?
                .into_os_string()
                .into_vec();
            return Ok(Entry {
                path: image,
                kind: EntryKind::Symlink { target },
                mode: 0o777,
                uid: self.options.uid,
                gid: self.options.gid,
            });
        } else {
            return Err(WalkError::Unsupported {
                path: disk,
                kind: special_kind(&file_type),
            });
        };
        Ok(Entry {
            path: image,
            kind,
            mode,
            uid: self.options.uid,
            gid: self.options.gid,
        })
    }

    /// The path this walk first gave the file `metadata` describes, when hard
    /// links are kept and this is a later name for it; otherwise remembers `image`
    /// as its first name.
    fn earlier_name(&mut self, image: &ImagePath, metadata: &Metadata) -> Option<ImagePath> {
        if !self.options.hard_links || metadata.nlink() < 2 {
            return None;
        }
        match self.first_names.entry((metadata.dev(), metadata.ino())) {
            hash_map::Entry::Occupied(first) => Some(first.get().clone()),
            hash_map::Entry::Vacant(slot) => {
                slot.insert(image.clone());
                None
            }
        }
    }
}

fn sorted_children(disk: &Path) -> Result<std::vec::IntoIter<(OsString, DirEntry)>, WalkError> {
    let io_error = |reason| WalkError::Io {
        path: disk.to_path_buf(),
        reason,
    };
    let mut children = fs::read_dir(disk)
        .map_err(io_error)?
        .map(|child| child.map(|c| (c.file_name(), c)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_error)?;
    children.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(children.into_iter())
}

fn special_kind(file_type: &FileType) -> &'static str {
    if file_type.is_socket() {
        "socket"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn store_modes_are_the_nix_stores_whatever_the_disk_says() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("p");
        fs::create_dir_all(root.join("bin")).unwrap();
        for (name, mode) in [("bin/run", 0o750), ("data", 0o664)] {
            fs::write(root.join(name), "x").unwrap();
            fs::set_permissions(root.join(name), fs::Permissions::from_mode(mode)).unwrap();
        }
        let options = WalkOptions {
            modes: Modes::Store,
            ..WalkOptions::default()
        };
        let modes: Vec<(String, u32)> = walk(&root, ImagePath::new("p").unwrap(), &options)
            .map(|entry| entry.unwrap())
            .map(|entry| (entry.path.to_string(), entry.mode))
            .collect();
        assert_eq!(
            modes,
            [
                ("/p".to_owned(), 0o555),
                ("/p/bin".to_owned(), 0o555),
                ("/p/bin/run".to_owned(), 0o555),
                ("/p/data".to_owned(), 0o444),
            ]
        );
    }
}
