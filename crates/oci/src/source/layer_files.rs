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
    let mut found = LayerFiles::new();
    let mut removed: BTreeSet<&str> = BTreeSet::new();
    for entry in read_entries(&mut tar) {
        let entry = entry?;
        let path = String::from_utf8_lossy(&entry.path).into_owned();
        let (folder, name) = path.rsplit_once('/').unwrap_or(("", &path));
        let under = |dir: &str, w: &str| {
            dir.is_empty() || w.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
        };
        if name == OPAQUE_WHITEOUT {
            removed.extend(wanted.iter().copied().filter(|w| under(folder, w)));
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let hidden = match folder {
                "" => hidden.to_owned(),
                folder => format!("{folder}/{hidden}"),
            };
            removed.extend(
                wanted
                    .iter()
                    .copied()
                    .filter(|w| *w == hidden || under(&hidden, w)),
            );
        } else if wanted.contains(&path.as_str()) {
            let text = match entry.kind {
                TarEntryKind::File => recording.borrow().content(entry.size),
                _ => None,
            };
            found.insert(path, text.map_or(LayerFile::Other, LayerFile::Text));
        } else if entry.kind != TarEntryKind::Directory {
            // A parent that is now a link or a file: what lies below is
            // not something gpubox can follow.
            for w in wanted.iter().filter(|w| under(&path, w)) {
                found.insert((*w).to_owned(), LayerFile::Other);
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
    /// Something else there: a link, a folder, a device, or a file too large
    /// or not UTF-8.
    Other,
    /// Removed from what the layers below have.
    Removed,
}

/// The changes one layer makes, by path; paths it leaves alone are absent.
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
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let at = dir.path().join(path);
            match content {
                Some(text) => {
                    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
                    std::fs::write(at, text).unwrap();
                }
                None => std::fs::create_dir_all(at).unwrap(),
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
}
