//! The tar writer and walk against real GNU tar and the `tar` crate: an awkward
//! tree is walked, written, listed and extracted, and must come back exactly.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

mod gnu_tar;

use gnu_tar::gnu_tar;
use gpubox_oci::tar::{
    read_entries, walk, Modes, TarEntryInfo, TarEntryKind, TarWriter, WalkOptions,
};
use gpubox_oci::{Entry, ImagePath};

const MTIME: u64 = 1_700_000_000;
const BIG_SIZE: u64 = 100 * 1024 * 1024 + 12_345;

fn long_name(stem: &str, len: usize) -> String {
    let mut name = stem.to_string();
    while name.len() < len {
        name.push('-');
        name.push_str(&name.len().to_string());
    }
    name
}

fn write_file(path: &Path, content: &[u8], mode: u32) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Everything that trips naive tar writers. `big` adds a sparse file over 100 MB.
fn awkward_tree(root: &Path, big: bool) {
    let mk = |rel: &str, mode: u32| {
        let dir = root.join(rel);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
    };
    mk("bin", 0o755);
    mk("data", 0o750);
    mk("empty-dir", 0o700);
    mk("sticky", 0o1777);
    mk("zoneinfo", 0o755);
    let deep = format!(
        "deep/{}/{}",
        long_name("folder", 120),
        long_name("inner", 90)
    );
    mk(&deep, 0o755);

    write_file(&root.join("bin/run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    write_file(&root.join("bin/setuid"), b"\x7fELF pretend", 0o4755);
    write_file(&root.join("data/empty"), b"", 0o644);
    write_file(&root.join("data/name with spaces.txt"), b"spaces\n", 0o644);
    write_file(
        &root.join("data/naïve-ü-日本.txt"),
        "unicode ✓\n".as_bytes(),
        0o600,
    );
    write_file(
        &root.join(OsStr::from_bytes(b"data/latin1-\xe9")),
        b"latin-1\n",
        0o644,
    );
    let long_binary = [b"data/".as_slice(), &[0xe9; 120]].concat();
    write_file(
        &root.join(OsStr::from_bytes(&long_binary)),
        b"binary name\n",
        0o644,
    );
    write_file(
        &root.join("data").join(long_name("file", 150)),
        b"long name\n",
        0o644,
    );
    write_file(&root.join(&deep).join("leaf.txt"), b"deep\n", 0o444);
    write_file(&root.join("data/hard-a"), b"shared inode\n", 0o640);
    fs::hard_link(root.join("data/hard-a"), root.join("data/hard-b")).unwrap();
    fs::hard_link(root.join("data/hard-a"), root.join("zoneinfo/hard-c")).unwrap();

    symlink(".", root.join("zoneinfo/posix")).unwrap();
    symlink("/etc/passwd", root.join("zoneinfo/absolute")).unwrap();
    symlink("does/not/exist", root.join("zoneinfo/dangling")).unwrap();
    symlink("x/".repeat(70), root.join("zoneinfo/long-target")).unwrap();

    if big {
        let file = File::create(root.join("data/big.bin")).unwrap();
        file.set_len(BIG_SIZE).unwrap();
        // Non-zero bytes at both ends, so a shifted or truncated copy shows.
        (&file).write_all(b"start").unwrap();
        std::os::unix::fs::FileExt::write_at(&file, b"end", BIG_SIZE - 3).unwrap();
    }
}

fn write_tar(src: &Path, dst: &str, out: &Path) -> u64 {
    let options = WalkOptions {
        modes: Modes::OnDisk,
        uid: 0,
        gid: 0,
        hard_links: true,
    };
    let mut writer = TarWriter::new(File::create(out).unwrap(), MTIME);
    for entry in walk(src, ImagePath::new(dst).unwrap(), &options) {
        writer.append(&entry.unwrap()).unwrap();
    }
    let count = writer.entry_count();
    writer.finish().unwrap().sync_all().unwrap();
    count
}

#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir {
        mode: u32,
    },
    /// `first_name` is the first path (in sorted order) sharing this inode.
    File {
        mode: u32,
        size: u64,
        first_name: Vec<u8>,
    },
    Link {
        target: Vec<u8>,
    },
}

