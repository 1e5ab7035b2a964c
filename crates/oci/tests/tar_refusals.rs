//! What the walk and the tar writer refuse, and that each refusal names the path.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

use gpubox_oci::tar::{walk, Modes, TarError, TarWriter, WalkError, WalkOptions};
use gpubox_oci::{Entry, EntryKind, ImagePath};

fn p(s: &str) -> ImagePath {
    ImagePath::new(s).unwrap()
}

fn options() -> WalkOptions {
    WalkOptions {
        modes: Modes::OnDisk,
        uid: 0,
        gid: 0,
        hard_links: true,
    }
}

fn walk_errors(dir: &Path) -> Vec<WalkError> {
    walk(dir, p("x"), &options())
        .filter_map(Result::err)
        .collect()
}

#[test]
fn sockets_are_refused_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a-file"), b"ok").unwrap();
    let socket = dir.path().join("agent.sock");
    let _listener = UnixListener::bind(&socket).unwrap();
    let errors = walk_errors(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let message = errors[0].to_string();
    assert!(matches!(
        errors[0],
        WalkError::Unsupported { kind: "socket", .. }
    ));
    assert!(
        message.contains(&format!("socket `{}`", socket.display())),
        "{message}"
    );
}

#[test]
fn fifos_are_refused_with_their_path_and_the_walk_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let c_path = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
    fs::write(dir.path().join("z-after"), b"still walked").unwrap();
    let results: Vec<_> = walk(dir.path(), p("x"), &options()).collect();
    let message = results[1].as_ref().unwrap_err().to_string();
    assert!(
        message.contains(&format!("FIFO `{}`", fifo.display())),
        "{message}"
    );
    assert_eq!(results[2].as_ref().unwrap().path, p("x/z-after"));
}

#[test]
fn a_missing_source_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let errors = walk_errors(&missing);
    assert!(matches!(&errors[..], [WalkError::Io { path, .. }] if *path == missing));
}

#[test]
fn walk_yields_sorted_entries_with_options_applied() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["b", "a.c", "a-b"] {
        fs::write(dir.path().join(name), name).unwrap();
    }
    fs::create_dir(dir.path().join("a")).unwrap();
    fs::write(dir.path().join("a/inner"), b"").unwrap();
    std::os::unix::fs::symlink("b", dir.path().join("link")).unwrap();
    let options = WalkOptions {
        modes: Modes::All(0o640),
        uid: 7,
        gid: 8,
        hard_links: false,
    };
    let entries: Vec<Entry> = walk(dir.path(), p("dst"), &options)
        .map(Result::unwrap)
        .collect();
    let paths: Vec<String> = entries.iter().map(|e| e.path.to_string()).collect();
    assert_eq!(
        paths,
        [
            "/dst",
            "/dst/a",
            "/dst/a/inner",
            "/dst/a-b",
            "/dst/a.c",
            "/dst/b",
            "/dst/link"
        ]
    );
    for entry in &entries {
        assert_eq!((entry.uid, entry.gid), (7, 8));
        let expected = if matches!(entry.kind, EntryKind::Symlink { .. }) {
            0o777
        } else {
            0o640
        };
        assert_eq!(entry.mode, expected, "{}", entry.path);
    }
}

#[test]
fn a_single_file_source_is_one_entry_and_hard_links_can_be_off() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("one"), b"1").unwrap();
    fs::hard_link(dir.path().join("one"), dir.path().join("two")).unwrap();
    let entries: Vec<Entry> = walk(&dir.path().join("two"), p("etc/two"), &options())
        .map(Result::unwrap)
        .collect();
    assert_eq!(entries.len(), 1);
    assert!(matches!(entries[0].kind, EntryKind::File { size: 1, .. }));
    let no_links = WalkOptions {
        hard_links: false,
        ..options()
    };
    let entries: Vec<Entry> = walk(dir.path(), p("d"), &no_links)
        .map(Result::unwrap)
        .collect();
    assert!(entries
        .iter()
        .all(|e| !matches!(e.kind, EntryKind::HardLink { .. })));
}

