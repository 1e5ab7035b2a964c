//! Looking inside store paths wherever they are: on this machine's disk, or, for
//! paths only a binary cache has, in the cache's NAR listings (`nix store ls`),
//! so a build can answer "is there a `bin/sh` in this closure?" without copying
//! gigabytes it will not put in a layer.
//!
//! Listings of the paths elsewhere are read once, when the [`StoreFs`] is made:
//! the answers then cannot fail halfway through a build, and a cache that cannot
//! list a path fails the build at its start, naming the path. A cache written
//! with `?write-nar-listing=1` (cache.nixos.org has them) serves listings as small
//! `.ls` files; any other is read NAR by NAR, which costs a download but never a
//! copy into the store.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::{Nix, NixError, StorePath};

/// What is at a path, as `symlink_metadata` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreNode {
    Directory,
    File { executable: bool },
    Symlink(PathBuf),
}

/// Reads inside store paths: from disk, or from a binary cache's listings for
/// the paths this store lacks (see the module doc).
#[derive(Debug, Default)]
pub struct StoreFs {
    /// The binary cache, with a listing of each path taken from it.
    elsewhere: Option<(String, BTreeMap<StorePath, Value>)>,
    nix: Nix,
}

impl StoreFs {
    /// Reads everything from disk.
    pub fn local() -> StoreFs {
        StoreFs::default()
    }

    /// Reads `paths` from `substituter`'s listings (fetched now) and everything
    /// else from disk.
    pub fn with_substituter(
        nix: &Nix,
        substituter: &str,
        paths: &BTreeSet<StorePath>,
    ) -> Result<StoreFs, NixError> {
        let listings = paths
            .iter()
            .map(|path| Ok((path.clone(), nix.listing(path, substituter)?)))
            .collect::<Result<BTreeMap<_, _>, NixError>>()?;
        Ok(StoreFs {
            elsewhere: Some((substituter.to_owned(), listings)),
            nix: nix.clone(),
        })
    }

    /// The store paths this store lacks, read from the binary cache.
    pub fn elsewhere(&self) -> impl Iterator<Item = &StorePath> {
        self.elsewhere
            .iter()
            .flat_map(|(_, listings)| listings.keys())
    }

    /// Whether `path` (a store path) is read from the binary cache.
    pub fn is_elsewhere(&self, path: &StorePath) -> bool {
        self.elsewhere
            .as_ref()
            .is_some_and(|(_, listings)| listings.contains_key(path))
    }

    /// Whether `path` lies inside a store path read from the binary cache.
    pub fn is_elsewhere_path(&self, path: &Path) -> bool {
        StorePath::containing(path).is_some_and(|(store_path, _)| self.is_elsewhere(&store_path))
    }

    /// What is at `path`, not following a final link; `None` where nothing is.
    pub fn node(&self, path: &Path) -> Option<StoreNode> {
        if let Some(listed) = self.listed(path) {
            return listed.and_then(node_of);
        }
        let meta = std::fs::symlink_metadata(path).ok()?;
        Some(if meta.is_symlink() {
            StoreNode::Symlink(std::fs::read_link(path).ok()?)
        } else if meta.is_dir() {
            StoreNode::Directory
        } else {
            use std::os::unix::fs::PermissionsExt;
            StoreNode::File {
                executable: meta.permissions().mode() & 0o111 != 0,
            }
        })
    }

    /// The names in the folder `path` (not following a final link), unsorted;
    /// `None` where it is no folder.
    pub fn read_dir(&self, path: &Path) -> Option<Vec<OsString>> {
        if let Some(listed) = self.listed(path) {
            let entries = listed?.get("entries")?.as_object()?;
            return Some(entries.keys().map(OsString::from).collect());
        }
        let read = std::fs::read_dir(path).ok()?;
        Some(read.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
    }

    /// The bytes of the file at `path`: from disk, or from the binary cache
    /// (`nix store cat`) for a path this store lacks.
    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        match &self.elsewhere {
            Some((substituter, _)) if self.is_elsewhere_path(path) => {
                self.nix.cat(path, substituter).map_err(io::Error::other)
            }
            _ => std::fs::read(path),
        }
    }

