//! Looking inside store paths wherever they are: on this machine's disk, or, for
//! paths only a binary cache has, in the cache's NAR listings (`nix store ls`),
//! so a build can answer "is there a `bin/sh` in this closure?" without copying
//! gigabytes it will not put in a layer.
//!
//! Listings of the paths elsewhere are read once, a few at a time, when the
//! [`StoreFs`] is made:
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
        // One `nix store ls` per path, a few at a time: each waits on the
        // cache (a download, for a remote one) more than on a core.
        let paths: Vec<&StorePath> = paths.iter().collect();
        let per_thread = paths.len().div_ceil(LISTINGS_AT_ONCE).max(1);
        let listed: Vec<Result<Vec<(StorePath, Value)>, NixError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = paths
                .chunks(per_thread)
                .map(|chunk| {
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|path| Ok(((*path).clone(), nix.listing(path, substituter)?)))
                            .collect()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| {
                    worker.join().unwrap_or_else(|_| {
                        Err(NixError::Io {
                            action: "listing store paths".to_owned(),
                            source: io::Error::other("a listing thread stopped unexpectedly"),
                        })
                    })
                })
                .collect()
        });
        let mut listings = BTreeMap::new();
        for chunk in listed {
            listings.extend(chunk?);
        }
        Ok(StoreFs {
            elsewhere: Some((substituter.to_owned(), listings)),
            nix: nix.clone(),
        })
    }

    /// The binary cache the paths this store lacks are read from, if any.
    pub fn substituter(&self) -> Option<&str> {
        self.elsewhere
            .as_ref()
            .map(|(substituter, _)| substituter.as_str())
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
    /// Links on the way are followed, in the listings as on disk.
    pub fn node(&self, path: &Path) -> Option<StoreNode> {
        let disk = match self.find(path, false) {
            Found::Listed(entry, _) => return node_of(entry),
            Found::Missing => return None,
            Found::Disk(disk) => disk,
        };
        let meta = std::fs::symlink_metadata(&disk).ok()?;
        Some(if meta.is_symlink() {
            StoreNode::Symlink(std::fs::read_link(&disk).ok()?)
        } else if meta.is_dir() {
            StoreNode::Directory
        } else {
            use std::os::unix::fs::PermissionsExt;
            StoreNode::File {
                executable: meta.permissions().mode() & 0o111 != 0,
            }
        })
    }

    /// The names in the folder `path` leads to (links followed, a final one
    /// too, as `read_dir` on disk does), unsorted; `None` where it is no folder.
    pub fn read_dir(&self, path: &Path) -> Option<Vec<OsString>> {
        match self.find(path, true) {
            Found::Listed(entry, _) => {
                let entries = entry.get("entries")?.as_object()?;
                Some(entries.keys().map(OsString::from).collect())
            }
            Found::Missing => None,
            Found::Disk(disk) => {
                let read = std::fs::read_dir(disk).ok()?;
                Some(read.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            }
        }
    }

    /// The bytes of the file `path` leads to: from disk, or from the binary
    /// cache (`nix store cat`) for a path this store lacks.
    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        match (self.find(path, true), &self.elsewhere) {
            (Found::Listed(_, resolved), Some((substituter, _))) => self
                .nix
                .cat(&resolved, substituter)
                .map_err(io::Error::other),
            (Found::Disk(disk), _) => std::fs::read(disk),
            _ => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    /// Where `path` leads: into a listing (its entry and the path with links
    /// resolved), to disk (a path outside the listed store paths, which the
    /// disk resolves itself), or nowhere. Links in the listings are followed as
    /// the kernel would, relative ones from the folder they are in, absolute
    /// ones from `/` (into another listed path, or to disk); the last one only
    /// when `follow_last`.
    fn find(&self, path: &Path, follow_last: bool) -> Found<'_> {
        let mut path = path.to_path_buf();
        for _ in 0..MAX_LINKS {
            match self.step(&path, follow_last) {
                Step::Done(found) => return found,
                Step::Link(next) => path = next,
            }
        }
        Found::Missing
    }

    /// Walks `path` through the listings up to its first link to follow.
    fn step(&self, path: &Path, follow_last: bool) -> Step<'_> {
        let Some((_, listings)) = &self.elsewhere else {
            return Step::Done(Found::Disk(path.to_path_buf()));
        };
        let Some((store_path, rest)) = split_store_path(path) else {
            return Step::Done(Found::Disk(path.to_path_buf()));
        };
        let Some(root) = listings.get(&store_path) else {
            return Step::Done(Found::Disk(path.to_path_buf()));
        };
        // The folders walked so far, and their entries.
        let mut names: Vec<OsString> = Vec::new();
        let mut nodes: Vec<&Value> = vec![root];
        let mut pending: std::collections::VecDeque<Component<'_>> = rest.into();
        let here = |names: &[OsString]| -> PathBuf {
            let mut at = PathBuf::from(store_path.as_str());
            at.extend(names);
            at
        };
        while let Some(component) = pending.pop_front() {
            let name = match component {
                Component::Normal(name) => name,
                Component::ParentDir if names.pop().is_some() => {
                    nodes.pop();
                    continue;
                }
                // Above the store path: into the store folder itself.
                Component::ParentDir => {
                    let mut next = PathBuf::from(crate::STORE_DIR);
                    next.extend(pending);
                    return Step::Link(next);
                }
                _ => continue,
            };
            let Some(node) = nodes.last() else {
                return Step::Done(Found::Missing);
            };
            let Some(child) = name
                .to_str()
                .and_then(|name| node.get("entries")?.get(name))
            else {
                return Step::Done(Found::Missing);
            };
            let is_link = child.get("type").and_then(Value::as_str) == Some("symlink");
            if is_link && (follow_last || !pending.is_empty()) {
                let Some(target) = child.get("target").and_then(Value::as_str) else {
                    return Step::Done(Found::Missing);
                };
                let mut next = here(&names).join(target);
                next.extend(pending);
                return Step::Link(next);
            }
            names.push(name.to_os_string());
            nodes.push(child);
        }
        match nodes.last() {
            Some(node) => Step::Done(Found::Listed(node, here(&names))),
            None => Step::Done(Found::Missing),
        }
    }
}