/// The tree below `root` as relative path bytes -> node, by plain `std::fs`.
fn describe(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    fn visit(root: &Path, dir: &Path, out: &mut Vec<(Vec<u8>, fs::Metadata)>) {
        for child in fs::read_dir(dir).unwrap() {
            let path = child.unwrap().path();
            let md = fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            out.push((rel, md.clone()));
            if md.is_dir() {
                visit(root, &path, out);
            }
        }
    }
    let mut found = Vec::new();
    visit(root, root, &mut found);
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let mut first_by_inode: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    found
        .into_iter()
        .map(|(rel, md)| {
            let node = if md.file_type().is_symlink() {
                let target = fs::read_link(root.join(OsStr::from_bytes(&rel))).unwrap();
                Node::Link {
                    target: target.as_os_str().as_bytes().to_vec(),
                }
            } else if md.is_dir() {
                Node::Dir {
                    mode: md.mode() & 0o7777,
                }
            } else {
                let first = first_by_inode
                    .entry(md.ino())
                    .or_insert_with(|| rel.clone());
                Node::File {
                    mode: md.mode() & 0o7777,
                    size: md.len(),
                    first_name: first.clone(),
                }
            };
            (rel, node)
        })
        .collect()
}

fn same_contents(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = fa.read(&mut ba).unwrap();
        let mut nb = 0;
        while nb < na {
            let n = fb.read(&mut bb[nb..na]).unwrap();
            if n == 0 {
                return false;
            }
            nb += n;
        }
        if ba[..na] != bb[..na] {
            return false;
        }
        if na == 0 {
            return fb.read(&mut bb).unwrap() == 0;
        }
    }
}

#[test]
fn gnu_tar_restores_an_awkward_tree_exactly() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    awkward_tree(&src, true);
    let tar_path = work.path().join("layer.tar");
    write_tar(&src, "opt/tree", &tar_path);

    let listing = gnu_tar(&["-tvf".as_ref(), tar_path.as_os_str()]);
    for expected in [
        "opt/tree/zoneinfo/posix -> .",
        "opt/tree/zoneinfo/absolute -> /etc/passwd",
        "opt/tree/data/hard-b link to opt/tree/data/hard-a",
        "-rwsr-xr-x 0/0",
        "drwxrwxrwt 0/0",
        "2023-11-14 22:13 opt/tree/bin/",
    ] {
        assert!(
            listing.contains(expected),
            "`{expected}` missing from:\n{listing}"
        );
    }

    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    gnu_tar(&[
        "-xpf".as_ref(),
        tar_path.as_os_str(),
        "-C".as_ref(),
        out.as_os_str(),
    ]);
    let restored = out.join("opt/tree");
    let (want, got) = (describe(&src), describe(&restored));
    assert_eq!(want, got);
    for (rel, node) in &want {
        let rel = OsStr::from_bytes(rel);
        if let Node::File { .. } = node {
            assert!(
                same_contents(&src.join(rel), &restored.join(rel)),
                "{rel:?} differs"
            );
            let mtime = fs::metadata(restored.join(rel)).unwrap().mtime();
            assert_eq!(mtime as u64, MTIME, "{rel:?} mtime");
        }
    }
    assert_eq!(
        fs::metadata(restored.join("data/big.bin")).unwrap().len(),
        BIG_SIZE
    );
}

#[test]
fn same_tree_in_different_places_gives_the_same_bytes() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b/nested"));
    awkward_tree(&a, false);
    std::thread::sleep(std::time::Duration::from_millis(20));
    awkward_tree(&b, false);
    // Ownership on disk must not leak into the layer.
    std::os::unix::fs::lchown(b.join("data/empty"), Some(1234), Some(5678)).unwrap();
    let (ta, tb) = (work.path().join("a.tar"), work.path().join("b.tar"));
    let count = write_tar(&a, "x", &ta);
    assert_eq!(write_tar(&b, "x", &tb), count);
    assert!(count > 20, "only {count} entries");
    assert!(
        fs::read(&ta).unwrap() == fs::read(&tb).unwrap(),
        "tars differ"
    );
}

