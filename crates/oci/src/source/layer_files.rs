//! What a layer does at a few paths, with its whiteouts applied
//! ([`ImageReader::layer_files`]), and layers stacked over each other
//! ([`stack_layer_files`]), so a caller sees what a base image holds at those
//! paths without unpacking it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};

use serde::{Deserialize, Serialize};

use super::error::ReadError;
#[cfg(doc)]
use super::ImageReader;
use crate::tar::{read_entries, TarEntryKind};

/// [`ImageReader::layer_files`] of an uncompressed layer tar.
pub(super) fn scan_files(layer: impl Read, wanted: &[&str]) -> Result<LayerFiles, ReadError> {
    let recording = RefCell::new(Recording::default());
    let mut tar = Recorder {
        inner: layer,
        recording: &recording,
    };
    // The wanted paths and the folders above them: a link or a whiteout at any of
    // them changes what the image shows at a wanted path.
    let mut interesting: BTreeSet<&str> = BTreeSet::new();
    for path in wanted {
        interesting.insert(path);
        interesting.extend(path.match_indices('/').map(|(at, _)| &path[..at]));
    }
    let under = |dir: &str, path: &str| {
        dir.is_empty() || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
    };
    let mut found = LayerFiles::new();
    let mut removed: BTreeSet<&str> = BTreeSet::new();
    for entry in read_entries(&mut tar) {
        let entry = entry?;
        let path = String::from_utf8_lossy(&entry.path).into_owned();
        let (folder, name) = path.rsplit_once('/').unwrap_or(("", &path));
        if name == OPAQUE_WHITEOUT {
            removed.extend(interesting.iter().copied().filter(|p| under(folder, p)));
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let hidden = match folder {
                "" => hidden.to_owned(),
                folder => format!("{folder}/{hidden}"),
            };
            removed.extend(
                interesting
                    .iter()
                    .copied()
                    .filter(|p| *p == hidden || under(&hidden, p)),
            );
        } else if let Some(&known) = interesting.get(path.as_str()) {
            let is_wanted = wanted.contains(&known);
            let link = || String::from_utf8_lossy(entry.link.as_deref().unwrap_or_default());
            match entry.kind {
                // A folder over a lower layer's link or file replaces it: the runtime
                // does not merge a folder into what is not one.
                TarEntryKind::Directory if !is_wanted => {
                    removed.insert(known);
                }
                kind => {
                    let file = match kind {
                        TarEntryKind::File if is_wanted => recording
                            .borrow()
                            .content(entry.size)
                            .map_or(LayerFile::Other, LayerFile::Text),
                        TarEntryKind::Symlink => LayerFile::Link(link().into_owned()),
                        // A hard link names a path of the image, as an absolute link does.
                        TarEntryKind::HardLink => LayerFile::Link(format!("/{}", link())),
                        _ => LayerFile::Other,
                    };
                    found.insert(path, file);
                }
            }
        }
        // What the next entry's read brings starts afresh.
        recording.borrow_mut().restart();
    }
    // The rest of the stream, so the layer's digest is checked.
    io::copy(&mut tar, &mut io::sink()).map_err(ReadError::LayerStream)?;
    for path in removed {
        found.entry(path.to_owned()).or_insert(LayerFile::Removed);
    }
    Ok(found)
}

/// A whiteout's name starts with this; the rest names the path it removes.
const WHITEOUT_PREFIX: &str = ".wh.";
/// This name in a folder hides everything lower layers have in it.
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// Files larger than this are not read by [`ImageReader::layer_files`].
const SMALL_FILE_LIMIT: u64 = 1 << 20;

/// What a layer does at one path, as [`ImageReader::layer_files`] sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LayerFile {
    /// A regular file holding this UTF-8 text.
    Text(String),
    /// A symbolic link with this target (a hard link is written as the absolute
    /// path it names), at a wanted path or a folder above one; see [`follow_links`].
    Link(String),
    /// Something else there: a device, a file too large or not UTF-8, or a file
    /// where a folder above a wanted path should be.
    Other,
    /// Removed from what the layers below have.
    Removed,
}

