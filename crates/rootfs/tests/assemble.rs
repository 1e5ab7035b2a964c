//! The top layer: what gpubox generates, what the user adds, and who wins.

mod common;

use common::{copy, find};

use std::fs;

use gpubox_oci::{Entry, EntryKind, FileSource};
use gpubox_rootfs::{Rootfs, RootfsError};
use gpubox_spec::{CopyToRoot, MachineSpec};

fn build(copies: &[CopyToRoot], user: &str) -> Result<Rootfs, RootfsError> {
    common::assemble_without_nix(
        copies,
        &[],
        user,
        &["/run/opengl-driver/lib", "/usr/lib64"],
        &MachineSpec::default(),
        None,
    )
}

fn bytes_of(entry: &Entry) -> Vec<u8> {
    match &entry.kind {
        EntryKind::File {
            source: FileSource::Bytes(b),
            ..
        } => b.to_vec(),
        EntryKind::File {
            source: FileSource::Path(p),
            ..
        } => fs::read(p).unwrap(),
        other => panic!("{} is not a file: {other:?}", entry.path),
    }
}

#[test]
fn generated_base_files_are_present_sorted_and_unique() {
    let rootfs = build(&[], "root").unwrap();
    let paths: Vec<_> = rootfs.entries.iter().map(|e| e.path.clone()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        paths, sorted,
        "entries must be in tar order without repeats"
    );

    let init = find(&rootfs, "/bin/gpubox-init").expect("init");
    assert_eq!(init.mode, 0o755);
    assert_eq!(bytes_of(init), b"\x7fELF-init");
    assert_eq!(find(&rootfs, "/tmp").unwrap().mode, 0o1777);
    assert_eq!(find(&rootfs, "/root").unwrap().mode, 0o700);
    assert!(find(&rootfs, "/work").is_some(), "workingDir is created");
    let passwd = String::from_utf8(bytes_of(find(&rootfs, "/etc/passwd").unwrap())).unwrap();
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
    let os_release =
        String::from_utf8(bytes_of(find(&rootfs, "/etc/os-release").unwrap())).unwrap();
    assert!(os_release.contains("IMAGE_ID=demo") && os_release.contains("IMAGE_VERSION=v1"));
    assert!(find(&rootfs, "/etc/nsswitch.conf").is_some());
    let conf = bytes_of(find(&rootfs, "/etc/ld.so.conf.d/gpubox-nvidia.conf").unwrap());
    assert_eq!(conf, b"/run/opengl-driver/lib\n/usr/lib64\n");
    // Nothing from the (empty) closure to link to.
    assert!(find(&rootfs, "/bin/sh").is_none());
    assert!(rootfs.env.is_empty(), "{:?}", rootfs.env);
}

#[test]
fn a_user_file_replaces_the_generated_one() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("passwd"), "root:x:0:0::/root:/bin/false\n").unwrap();
    let rootfs = build(&[copy(&dir.path().join("passwd"), "/etc/passwd")], "root").unwrap();
    let passwd = bytes_of(find(&rootfs, "/etc/passwd").unwrap());
    assert_eq!(passwd, b"root:x:0:0::/root:/bin/false\n");
}

#[test]
fn two_user_sources_disagreeing_is_an_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a"), "one").unwrap();
    fs::write(dir.path().join("b"), "two").unwrap();
    let err = build(
        &[
            copy(&dir.path().join("a"), "/etc/app.conf"),
            copy(&dir.path().join("b"), "/etc/app.conf"),
        ],
        "root",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RootfsError::Conflict { .. }), "{text}");
    assert!(
        text.contains("/etc/app.conf")
            && text.contains("copyToRoot[0]")
            && text.contains("copyToRoot[1]"),
        "{text}"
    );
}

#[test]
fn identical_files_from_two_sources_are_fine() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a"), "same").unwrap();
    fs::write(dir.path().join("b"), "same").unwrap();
    let rootfs = build(
        &[
            copy(&dir.path().join("a"), "/etc/app.conf"),
            copy(&dir.path().join("b"), "/etc/app.conf"),
        ],
        "root",
    )
    .unwrap();
    assert_eq!(bytes_of(find(&rootfs, "/etc/app.conf").unwrap()), b"same");
}

#[test]
fn files_inside_a_user_symlink_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/usr/opt", dir.path().join("opt-link")).unwrap();
    fs::write(dir.path().join("tool"), "x").unwrap();
    let err = build(
        &[
            copy(&dir.path().join("opt-link"), "/opt"),
            copy(&dir.path().join("tool"), "/opt/tool"),
        ],
        "root",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RootfsError::NotADirectory { .. }), "{text}");
    assert!(
        text.contains("/opt/tool") && text.contains("symbolic link"),
        "{text}"
    );
}

#[test]
fn a_named_user_gets_an_account_and_a_home() {
    let rootfs = build(&[], "app").unwrap();
    let passwd = String::from_utf8(bytes_of(find(&rootfs, "/etc/passwd").unwrap())).unwrap();
    assert!(
        passwd.contains("app:x:1000:1000:app:/home/app:/bin/sh"),
        "{passwd}"
    );
    let group = String::from_utf8(bytes_of(find(&rootfs, "/etc/group").unwrap())).unwrap();
    assert!(group.contains("app:x:1000:"), "{group}");
    let home = find(&rootfs, "/home/app").expect("home");
    assert_eq!((home.uid, home.gid), (1000, 1000));
    // A `*` password: no password logs in, SSH keys still may.
    let shadow = find(&rootfs, "/etc/shadow").expect("shadow");
    assert_eq!(shadow.mode, 0o600);
    assert_eq!(
        bytes_of(shadow),
        b"root:*:::::::\nnobody:*:::::::\napp:*:::::::\n"
    );
    // Numeric users need no account.
    let numeric = build(&[], "1234:1234").unwrap();
    let passwd = String::from_utf8(bytes_of(find(&numeric, "/etc/passwd").unwrap())).unwrap();
    assert_eq!(passwd.lines().count(), 2, "{passwd}");
}

#[test]
fn copy_mode_and_owner_apply_to_everything_copied() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("app/sub")).unwrap();
    fs::write(dir.path().join("app/sub/run"), "x").unwrap();
    let item = CopyToRoot {
        mode: Some(0o750),
        uid: Some(7),
        gid: Some(8),
        ..copy(&dir.path().join("app"), "/opt/app")
    };
    let rootfs = build(&[item], "root").unwrap();
    for path in ["/opt/app", "/opt/app/sub", "/opt/app/sub/run"] {
        let entry = find(&rootfs, path).unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!((entry.mode, entry.uid, entry.gid), (0o750, 7, 8), "{path}");
    }
    // The implicit parent is root's.
    assert_eq!(
        find(&rootfs, "/opt").map(|e| (e.mode, e.uid)),
        Some((0o755, 0))
    );
}

#[test]
fn errors_name_the_copy_to_root_item_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a"), "one").unwrap();
    fs::write(dir.path().join("b"), "two").unwrap();
    let items = [
        copy(&dir.path().join("a"), "/x"),
        copy(&dir.path().join("a"), "/y"),
        copy(&dir.path().join("b"), "/x"),
    ];
    assert_eq!(
        build(&items, "root").unwrap_err().copy_to_root_index(),
        Some(2)
    );
    let missing = [copy(&dir.path().join("missing"), "/m")];
    assert_eq!(
        build(&missing, "root").unwrap_err().copy_to_root_index(),
        Some(0)
    );
}