fn tar_crate_entries(bytes: &[u8]) -> Vec<TarEntryInfo> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            let kind = match h.entry_type() {
                tar::EntryType::Directory => TarEntryKind::Directory,
                tar::EntryType::Regular => TarEntryKind::File,
                tar::EntryType::Symlink => TarEntryKind::Symlink,
                tar::EntryType::Link => TarEntryKind::HardLink,
                other => TarEntryKind::Other(other.as_byte()),
            };
            let strip = |p: &[u8]| p.strip_suffix(b"/").unwrap_or(p).to_vec();
            TarEntryInfo {
                path: strip(&e.path_bytes()),
                kind,
                size: e.size(),
                mode: h.mode().unwrap() & 0o7777,
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                mtime: h.mtime().unwrap(),
                link: e.link_name_bytes().map(|l| l.into_owned()),
            }
        })
        .collect()
}

#[test]
fn read_entries_agrees_with_the_tar_crate() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    awkward_tree(&src, false);
    let tar_path = work.path().join("layer.tar");
    let count = write_tar(&src, "t", &tar_path);
    let bytes = fs::read(&tar_path).unwrap();

    let ours: Vec<TarEntryInfo> = read_entries(&bytes[..]).map(Result::unwrap).collect();
    assert_eq!(ours.len() as u64, count);
    assert_eq!(ours, tar_crate_entries(&bytes));

    let posix = ours.iter().find(|e| e.path == b"t/zoneinfo/posix").unwrap();
    assert_eq!(
        (posix.kind, posix.link.as_deref()),
        (TarEntryKind::Symlink, Some(&b"."[..]))
    );
    let hard = ours
        .iter()
        .find(|e| e.path == b"t/zoneinfo/hard-c")
        .unwrap();
    assert_eq!(hard.link.as_deref(), Some(&b"t/data/hard-a"[..]));
    assert!(ours.iter().all(|e| e.mtime == MTIME && e.uid == 0));
    let sorted: Vec<ImagePath> = ours
        .iter()
        .map(|e| ImagePath::new(&e.path).unwrap())
        .collect();
    assert!(
        sorted.windows(2).all(|w| w[0] < w[1]),
        "entries are not in order"
    );
}

#[test]
fn numbers_too_large_for_ustar_survive_through_pax() {
    let far_future = 99_999_999_999; // beyond 11 octal digits
    let mut writer = TarWriter::new(Vec::new(), far_future);
    let mut entry = Entry::bytes(ImagePath::new("f").unwrap(), 0o644, &b"x"[..]);
    entry.uid = 3_000_000;
    entry.gid = 4_000_000;
    writer.append(&entry).unwrap();
    let bytes = writer.finish().unwrap();
    let ours: Vec<TarEntryInfo> = read_entries(&bytes[..]).map(Result::unwrap).collect();
    assert_eq!(ours, tar_crate_entries(&bytes));
    assert_eq!(
        (ours[0].uid, ours[0].gid, ours[0].mtime),
        (3_000_000, 4_000_000, far_future)
    );
    let listing = gnu_tar_list(&bytes);
    assert!(listing.contains("3000000/4000000"), "{listing}");
}

fn gnu_tar_list(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("t.tar");
    fs::write(&path, bytes).unwrap();
    gnu_tar(&[
        "--numeric-owner".as_ref(),
        "-tvf".as_ref(),
        path.as_os_str(),
    ])
}

/// Keeps the first bytes written and counts the rest.
struct Head {
    head: Vec<u8>,
    total: u64,
}

impl Write for Head {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = 4096usize.saturating_sub(self.head.len()).min(buf.len());
        self.head.extend_from_slice(&buf[..room]);
        self.total += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn files_over_8_gib_get_a_pax_size_record() {
    let size = 8 * 1024 * 1024 * 1024 + 1;
    let mut writer = TarWriter::new(
        Head {
            head: Vec::new(),
            total: 0,
        },
        MTIME,
    );
    let mut zeros = std::io::repeat(0).take(size);
    let path = ImagePath::new("huge").unwrap();
    writer
        .append_reader(&path, 0o644, size, &mut zeros)
        .unwrap();
    let out = writer.finish().unwrap();
    // PAX header and its records, the header, the data and its padding, the end.
    assert_eq!(out.total, 512 + 512 + 512 + size + 511 + 1024);
    assert!(out.head[512..1024].starts_with(b"19 size=8589934593\n"));
    let mut archive = tar::Archive::new(&out.head[..]);
    let entry = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.size(), size);
    assert_eq!(entry.header().entry_size().unwrap(), size);
    assert_eq!(&*entry.path_bytes(), b"huge");
}