/// The changes one layer makes, by path; paths it leaves alone are absent. Besides the
/// wanted paths, the folders above them are recorded where the layer puts a link or a
/// file there, or a folder ([`LayerFile::Removed`]: a lower layer's link or file there
/// is replaced), so that links can be followed through the stacked layers.
pub type LayerFiles = BTreeMap<String, LayerFile>;

/// Lays layers' changes (bottom first) over each other: what the image shows
/// at each path. Paths that end up removed or never present are absent, so
/// no value is [`LayerFile::Removed`].
pub fn stack_layer_files<'a>(
    layers: impl IntoIterator<Item = &'a LayerFiles>,
) -> BTreeMap<String, LayerFile> {
    let mut image = BTreeMap::new();
    for layer in layers {
        for (path, change) in layer {
            match change {
                LayerFile::Removed => image.remove(path),
                other => image.insert(path.clone(), other.clone()),
            };
        }
    }
    image
}

/// How many links one lookup follows before giving up, as Linux does (`ELOOP`).
pub const MAX_LINKS: usize = 40;

/// Where following an image's links from a path ends ([`follow_links`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Followed {
    /// The links lead to `path`, where the image holds `file` (`None`: nothing, or a
    /// folder). `links` are the links followed, in order: (where, target).
    Reached {
        path: String,
        file: Option<LayerFile>,
        links: Vec<(String, String)>,
    },
    /// The walk reached `path`, which the layers were not read for: read them again
    /// with it wanted, and follow again.
    Unread(String),
    /// More than [`MAX_LINKS`] links; those followed.
    TooManyLinks(Vec<(String, String)>),
}

/// Follows the links of `image` (stacked layer files, [`stack_layer_files`]) from
/// `path`, inside the image as a process in the container would: an absolute target
/// starts from the image's root, `..` at the root stays there, and nothing outside
/// the image is looked at. `read` lists the paths the layers were read for (their
/// parent folders are known too); paths are relative, without a leading `/`.
pub fn follow_links(
    image: &BTreeMap<String, LayerFile>,
    read: &BTreeSet<String>,
    path: &str,
) -> Followed {
    let kind_at = |at: &str, last: bool| match image.get(at) {
        _ if !was_read(read, at, last) => PathKind::Unread,
        Some(LayerFile::Link(target)) => PathKind::Link(target.clone()),
        Some(_) => PathKind::File,
        None => PathKind::FolderOrNothing,
    };
    match walk_links(kind_at, path, "") {
        Walked::Reached {
            path,
            blocked,
            links,
        } => Followed::Reached {
            file: if blocked {
                None
            } else {
                image.get(&path).cloned()
            },
            path,
            links,
        },
        Walked::Unread(path) => Followed::Unread(path),
        Walked::TooManyLinks(links) => Followed::TooManyLinks(links),
    }
}

/// Whether layers read for the paths `read` tell what is at `path`: the path itself
/// must have been read when it is the `last` of a walk; a folder on the way is known
/// from the reading of a path below it.
pub fn was_read(read: &BTreeSet<String>, path: &str, last: bool) -> bool {
    read.contains(path)
        || !last
            && read.iter().any(|wanted| {
                wanted
                    .strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with('/'))
            })
}

/// What one path of an image is, as [`walk_links`] asks it of the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// A symbolic link to this target.
    Link(String),
    /// A file (anything that is neither a folder nor a link).
    File,
    /// A folder, or nothing (then nothing is below it either).
    FolderOrNothing,
    /// Not known yet: the caller must read more of the image first.
    Unread,
}

/// Where [`walk_links`] ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Walked {
    /// The links lead to `path` (relative, no links left in it); `blocked` when a
    /// file stands where a folder above it should be, so nothing is there.
    /// `links` are the links followed, in order: (where, target).
    Reached {
        path: String,
        blocked: bool,
        links: Vec<(String, String)>,
    },
    /// This path (the whole path being followed at that point) must be read first.
    Unread(String),
    /// More than [`MAX_LINKS`] links; those followed.
    TooManyLinks(Vec<(String, String)>),
}

