//! What a layer holds, independent of where it comes from: [`Entry`] values keyed by
//! [`ImagePath`], whose ordering is the order the tar writer emits.
//!
//! The order is a depth-first walk with the children of each folder sorted by the
//! bytes of their names (what `tar --sort=name` does): a folder always comes before
//! what it contains, and `a/b` sorts before `a.c` even though `/` is a larger byte
//! than `.`, because paths are compared component by component.

use std::cmp::Ordering;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A path inside the image: relative to `/`, components separated by single `/`,
/// no `.`, `..` or empty components, never empty. Stored as raw bytes because file
/// names on Linux need not be UTF-8.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImagePath(Vec<u8>);

/// A path that cannot name something inside an image.
#[derive(Debug, thiserror::Error)]
pub enum BadImagePath {
    #[error("the image path `{0}` is empty or names the root itself")]
    Empty(String),
    #[error("the image path `{0}` contains `..`; paths must stay inside the image")]
    ParentComponent(String),
    #[error("the image path `{0}` contains a NUL byte")]
    Nul(String),
}

impl ImagePath {
    /// Normalises `raw`: a leading `/`, repeated `/`, a trailing `/` and `.`
    /// components are dropped; `..` and NUL are refused.
    pub fn new(raw: impl AsRef<[u8]>) -> Result<ImagePath, BadImagePath> {
        let raw = raw.as_ref();
        let shown = || String::from_utf8_lossy(raw).into_owned();
        if raw.contains(&0) {
            return Err(BadImagePath::Nul(shown()));
        }
        let mut out = Vec::with_capacity(raw.len());
        for component in raw.split(|&b| b == b'/') {
            match component {
                b"" | b"." => continue,
                b".." => return Err(BadImagePath::ParentComponent(shown())),
                _ => {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(component);
                }
            }
        }
        if out.is_empty() {
            return Err(BadImagePath::Empty(shown()));
        }
        Ok(ImagePath(out))
    }

    /// `self/name`, where `name` is one or more components.
    pub fn join(&self, name: impl AsRef<[u8]>) -> Result<ImagePath, BadImagePath> {
        let mut raw = self.0.clone();
        raw.push(b'/');
        raw.extend_from_slice(name.as_ref());
        ImagePath::new(raw)
    }

    /// The folder holding this path, or `None` for a top-level name.
    pub fn parent(&self) -> Option<ImagePath> {
        let cut = self.0.iter().rposition(|&b| b == b'/')?;
        Some(ImagePath(self.0[..cut].to_vec()))
    }

    /// Every proper ancestor, outermost first (`a`, `a/b` for `a/b/c`).
    pub fn ancestors(&self) -> impl Iterator<Item = ImagePath> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'/')
            .map(|(i, _)| ImagePath(self.0[..i].to_vec()))
    }

    /// Whether `self` is `other` or lies inside it.
    pub fn starts_with(&self, other: &ImagePath) -> bool {
        self.0.starts_with(&other.0)
            && (self.0.len() == other.0.len() || self.0[other.0.len()] == b'/')
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/')
    }
}

impl Ord for ImagePath {
    fn cmp(&self, other: &ImagePath) -> Ordering {
        self.components().cmp(other.components())
    }
}

impl PartialOrd for ImagePath {
    fn partial_cmp(&self, other: &ImagePath) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Shown as an absolute path, non-UTF-8 bytes replaced.
impl fmt::Display for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", format!("{self}"))
    }
}

/// Where the bytes of a regular file come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileSource {
    /// A file on the build machine, read when the layer is written. Its size is
    /// checked again then, so a file that changes during the build is an error
    /// rather than a corrupt layer.
    Path(PathBuf),
    /// Bytes gpubox generated.
    Bytes(Arc<[u8]>),
}

/// What kind of thing an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    File {
        source: FileSource,
        size: u64,
    },
    /// The link text, stored as it is and never followed.
    Symlink {
        target: Vec<u8>,
    },
    /// A second name for a regular file written earlier in the same layer.
    HardLink {
        target: ImagePath,
    },
}

/// One thing in a layer. Modification times are not per entry: a layer has one
/// mtime for everything, the image's `created` time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: ImagePath,
    pub kind: EntryKind,
    /// Permission bits, including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Entry {
    /// A root-owned folder with the given mode.
    pub fn directory(path: ImagePath, mode: u32) -> Entry {
        Entry {
            path,
            kind: EntryKind::Directory,
            mode,
            uid: 0,
            gid: 0,
        }
    }

    /// A root-owned file holding `bytes`.
    pub fn bytes(path: ImagePath, mode: u32, bytes: impl Into<Arc<[u8]>>) -> Entry {
        let bytes: Arc<[u8]> = bytes.into();
        Entry {
            path,
            kind: EntryKind::File {
                size: bytes.len() as u64,
                source: FileSource::Bytes(bytes),
            },
            mode,
            uid: 0,
            gid: 0,
        }
    }

    /// A root-owned symbolic link to `target`.
    pub fn symlink(path: ImagePath, target: impl Into<Vec<u8>>) -> Entry {
        Entry {
            path,
            kind: EntryKind::Symlink {
                target: target.into(),
            },
            mode: 0o777,
            uid: 0,
            gid: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ImagePath {
        ImagePath::new(s).unwrap()
    }

    #[test]
    fn normalises_slashes_and_dots() {
        assert_eq!(p("/a//b/./c/").as_bytes(), b"a/b/c");
        assert!(matches!(ImagePath::new("/"), Err(BadImagePath::Empty(_))));
        assert!(matches!(
            ImagePath::new("a/../b"),
            Err(BadImagePath::ParentComponent(_))
        ));
    }

    #[test]
    fn orders_depth_first_by_component() {
        let mut v = [p("a.c"), p("a/b"), p("a"), p("b"), p("a/b/c"), p("a-b")];
        v.sort();
        let shown: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        assert_eq!(shown, ["/a", "/a/b", "/a/b/c", "/a-b", "/a.c", "/b"]);
    }

    #[test]
    fn ancestors_and_prefixes() {
        let path = p("nix/store/x");
        let anc: Vec<String> = path.ancestors().map(|a| a.to_string()).collect();
        assert_eq!(anc, ["/nix", "/nix/store"]);
        assert!(path.starts_with(&p("nix/store")));
        assert!(!p("nix/storex").starts_with(&p("nix/store")));
        assert_eq!(path.parent(), Some(p("nix/store")));
    }
}
