//! The top layer being assembled: entries by image path, each remembering which
//! source put it there so conflicts can name both sides.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use gpubox_oci::{Entry, EntryKind, FileSource, ImagePath};

use crate::RootfsError;

/// Where an entry of the top layer came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    CopyToRoot {
        index: usize,
        src: PathBuf,
    },
    HostBinaries {
        src: PathBuf,
    },
    /// `/bin/gpubox-init`.
    Init,
    Generated,
}

/// Which of gpubox's own layers an entry goes to: each `copyToRoot` source, the
/// `hostBinaries` files, `gpubox-init` and the generated files each have their
/// own, so a change to one (a new tag in `/etc/os-release`) leaves the others'
/// bytes alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// The `copyToRoot` item at this index.
    CopyToRoot(usize),
    HostBinaries,
    Init,
    /// Accounts, `/etc` files, links, runtime folders, the start-up plan.
    Generated,
}

impl From<&Origin> for Part {
    fn from(origin: &Origin) -> Part {
        match origin {
            Origin::CopyToRoot { index, .. } => Part::CopyToRoot(*index),
            Origin::HostBinaries { .. } => Part::HostBinaries,
            Origin::Init => Part::Init,
            Origin::Generated => Part::Generated,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::CopyToRoot { index, src } => {
                write!(f, "copyToRoot[{index}] ({})", src.display())
            }
            Origin::HostBinaries { src } => write!(f, "hostBinaries ({})", src.display()),
            Origin::Init => f.write_str("gpubox-init"),
            Origin::Generated => f.write_str("gpubox's generated files"),
        }
    }
}

struct Node {
    entry: Entry,
    origin: Origin,
    /// A folder that exists only because something was put inside it.
    implicit: bool,
}

#[derive(Default)]
pub(crate) struct Tree {
    nodes: BTreeMap<ImagePath, Node>,
}

impl Tree {
    /// Adds a user's entry; it must agree with every other user entry.
    pub(crate) fn insert(&mut self, entry: Entry, origin: Origin) -> Result<(), RootfsError> {
        for ancestor in entry.path.ancestors() {
            match self.nodes.get(&ancestor) {
                Some(node) if node.entry.kind != EntryKind::Directory => {
                    return Err(RootfsError::NotADirectory {
                        path: entry.path.clone(),
                        blocker_kind: kind_name(&node.entry.kind),
                        blocker: ancestor,
                        first: Box::new(node.origin.clone()),
                        second: Box::new(origin),
                    });
                }
                Some(_) => {}
                None => self.add_implicit(ancestor, &origin),
            }
        }
        match self.nodes.get(&entry.path) {
            None => {}
            Some(node) if node.implicit && entry.kind == EntryKind::Directory => {}
            Some(node) if !node.implicit && same_entry(&node.entry, &entry) => return Ok(()),
            Some(node) => {
                return Err(RootfsError::Conflict {
                    path: entry.path.clone(),
                    first: Box::new(node.origin.clone()),
                    second: Box::new(origin),
                });
            }
        }
        self.put(entry, origin, false);
        Ok(())
    }

    /// Adds a user's entry that gives way: left out when an entry already holds its
    /// path or made one of its folders something else (a file a package brought along,
    /// where the user put one of their own).
    pub(crate) fn insert_unless_taken(&mut self, entry: Entry, origin: Origin) {
        let blocked = entry.path.ancestors().any(|a| {
            self.nodes
                .get(&a)
                .is_some_and(|n| n.entry.kind != EntryKind::Directory)
        });
        let taken = self
            .nodes
            .get(&entry.path)
            .is_some_and(|n| !(n.implicit && entry.kind == EntryKind::Directory));
        if blocked || taken {
            return;
        }
        for ancestor in entry.path.ancestors() {
            if !self.nodes.contains_key(&ancestor) {
                self.add_implicit(ancestor, &origin);
            }
        }
        self.put(entry, origin, false);
    }

    /// Adds a generated entry unless a user entry already decided that path or made
    /// one of its folders something else.
    pub(crate) fn insert_default(&mut self, entry: Entry) {
        self.insert_unless_taken(entry, Origin::Generated);
    }

    /// [`Tree::insert_default`] for `gpubox-init`, which has a layer of its own.
    pub(crate) fn insert_init(&mut self, entry: Entry) {
        self.insert_unless_taken(entry, Origin::Init);
    }

    /// Whether `path` ended up holding a user's or a generated entry.
    pub(crate) fn get(&self, path: &ImagePath) -> Option<&Entry> {
        self.nodes.get(path).map(|n| &n.entry)
    }

    /// The entries in tar order, each with the layer it goes to (a folder made
    /// only to hold something goes with the source that made it first).
    pub(crate) fn into_entries(self) -> (Vec<Entry>, Vec<Part>) {
        self.nodes
            .into_values()
            .map(|n| {
                let part = Part::from(&n.origin);
                (n.entry, part)
            })
            .unzip()
    }

    fn add_implicit(&mut self, path: ImagePath, origin: &Origin) {
        self.put(Entry::directory(path, 0o755), origin.clone(), true);
    }

    fn put(&mut self, entry: Entry, origin: Origin, implicit: bool) {
        self.nodes.insert(
            entry.path.clone(),
            Node {
                entry,
                origin,
                implicit,
            },
        );
    }
}

fn kind_name(kind: &EntryKind) -> &'static str {
    match kind {
        EntryKind::Directory => "folder",
        EntryKind::File { .. } => "file",
        EntryKind::Symlink { .. } => "symbolic link",
        EntryKind::HardLink { .. } => "hard link",
    }
}

/// Two entries that would put the same thing at the same path: same metadata and,
/// for files, the same bytes (compared only when the sources differ).
fn same_entry(a: &Entry, b: &Entry) -> bool {
    if (a.mode, a.uid, a.gid) != (b.mode, b.uid, b.gid) {
        return false;
    }
    match (&a.kind, &b.kind) {
        (
            EntryKind::File {
                source: sa,
                size: na,
            },
            EntryKind::File {
                source: sb,
                size: nb,
            },
        ) => na == nb && (sa == sb || same_bytes(sa, sb)),
        (ka, kb) => ka == kb,
    }
}

fn same_bytes(a: &FileSource, b: &FileSource) -> bool {
    let (Some(mut ra), Some(mut rb)) = (open_source(a), open_source(b)) else {
        return false;
    };
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let (Ok(na), Ok(nb)) = (read_full(&mut ra, &mut ba), read_full(&mut rb, &mut bb)) else {
            return false;
        };
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn open_source(source: &FileSource) -> Option<Box<dyn Read + '_>> {
    Some(match source {
        FileSource::Path(p) => Box::new(BufReader::new(File::open(p).ok()?)),
        FileSource::Bytes(bytes) => Box::new(&bytes[..]),
    })
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