    /// For a path inside a store path read from the cache: `Some` with its
    /// listing entry (`None` where the listing has nothing); `None` for a path
    /// read from disk.
    fn listed(&self, path: &Path) -> Option<Option<&Value>> {
        let (_, listings) = self.elsewhere.as_ref()?;
        let (store_path, rest) = StorePath::containing(path)?;
        let mut node = listings.get(&store_path)?;
        for component in rest.components() {
            let Component::Normal(name) = component else {
                continue;
            };
            let Some(next) = name
                .to_str()
                .and_then(|name| node.get("entries")?.get(name))
            else {
                return Some(None);
            };
            node = next;
        }
        Some(Some(node))
    }
}

/// Store paths unpacked outside the store ([`Nix::unpack`]), for layers to read
/// them from (with the store's modes, see `gpubox_oci::tar::Modes::Store`), in
/// a temporary folder removed when this is dropped.
#[derive(Debug, Default)]
pub struct UnpackedPaths {
    dir: Option<tempfile::TempDir>,
    paths: BTreeMap<StorePath, PathBuf>,
}

impl UnpackedPaths {
    /// Unpacks `path` from `substituter` into a temporary folder made in `tmp`
    /// on first use (named by `folder_name`, so an interrupted build's leftovers
    /// can be found and removed).
    pub fn unpack(
        &mut self,
        nix: &Nix,
        path: &StorePath,
        substituter: &str,
        tmp: &Path,
        folder_name: &str,
    ) -> Result<(), NixError> {
        let dir = match &self.dir {
            Some(dir) => dir,
            None => self.dir.insert(
                tempfile::Builder::new()
                    .prefix(folder_name)
                    .tempdir_in(tmp)
                    .map_err(|source| NixError::Io {
                        action: format!(
                            "making a folder in {} to unpack store paths in",
                            tmp.display()
                        ),
                        source,
                    })?,
            ),
        };
        let into = dir.path().join(path.base_name());
        nix.unpack(path, substituter, &into)?;
        self.paths.insert(path.clone(), into);
        Ok(())
    }

    /// Where `path` was unpacked, if it was.
    pub fn get(&self, path: &StorePath) -> Option<&Path> {
        self.paths.get(path).map(PathBuf::as_path)
    }
}

/// A listing entry as a [`StoreNode`].
fn node_of(entry: &Value) -> Option<StoreNode> {
    match entry.get("type")?.as_str()? {
        "directory" => Some(StoreNode::Directory),
        "regular" => Some(StoreNode::File {
            executable: entry.get("executable").and_then(Value::as_bool) == Some(true),
        }),
        "symlink" => Some(StoreNode::Symlink(PathBuf::from(
            entry.get("target")?.as_str()?,
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-listed";

    fn listed() -> StoreFs {
        let listing = serde_json::json!({
            "type": "directory",
            "entries": {
                "bin": {"type": "directory", "entries": {
                    "hello": {"type": "regular", "size": 3, "executable": true},
                    "hi": {"type": "symlink", "target": "hello"},
                }},
                "README": {"type": "regular", "size": 1},
            }
        });
        let path = StorePath::parse(PATH).unwrap();
        StoreFs {
            elsewhere: Some((
                "file:///nowhere".to_owned(),
                BTreeMap::from([(path, listing)]),
            )),
            nix: Nix::new(),
        }
    }

    #[test]
    fn a_listed_path_answers_like_the_disk_would() {
        let fs = listed();
        let at = |rest: &str| fs.node(&Path::new(PATH).join(rest));
        assert_eq!(at(""), Some(StoreNode::Directory));
        assert_eq!(at("bin/hello"), Some(StoreNode::File { executable: true }));
        assert_eq!(at("README"), Some(StoreNode::File { executable: false }));
        assert_eq!(at("bin/hi"), Some(StoreNode::Symlink("hello".into())));
        assert_eq!(at("bin/missing"), None);
        assert_eq!(at("README/below"), None);
        let mut names = fs.read_dir(&Path::new(PATH).join("bin")).unwrap();
        names.sort();
        assert_eq!(names, ["hello", "hi"]);
        assert!(fs.read_dir(&Path::new(PATH).join("README")).is_none());
        assert!(fs.is_elsewhere(&StorePath::parse(PATH).unwrap()));
        // Anything else is read from disk.
        assert_eq!(fs.node(Path::new("/")), Some(StoreNode::Directory));
    }
}