/// Follows the links on the way to `path` (absolute, or relative to the folder
/// `from`), asking `kind_at(prefix, is_last)` what each path on the way is: the one
/// walk behind [`follow_links`] and the build's check of the programs an image runs.
/// Absolute targets start from the image's root and `..` stops there.
pub fn walk_links(kind_at: impl Fn(&str, bool) -> PathKind, path: &str, from: &str) -> Walked {
    let mut components = Vec::new();
    if !path.starts_with('/') {
        push_components(&mut components, from);
    }
    push_components(&mut components, path);
    let mut links = Vec::new();
    'walk: loop {
        let joined = components.join("/");
        for depth in 1..=components.len() {
            let prefix = components[..depth].join("/");
            let last = depth == components.len();
            match kind_at(&prefix, last) {
                PathKind::Unread => return Walked::Unread(joined),
                PathKind::Link(target) => {
                    if links.len() == MAX_LINKS {
                        return Walked::TooManyLinks(links);
                    }
                    let mut next = if target.starts_with('/') {
                        Vec::new()
                    } else {
                        components[..depth - 1].to_vec()
                    };
                    push_components(&mut next, &target);
                    next.extend_from_slice(&components[depth..]);
                    links.push((prefix, target));
                    components = next;
                    continue 'walk;
                }
                PathKind::File if !last => {
                    return Walked::Reached {
                        path: joined,
                        blocked: true,
                        links,
                    }
                }
                PathKind::File | PathKind::FolderOrNothing => {}
            }
        }
        return Walked::Reached {
            path: joined,
            blocked: false,
            links,
        };
    }
}

/// Appends the parts of `path` to `components`, applying `.` and `..` (which
/// stops at the root).
fn push_components(components: &mut Vec<String>, path: &str) {
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                components.pop();
            }
            name => components.push(name.to_owned()),
        }
    }
}

/// The bytes the last entry's read brought (headers, content, padding), up to
/// a limit past which only the fact that there was more is kept.
#[derive(Default)]
struct Recording {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl Recording {
    fn restart(&mut self) {
        self.bytes.clear();
        self.overflowed = false;
    }

    /// The text of a file of `size` bytes whose content and padding end
    /// the recording.
    fn content(&self, size: u64) -> Option<String> {
        const BLOCK: u64 = 512;
        if self.overflowed || size > SMALL_FILE_LIMIT {
            return None;
        }
        let padded = usize::try_from(size.div_ceil(BLOCK) * BLOCK).ok()?;
        let start = self.bytes.len().checked_sub(padded)?;
        let content = self.bytes.get(start..start + usize::try_from(size).ok()?)?;
        String::from_utf8(content.to_vec()).ok()
    }
}

/// Passes reads on and records them in `recording`.
struct Recorder<'a, R> {
    inner: R,
    recording: &'a RefCell<Recording>,
}