#[test]
fn out_of_order_and_duplicate_entries_are_refused() {
    let mut writer = TarWriter::new(Vec::new(), 1);
    writer.append(&Entry::directory(p("b"), 0o755)).unwrap();
    let err = writer.append(&Entry::directory(p("a"), 0o755)).unwrap_err();
    assert!(matches!(err, TarError::OutOfOrder { .. }));
    assert!(err.to_string().contains("`/a` comes after `/b`"), "{err}");

    let mut writer = TarWriter::new(Vec::new(), 1);
    writer.append(&Entry::directory(p("x"), 0o755)).unwrap();
    let err = writer
        .append(&Entry::bytes(p("x"), 0o644, &b""[..]))
        .unwrap_err();
    assert!(err.to_string().contains("`/x` is written twice"), "{err}");
}

#[test]
fn hard_links_must_name_an_earlier_regular_file() {
    let hard_link = |path: &str, target: &str| Entry {
        path: p(path),
        kind: EntryKind::HardLink { target: p(target) },
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    let mut writer = TarWriter::new(Vec::new(), 1);
    writer.append(&Entry::directory(p("d"), 0o755)).unwrap();
    writer
        .append(&Entry::bytes(p("d/f"), 0o644, &b"x"[..]))
        .unwrap();
    writer.append(&hard_link("d/g", "d/f")).unwrap();
    for target in ["d", "d/zzz", "elsewhere"] {
        let err = writer.append(&hard_link("e", target)).unwrap_err();
        assert!(matches!(err, TarError::HardLinkTarget { .. }), "{err}");
        assert!(
            err.to_string().contains(&format!("points to `/{target}`")),
            "{err}"
        );
    }
}

#[test]
fn a_file_that_changes_size_after_the_walk_is_an_error() {
    for new_content in [&b"grown content"[..], b"tiny"] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("log");
        fs::write(&file, b"ten bytes!").unwrap();
        let entries: Vec<Entry> = walk(dir.path(), p("x"), &options())
            .map(Result::unwrap)
            .collect();
        fs::write(&file, new_content).unwrap();
        let mut writer = TarWriter::new(Vec::new(), 1);
        writer.append(&entries[0]).unwrap();
        let err = writer.append(&entries[1]).unwrap_err();
        match &err {
            TarError::SizeChanged {
                file: f,
                expected,
                found,
            } => {
                assert_eq!(
                    (f, *expected, *found),
                    (&file, 10, new_content.len() as u64)
                );
            }
            other => panic!("expected SizeChanged, got {other:?}"),
        }
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn a_file_that_vanished_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gone");
    fs::write(&file, b"x").unwrap();
    let entry = walk(&file, p("gone"), &options()).next().unwrap().unwrap();
    fs::remove_file(&file).unwrap();
    let err = TarWriter::new(Vec::new(), 1).append(&entry).unwrap_err();
    assert!(
        matches!(&err, TarError::Io { path: Some(f), .. } if *f == file),
        "{err}"
    );
}

#[test]
fn streams_must_have_exactly_the_announced_size() {
    for (announced, actual) in [(10u64, 9u64), (10, 11), (0, 1)] {
        let mut writer = TarWriter::new(Vec::new(), 1);
        let mut reader = std::io::repeat(b'a').take(actual);
        let err = writer
            .append_reader(&p("blob"), 0o644, announced, &mut reader)
            .unwrap_err();
        assert!(
            matches!(err, TarError::WrongLength { expected, .. } if expected == announced),
            "{err}"
        );
    }
    let mut writer = TarWriter::new(Vec::new(), 1);
    let mut reader = std::io::repeat(b'a').take(10);
    writer
        .append_reader(&p("blob"), 0o644, 10, &mut reader)
        .unwrap();
    assert_eq!(writer.entry_count(), 1);
}

#[test]
fn symlinks_need_a_storable_target() {
    for target in [&b""[..], b"a\0b"] {
        let err = TarWriter::new(Vec::new(), 1)
            .append(&Entry::symlink(p("l"), target))
            .unwrap_err();
        assert!(matches!(err, TarError::BadSymlinkTarget { .. }), "{err}");
    }
}
