//! Where an image's files are ([`Backing`]): a folder (an OCI layout, or a blob
//! store a pull filled) or the members of a tar (an oci-archive or a
//! docker-archive). Archives are indexed once (member name to offset and size)
//! and members are then read with seeks, so nothing is unpacked.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::error::{io_error, ReadError};
use super::summary::CountingReader;
use crate::digest::Digest;
use crate::image::Descriptor;
use crate::tar::{read_entries, TarEntryKind};

/// Where an image's files are: a folder, or members of a tar.
pub(super) enum Backing {
    Folder(PathBuf),
    Tar {
        file: PathBuf,
        members: HashMap<String, Span>,
    },
}

/// Where a member's data lies in its tar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    offset: u64,
    size: u64,
}

impl Backing {
    pub(super) fn location(&self) -> &Path {
        match self {
            Backing::Folder(path) | Backing::Tar { file: path, .. } => path,
        }
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        match self {
            Backing::Folder(dir) => dir.join(name).is_file(),
            Backing::Tar { members, .. } => members.contains_key(name),
        }
    }

    /// The member's bytes and size; `referrer` says why it should exist, for the
    /// error when it does not.
    /// when it is missing.
    pub(super) fn open(
        &self,
        name: &str,
        referrer: &'static str,
    ) -> Result<(Box<dyn Read>, u64), ReadError> {
        let missing = || ReadError::Missing {
            path: self.location().to_owned(),
            member: name.to_owned(),
            referrer,
        };
        match self {
            Backing::Folder(dir) => {
                let path = dir.join(name);
                let file = File::open(&path).map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => missing(),
                    _ => io_error("open", &path)(e),
                })?;
                let size = file.metadata().map_err(io_error("read", &path))?.len();
                Ok((Box::new(file), size))
            }
            Backing::Tar { file, members } => {
                let span = *members.get(name).ok_or_else(missing)?;
                let mut f = File::open(file).map_err(io_error("open", file))?;
                f.seek(SeekFrom::Start(span.offset))
                    .map_err(io_error("seek in", file))?;
                Ok((Box::new(f.take(span.size)), span.size))
            }
        }
    }

    /// A small member (JSON) read whole; anything over 64 MiB is refused.
    pub(super) fn read_small(
        &self,
        name: &str,
        referrer: &'static str,
    ) -> Result<Vec<u8>, ReadError> {
        const LIMIT: u64 = 64 << 20;
        let (reader, size) = self.open(name, referrer)?;
        if size > LIMIT {
            return Err(ReadError::Unsupported {
                path: self.location().to_owned(),
                detail: format!(
                    "`{name}` is {size} bytes; a JSON document over {LIMIT} bytes is refused"
                ),
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        reader
            .take(LIMIT)
            .read_to_end(&mut bytes)
            .map_err(io_error("read", self.location()))?;
        Ok(bytes)
    }

    /// A blob named by `descriptor`, read whole and checked.
    pub(super) fn read_blob(
        &self,
        descriptor: &Descriptor,
        referrer: &'static str,
    ) -> Result<Vec<u8>, ReadError> {
        let name = blob_name(&descriptor.digest);
        let bytes = self.read_small(&name, referrer)?;
        let actual = Digest::of(&bytes);
        if actual != descriptor.digest || bytes.len() as u64 != descriptor.size {
            return Err(ReadError::Corrupt {
                what: format!("blob `{name}`"),
                path: self.location().to_owned(),
                detail: format!(
                    "it is {} bytes with digest {actual}, but {} bytes with digest {} were expected",
                    bytes.len(),
                    descriptor.size,
                    descriptor.digest
                ),
            });
        }
        Ok(bytes)
    }
}

pub(super) fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// A member name as tar writers vary it (`./a`, `/a`, `a/./b`) brought to the
/// form manifests use (`a`, `a/b`).
pub(super) fn normalize_member(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// Indexes the tar at `file`: normalized member name to the span of its data,
/// for regular files and for hard and symbolic links to them.
pub(super) fn index_tar(file: &Path) -> Result<HashMap<String, Span>, ReadError> {
    const BLOCK: u64 = 512;
    let handle = File::open(file).map_err(io_error("open", file))?;
    let position = Cell::new(0);
    let mut reader = CountingReader {
        inner: BufReader::with_capacity(256 * 1024, handle),
        count: &position,
    };
    let mut members = HashMap::new();
    let mut links: Vec<(String, String)> = Vec::new();
    for entry in read_entries(&mut reader) {
        let entry = entry.map_err(|e| ReadError::BadTar {
            path: file.to_owned(),
            detail: e.to_string(),
        })?;
        let name = normalize_member(&String::from_utf8_lossy(&entry.path));
        let link = entry.link.as_deref().map(String::from_utf8_lossy);
        match (entry.kind, link) {
            (TarEntryKind::File, _) => {
                // The reader has just skipped this entry's data and padding.
                let end = position.get();
                let offset = end - entry.size.div_ceil(BLOCK) * BLOCK;
                members.insert(
                    name,
                    Span {
                        offset,
                        size: entry.size,
                    },
                );
            }
            (TarEntryKind::HardLink, Some(target)) => links.push((name, normalize_member(&target))),
            (TarEntryKind::Symlink, Some(target)) => {
                let target = match (target.starts_with('/'), name.rsplit_once('/')) {
                    (false, Some((folder, _))) => format!("{folder}/{target}"),
                    _ => target.into_owned(),
                };
                links.push((name, normalize_member(&target)));
            }
            _ => {}
        }
    }
    resolve_links(&mut members, &links);
    Ok(members)
}

/// Gives each link the span of the file it leads to, following chains of links.
fn resolve_links(members: &mut HashMap<String, Span>, links: &[(String, String)]) {
    const MAX_HOPS: usize = 16;
    let targets: HashMap<&str, &str> = links
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    for (name, target) in links {
        let mut current = target.as_str();
        for _ in 0..MAX_HOPS {
            if let Some(&span) = members.get(current) {
                members.insert(name.clone(), span);
                break;
            }
            match targets.get(current) {
                Some(next) => current = next,
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_in_an_archive_resolve_to_the_file_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let content = dir.path().join("content");
        std::fs::create_dir_all(content.join("legacy")).unwrap();
        std::fs::write(content.join("layer.tar"), vec![7u8; 1500]).unwrap();
        std::os::unix::fs::symlink("../layer.tar", content.join("legacy/layer.tar")).unwrap();
        std::fs::hard_link(content.join("layer.tar"), content.join("copy.tar")).unwrap();
        let archive = dir.path().join("a.tar");
        let status = std::process::Command::new("tar")
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(&content)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());

        let members = index_tar(&archive).unwrap();
        let file = members["layer.tar"];
        assert_eq!(file.size, 1500);
        assert_eq!(members["legacy/layer.tar"], file);
        assert_eq!(members["copy.tar"], file);
        let backing = Backing::Tar {
            file: archive,
            members,
        };
        let (reader, size) = backing.open("legacy/layer.tar", "test").unwrap();
        let mut bytes = Vec::new();
        reader.take(size).read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, vec![7u8; 1500]);
    }

    #[test]
    fn member_names_are_normalized() {
        assert_eq!(normalize_member("./blobs//sha256/./ab"), "blobs/sha256/ab");
        assert_eq!(normalize_member("/abc/../manifest.json"), "manifest.json");
    }
}
