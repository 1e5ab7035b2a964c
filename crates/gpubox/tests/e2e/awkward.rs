//! Awkward trees survive the trip into an image and out through GNU tar unchanged:
//! symlink loops stay links, hard links stay linked, odd and long names, empty
//! folders and files, executable bits and a file over 100 MB.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::common::*;

const LONG_NAME: &str = "a-file-name-that-is-well-over-one-hundred-bytes-long-so-ustar-cannot-hold-it-and-pax-records-must-carry-it.txt";

fn make_awkward_tree(root: &Path) {
    fs::create_dir_all(root.join("zoneinfo")).unwrap();
    std::os::unix::fs::symlink(".", root.join("zoneinfo/posix")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("absolute-link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling-link")).unwrap();
    fs::write(root.join("hard-a"), "shared bytes\n").unwrap();
    fs::hard_link(root.join("hard-a"), root.join("hard-b")).unwrap();
    fs::create_dir_all(root.join("with space")).unwrap();
    fs::write(root.join("with space/file name.txt"), "spaces\n").unwrap();
    fs::write(root.join("ünïcödé-grüße.txt"), "unicode\n").unwrap();
    let deep = root.join("deep/deeper/deepest-folder-with-a-longish-name");
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join(LONG_NAME), "long\n").unwrap();
    std::os::unix::fs::symlink(deep.join(LONG_NAME), root.join("link-with-long-target")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::write(root.join("empty-file"), "").unwrap();
    fs::write(root.join("tool.sh"), "#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(root.join("tool.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("secret"), "s\n").unwrap();
    fs::set_permissions(root.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    // Over 100 MB, mostly a hole so the test stays quick, with real bytes at both ends.
    let mut big = fs::File::create(root.join("big.bin")).unwrap();
    big.write_all(b"start").unwrap();
    big.seek(SeekFrom::Start(105 * 1024 * 1024)).unwrap();
    big.write_all(b"end").unwrap();
}

#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir(u32),
    File(u32, u64, String),
    Link(PathBuf),
}

/// Every path under `root` with its type, permission bits, size and content hash.
fn describe(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let node = if meta.file_type().is_symlink() {
                Node::Link(fs::read_link(&path).unwrap())
            } else if meta.is_dir() {
                stack.push(path.clone());
                Node::Dir(meta.mode() & 0o7777)
            } else {
                let mut hasher = Sha256::new();
                let mut file = fs::File::open(&path).unwrap();
                let mut buf = vec![0; 1 << 20];
                loop {
                    let n = file.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                Node::File(
                    meta.mode() & 0o7777,
                    meta.len(),
                    hex::encode(hasher.finalize()),
                )
            };
            out.insert(rel, node);
        }
    }
    out
}

#[test]
fn awkward_local_tree_round_trips_through_gnu_tar() {
    let work = tempdir();
    let src = work.path().join("awkward");
    make_awkward_tree(&src);
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        "name = \"awkward\"\ncopyToRoot = [{ src = \"awkward\", dst = \"/data\" }]\ncompression = \"zstd\"\n",
    );
    let (reader, _) = build_and_read(work.path(), &spec);
    let unpacked = work.path().join("unpacked");
    unpack_own_layers_with_gnu_tar(&reader, &unpacked);

    let restored = unpacked.join("data");
    assert_eq!(
        describe(&src),
        describe(&restored),
        "the tree changed on its way through the image"
    );
    assert_eq!(
        fs::read_link(restored.join("zoneinfo/posix")).unwrap(),
        Path::new(".")
    );
    let (a, b) = (
        fs::metadata(restored.join("hard-a")).unwrap(),
        fs::metadata(restored.join("hard-b")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "hard link became a copy");
    assert!(fs::metadata(restored.join("big.bin")).unwrap().len() > 100 * 1000 * 1000);
}

#[test]
fn awkward_store_path_keeps_links_as_links() {
    if !have("nix") {
        return;
    }
    let awkward = nix_fixture("awkward");
    let work = tempdir();
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        &format!(
            "name = \"awkward-store\"\nsystemPackages = [{}]\n",
            toml_str(&awkward)
        ),
    );
    let (reader, summaries) = build_and_read(work.path(), &spec);
    let index = summaries
        .iter()
        .position(|s| s.store_paths == [awkward.clone()])
        .expect("a layer with the awkward path");
    let unpacked = work.path().join("unpacked");
    unpack_layer_with_gnu_tar(&reader, index, &unpacked);
    let restored = unpacked.join(awkward.trim_start_matches('/'));
    assert_eq!(describe(Path::new(&awkward)), describe(&restored));
}