impl<R: Read> Read for Recorder<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Room for a file at the limit, its padding and its headers.
        const KEEP: usize = SMALL_FILE_LIMIT as usize + (64 << 10);
        let n = self.inner.read(buf)?;
        let mut recording = self.recording.borrow_mut();
        if recording.bytes.len() + n > KEEP {
            recording.overflowed = true;
            recording.bytes.clear();
        } else if !recording.overflowed {
            recording.bytes.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar (GNU tar, sorted names) of the folder `files` describes:
    /// (path, Some(content)) for a file, (path, None) for a folder.
    fn gnu_tar(files: &[(&str, Option<&str>)]) -> Vec<u8> {
        let entries: Vec<_> = files
            .iter()
            .map(|(path, text)| (*path, text.map(Ok)))
            .collect();
        tar_entries(&entries)
    }

    /// A tar (GNU tar, sorted names) of folders (`None`), files (`Some(Ok(text))`) and
    /// symbolic links (`Some(Err(target))`), with the folders above them.
    fn tar_entries(entries: &[(&str, Option<Result<&str, &str>>)]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        for (path, what) in entries {
            let at = dir.path().join(path);
            std::fs::create_dir_all(at.parent().unwrap()).unwrap();
            match what {
                None => std::fs::create_dir_all(at).unwrap(),
                Some(Ok(text)) => std::fs::write(at, text).unwrap(),
                Some(Err(target)) => std::os::unix::fs::symlink(target, at).unwrap(),
            }
        }
        let out = std::process::Command::new("tar")
            .args(["--sort=name", "-cf", "-", "-C"])
            .arg(dir.path())
            .arg(".")
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    }

    #[test]
    fn layer_files_read_small_files_and_apply_whiteouts() {
        let wanted = ["etc/passwd", "etc/group", "etc/nsswitch.conf", "etc/hosts"];
        let big = "x".repeat(SMALL_FILE_LIMIT as usize + 1);
        let lower = gnu_tar(&[
            (
                "etc/passwd",
                Some("root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"),
            ),
            ("etc/group", Some("root:x:0:\n")),
            ("etc/hosts", Some(&big)),
            ("etc/nsswitch.conf", Some("passwd: files\n")),
            ("usr/share/big", Some(&big)),
        ]);
        let lower = scan_files(&lower[..], &wanted).unwrap();
        assert_eq!(
            lower["etc/passwd"],
            LayerFile::Text(
                "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n".into()
            )
        );
        assert_eq!(lower["etc/group"], LayerFile::Text("root:x:0:\n".into()));
        assert_eq!(lower["etc/hosts"], LayerFile::Other);

        let upper = gnu_tar(&[
            ("etc/.wh.group", Some("")),
            ("etc/nsswitch.conf", None),
            ("unrelated", Some("1")),
        ]);
        let upper = scan_files(&upper[..], &wanted).unwrap();
        assert_eq!(upper.get("etc/passwd"), None);
        assert_eq!(upper["etc/group"], LayerFile::Removed);
        assert_eq!(upper["etc/nsswitch.conf"], LayerFile::Other);

        let stacked = stack_layer_files([&lower, &upper]);
        assert!(matches!(stacked["etc/passwd"], LayerFile::Text(ref t) if t.contains("alice")));
        assert_eq!(stacked.get("etc/group"), None);
        assert_eq!(stacked["etc/nsswitch.conf"], LayerFile::Other);

        // An opaque /etc hides the lower layers' files but not its own.
        let opaque = gnu_tar(&[("etc/.wh..wh..opq", Some("")), ("etc/group", Some("g\n"))]);
        let opaque = scan_files(&opaque[..], &wanted).unwrap();
        let stacked = stack_layer_files([&lower, &opaque]);
        assert_eq!(
            stacked.into_iter().collect::<Vec<_>>(),
            [("etc/group".to_owned(), LayerFile::Text("g\n".into()))]
        );
        // Removing /etc itself removes everything under it.
        let gone = gnu_tar(&[(".wh.etc", Some(""))]);
        let gone = scan_files(&gone[..], &wanted).unwrap();
        assert!(stack_layer_files([&lower, &gone]).is_empty());
    }

    /// A tar of files (`Ok(text)`) and symbolic links (`Err(target)`).
    fn tar_with_links(entries: &[(&str, Result<&str, &str>)]) -> Vec<u8> {
        let entries: Vec<_> = entries
            .iter()
            .map(|(path, what)| (*path, Some(*what)))
            .collect();
        tar_entries(&entries)
    }

    /// Reads `layers` for `path`, following links and reading again for what they
    /// lead to, as the build does for a base's account files.
    fn follow_through(layers: &[Vec<u8>], path: &str) -> Followed {
        let mut read = BTreeSet::from([path.to_owned()]);
        loop {
            let wanted: Vec<&str> = read.iter().map(String::as_str).collect();
            let files: Vec<LayerFiles> = layers
                .iter()
                .map(|layer| scan_files(&layer[..], &wanted).unwrap())
                .collect();
            match follow_links(&stack_layer_files(&files), &read, path) {
                Followed::Unread(more) => assert!(read.insert(more), "read twice"),
                done => return done,
            }
        }
    }

    #[test]
    fn links_in_the_layers_are_followed_inside_the_image() {
        // NixOS-style: /etc/passwd -> static/passwd, /etc/static -> a store path.
        let nixos = tar_with_links(&[
            ("etc/passwd", Err("static/passwd")),
            ("etc/group", Err("/etc/static/group")),
            ("etc/static", Err("../nix/store/abc-etc/etc")),
            (
                "nix/store/abc-etc/etc/passwd",
                Ok("alice:x:1000:1000::/home/alice:/bin/sh\n"),
            ),
            ("nix/store/abc-etc/etc/group", Ok("alice:x:1000:\n")),
        ]);
        let layer = scan_files(&nixos[..], &["etc/passwd", "etc/static/passwd"]).unwrap();
        assert_eq!(layer["etc/passwd"], LayerFile::Link("static/passwd".into()));
        assert_eq!(
            layer["etc/static"],
            LayerFile::Link("../nix/store/abc-etc/etc".into())
        );
        match follow_through(std::slice::from_ref(&nixos), "etc/passwd") {
            Followed::Reached { path, file, links } => {
                assert_eq!(path, "nix/store/abc-etc/etc/passwd");
                assert!(matches!(file, Some(LayerFile::Text(t)) if t.starts_with("alice:")));
                assert_eq!(
                    links,
                    [
                        ("etc/passwd".to_owned(), "static/passwd".to_owned()),
                        (
                            "etc/static".to_owned(),
                            "../nix/store/abc-etc/etc".to_owned()
                        )
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            follow_through(std::slice::from_ref(&nixos), "etc/group"),
            Followed::Reached { path, file: Some(LayerFile::Text(_)), .. }
                if path == "nix/store/abc-etc/etc/group"
        ));

        // `..` stops at the image's root: nothing outside the image is reached.
        let escaping = tar_with_links(&[
            ("etc/passwd", Err("../../../../etc/real")),
            ("etc/real", Ok("root:x:0:0::/root:/bin/sh\n")),
        ]);
        assert!(matches!(
            follow_through(&[escaping], "etc/passwd"),
            Followed::Reached { path, file: Some(LayerFile::Text(_)), .. } if path == "etc/real"
        ));

        // A loop ends after MAX_LINKS links.
        let looping = tar_with_links(&[("etc/passwd", Err("group")), ("etc/group", Err("passwd"))]);
        match follow_through(&[looping], "etc/passwd") {
            Followed::TooManyLinks(links) => assert_eq!(links.len(), MAX_LINKS),
            other => panic!("{other:?}"),
        }

        // A later layer's folder replaces a lower layer's link at that path.
        let linked_etc = tar_with_links(&[("etc", Err("/nix/store/abc-etc/etc"))]);
        let real_etc = tar_with_links(&[("etc/passwd", Ok("bob:x:1001:1001::/:/bin/sh\n"))]);
        let lower = scan_files(&linked_etc[..], &["etc/passwd"]).unwrap();
        assert_eq!(
            lower["etc"],
            LayerFile::Link("/nix/store/abc-etc/etc".into())
        );
        assert!(matches!(
            follow_through(std::slice::from_ref(&linked_etc), "etc/passwd"),
            Followed::Reached { path, file: None, links }
                if path == "nix/store/abc-etc/etc/passwd" && links.len() == 1
        ));
        assert!(matches!(
            follow_through(&[linked_etc, real_etc], "etc/passwd"),
            Followed::Reached { path, file: Some(LayerFile::Text(_)), links }
                if path == "etc/passwd" && links.is_empty()
        ));
    }
}
