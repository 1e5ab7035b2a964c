//! `hostBinaries` files in the top layer: the named ones must agree with the user's other
//! files; the ones their packages brought along are links where they are links, and give
//! way to the user's own files.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{copy, find};
use gpubox_hostbin::HostFile;
use gpubox_oci::EntryKind;
use gpubox_rootfs::{Rootfs, RootfsError};
use gpubox_spec::{CopyToRoot, MachineSpec};

fn build(copies: &[CopyToRoot], host_files: &[HostFile]) -> Result<Rootfs, RootfsError> {
    common::assemble_without_nix(
        copies,
        host_files,
        "root",
        &[],
        &MachineSpec::default(),
        None,
    )
}

fn file(image_path: &str, source: &Path, brought_by: Option<&str>) -> HostFile {
    HostFile {
        image_path: PathBuf::from(image_path),
        source: source.to_owned(),
        mode: 0o644,
        link: None,
        brought_by: brought_by.map(str::to_owned),
    }
}

#[test]
fn brought_files_are_placed_links_stay_links_and_the_users_files_win() {
    let dir = tempfile::tempdir().unwrap();
    let package_file = dir.path().join("package.py");
    fs::write(&package_file, b"from the package").unwrap();
    let mine = dir.path().join("mine.py");
    fs::write(&mine, b"the user's own").unwrap();
    let host_files = [
        file("/usr/lib/tool/a.py", &package_file, Some("tool")),
        file("/usr/lib/tool/b.py", &package_file, Some("tool")),
        HostFile {
            image_path: PathBuf::from("/usr/lib/tool/current.py"),
            source: dir.path().join("current.py"),
            mode: 0o777,
            link: Some(PathBuf::from("a.py")),
            brought_by: Some("tool".to_owned()),
        },
    ];
    let rootfs = build(&[copy(&mine, "/usr/lib/tool/b.py")], &host_files).unwrap();

    let a = find(&rootfs, "/usr/lib/tool/a.py").expect("the brought file");
    assert!(matches!(a.kind, EntryKind::File { size: 16, .. }), "{a:?}");
    let b = find(&rootfs, "/usr/lib/tool/b.py").expect("the user's file");
    assert!(
        matches!(b.kind, EntryKind::File { size: 14, .. }),
        "copyToRoot wins over a brought file: {b:?}"
    );
    let link = find(&rootfs, "/usr/lib/tool/current.py").expect("the link");
    assert_eq!(
        link.kind,
        EntryKind::Symlink {
            target: b"a.py".to_vec()
        }
    );
}

#[test]
fn a_named_host_file_still_conflicts_with_a_different_user_file() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("program");
    fs::write(&program, b"program").unwrap();
    let mine = dir.path().join("mine");
    fs::write(&mine, b"mine").unwrap();
    let error = build(
        &[copy(&mine, "/usr/bin/tool")],
        &[file("/usr/bin/tool", &program, None)],
    )
    .expect_err("two files for one path");
    assert!(matches!(error, RootfsError::Conflict { .. }), "{error:?}");
}