/// How many `nix store ls` run at once when a build starts.
const LISTINGS_AT_ONCE: usize = 4;

/// How many links a lookup follows before it gives up, as Linux's `ELOOP`.
const MAX_LINKS: usize = 40;

/// Where a lookup ended.
enum Found<'a> {
    Listed(&'a Value, PathBuf),
    Disk(PathBuf),
    Missing,
}

/// One stretch of a lookup: its end, or the path a link sends it on to.
enum Step<'a> {
    Done(Found<'a>),
    Link(PathBuf),
}

/// `/nix/store/HASH-NAME/REST` as the store path and REST's components, `..`
/// kept (the lookup resolves them as it walks).
fn split_store_path(path: &Path) -> Option<(StorePath, Vec<Component<'_>>)> {
    let below = path.strip_prefix(crate::STORE_DIR).ok()?;
    let mut components = below.components();
    let Some(Component::Normal(base)) = components.next() else {
        return None;
    };
    let store_path = StorePath::parse(&format!("{}/{}", crate::STORE_DIR, base.to_str()?)).ok()?;
    Some((store_path, components.collect()))
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

    const OTHER: &str = "/nix/store/1123456789abcdfghijklmnpqrsvwxyz-other";

    /// Two listed paths: PATH's `bin` is a relative link to `sbin`, its `etc`
    /// an absolute link into OTHER, whose `lib64` links to `lib`.
    fn linked() -> StoreFs {
        let path = serde_json::json!({"type": "directory", "entries": {
            "sbin": {"type": "directory", "entries": {
                "tool": {"type": "regular", "size": 1, "executable": true},
            }},
            "bin": {"type": "symlink", "target": "sbin"},
            "etc": {"type": "symlink", "target": format!("{OTHER}/etc")},
            "up": {"type": "symlink", "target": "../1123456789abcdfghijklmnpqrsvwxyz-other/lib"},
            "loop": {"type": "symlink", "target": "loop"},
        }});
        let other = serde_json::json!({"type": "directory", "entries": {
            "etc": {"type": "directory", "entries": {
                "ssl": {"type": "directory", "entries": {}},
            }},
            "lib": {"type": "directory", "entries": {
                "libcudart.so.12.4.127": {"type": "regular", "size": 1},
            }},
            "lib64": {"type": "symlink", "target": "lib"},
        }});
        StoreFs {
            elsewhere: Some((
                "file:///nowhere".to_owned(),
                BTreeMap::from([
                    (StorePath::parse(PATH).unwrap(), path),
                    (StorePath::parse(OTHER).unwrap(), other),
                ]),
            )),
            nix: Nix::new(),
        }
    }

    #[test]
    fn links_in_listings_are_followed_as_on_disk() {
        let fs = linked();
        let at = |rest: &str| Path::new(PATH).join(rest);
        // Not the last one for node, as symlink_metadata.
        assert_eq!(fs.node(&at("bin")), Some(StoreNode::Symlink("sbin".into())));
        assert_eq!(
            fs.node(&at("bin/tool")),
            Some(StoreNode::File { executable: true })
        );
        assert_eq!(fs.node(&at("etc/ssl")), Some(StoreNode::Directory));
        assert_eq!(fs.read_dir(&at("bin")), Some(vec![OsString::from("tool")]));
        let cuda = fs.read_dir(&Path::new(OTHER).join("lib64")).unwrap();
        assert_eq!(cuda, [OsString::from("libcudart.so.12.4.127")]);
        // `..` climbs from the folder the link is in, out of the store path.
        assert_eq!(fs.read_dir(&at("up")).map(|names| names.len()), Some(1));
        assert_eq!(
            fs.node(&at("sbin/../bin/tool")),
            Some(StoreNode::File { executable: true })
        );
        // A loop ends, as ELOOP does.
        assert_eq!(fs.node(&at("loop/x")), None);
        assert_eq!(fs.node(&at("bin/missing")), None);
    }
}
