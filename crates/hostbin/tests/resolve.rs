//! Resolves real binaries of this machine and binaries built here with `gcc`, using `ldd`
//! (glibc's own loader in trace mode) as the second opinion.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::{image_paths, ldd_paths};
use gpubox_hostbin::{normalize, resolve, resolve_all, HostBinError, HostFile};

fn assert_sorted_unique(files: &[HostFile]) {
    for pair in files.windows(2) {
        assert!(
            pair[0].image_path < pair[1].image_path,
            "not sorted/unique: {pair:?}"
        );
    }
}

/// `resolve(binary, binary)` opens exactly the files `ldd` lists, plus the binary itself.
fn assert_matches_ldd(binary: &Path) -> Vec<HostFile> {
    let files = resolve(binary, binary).unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let mut expected = ldd_paths(binary);
    expected.insert(normalize(binary));
    assert_eq!(image_paths(&files), expected, "{}", binary.display());
    files
}

/// A temp tree with `lib/` and `bin/` and the C `sources` (name, text) at its top.
fn source_tree(sources: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::create_dir_all(dir.path().join("lib")).unwrap();
    fs::create_dir_all(dir.path().join("bin")).unwrap();
    for (name, text) in sources {
        fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn gcc(args: &[&str], dir: &Path) {
    let output = Command::new("gcc")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("gcc runs");
    assert!(
        output.status.success(),
        "gcc {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A temp tree with `lib/libgreet.so` and `bin/app` linked to it with `$ORIGIN/../lib`.
fn build_origin_app(new_dtags: bool) -> tempfile::TempDir {
    let dir = source_tree(&[
        ("greet.c", "int greet(void) { return 42; }\n"),
        (
            "main.c",
            "int greet(void);\nint main(void) { return greet() - 42; }\n",
        ),
    ]);
    gcc(
        &[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libgreet.so",
            "-o",
            "lib/libgreet.so",
            "greet.c",
        ],
        dir.path(),
    );
    let dtags = dtags_flag(new_dtags);
    gcc(
        &[
            "-o",
            "bin/app",
            "main.c",
            "-Llib",
            "-lgreet",
            "-Wl,-rpath,$ORIGIN/../lib",
            dtags,
        ],
        dir.path(),
    );
    dir
}

/// `bin/app` -> `lib/libouter.so` -> `lib/libinner.so`, where only the executable carries a
/// search path (`$ORIGIN/../lib`) and libouter has none: libinner is found only by RPATH
/// inheritance.
fn build_indirect_app(new_dtags: bool) -> tempfile::TempDir {
    let dir = source_tree(&[
        ("inner.c", "int inner(void) { return 1; }\n"),
        (
            "outer.c",
            "int inner(void);\nint outer(void) { return inner() + 1; }\n",
        ),
        (
            "main.c",
            "int outer(void);\nint main(void) { return outer() - 2; }\n",
        ),
    ]);
    gcc(
        &[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libinner.so",
            "-o",
            "lib/libinner.so",
            "inner.c",
        ],
        dir.path(),
    );
    gcc(
        &[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libouter.so",
            "-o",
            "lib/libouter.so",
            "outer.c",
            "-Llib",
            "-linner",
        ],
        dir.path(),
    );
    let dtags = dtags_flag(new_dtags);
    gcc(
        &[
            "-o",
            "bin/app",
            "main.c",
            "-Llib",
            "-louter",
            "-Wl,-rpath-link,lib",
            "-Wl,-rpath,$ORIGIN/../lib",
            dtags,
        ],
        dir.path(),
    );
    dir
}

fn readelf_dynamic(binary: &Path) -> String {
    let output = Command::new("readelf")
        .arg("-d")
        .arg(binary)
        .output()
        .expect("readelf runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn ls_matches_ldd() {
    let ls = fs::canonicalize("/usr/bin/ls").expect("/usr/bin/ls exists");
    let files = assert_matches_ldd(Path::new("/usr/bin/ls"));
    assert_sorted_unique(&files);

    for file in &files {
        assert_eq!(
            file.source,
            fs::canonicalize(&file.source).unwrap(),
            "source is not canonical: {file:?}"
        );
        assert!(file.source.is_file(), "source is not a file: {file:?}");
    }
    let exe = files
        .iter()
        .find(|f| f.image_path == Path::new("/usr/bin/ls"))
        .unwrap();
    assert_eq!(exe.source, ls);
    assert_ne!(exe.mode & 0o111, 0, "ls lost its execute bits: {exe:?}");
    assert!(
        files
            .iter()
            .any(|f| f.image_path.file_name().is_some_and(|n| n == "libc.so.6")),
        "libc.so.6 missing: {files:?}"
    );
}

#[test]
fn runpath_origin_library_follows_the_executable() {
    let dir = build_origin_app(true);
    let app = dir.path().join("bin/app");
    assert!(
        readelf_dynamic(&app).contains("(RUNPATH)"),
        "gcc did not write DT_RUNPATH"
    );

    assert_matches_ldd(&app);

    // Placed elsewhere in the image, $ORIGIN/../lib moves with it.
    let files = resolve(&app, Path::new("/opt/app/bin/app")).expect("app resolves");
    let greet = files
        .iter()
        .find(|f| f.image_path == Path::new("/opt/app/lib/libgreet.so"))
        .unwrap_or_else(|| panic!("libgreet.so not at /opt/app/lib: {files:?}"));
    assert_eq!(
        greet.source,
        fs::canonicalize(dir.path().join("lib/libgreet.so")).unwrap()
    );
    assert!(files
        .iter()
        .any(|f| f.image_path == Path::new("/opt/app/bin/app")));
}

#[test]
fn rpath_is_inherited_by_indirect_dependencies() {
    let dir = build_indirect_app(false);
    let app = dir.path().join("bin/app");
    let dynamic = readelf_dynamic(&app);
    assert!(
        dynamic.contains("(RPATH)") && !dynamic.contains("(RUNPATH)"),
        "gcc did not write DT_RPATH only"
    );

    assert_matches_ldd(&app);

    let files = resolve(&app, Path::new("/srv/bin/app")).expect("app resolves");
    let paths = image_paths(&files);
    assert!(
        paths.contains(Path::new("/srv/lib/libouter.so")),
        "{paths:?}"
    );
    assert!(
        paths.contains(Path::new("/srv/lib/libinner.so")),
        "{paths:?}"
    );
}

#[test]
fn runpath_is_not_inherited() {
    let dir = build_indirect_app(true);
    let app = dir.path().join("bin/app");
    match resolve(&app, &app) {
        Err(HostBinError::LibraryNotFound {
            library,
            needed_by,
            searched,
        }) => {
            assert_eq!(library, "libinner.so");
            // The path as the loader opened it, as ld.so's own message names it.
            assert_eq!(needed_by, dir.path().join("bin/../lib/libouter.so"));
            assert!(
                !searched.contains(&dir.path().join("bin/../lib")),
                "searched the executable's RUNPATH: {searched:?}"
            );
        }
        other => panic!("expected LibraryNotFound for libinner.so, got {other:?}"),
    }
    let ldd = Command::new("ldd").arg(&app).output().expect("ldd runs");
    let ldd = String::from_utf8_lossy(&ldd.stdout);
    assert!(
        ldd.contains("libinner.so => not found"),
        "ldd disagrees:\n{ldd}"
    );
}

#[test]
fn other_architecture_library_is_skipped() {
    let dir = build_origin_app(false);
    // A 32-bit libgreet.so earlier in the RPATH: ld.so passes over it and keeps searching.
    fs::create_dir_all(dir.path().join("lib32")).unwrap();
    gcc(
        &[
            "-m32",
            "-shared",
            "-nostdlib",
            "-fPIC",
            "-o",
            "lib32/libgreet.so",
            "greet.c",
        ],
        dir.path(),
    );
    gcc(
        &[
            "-o",
            "bin/app",
            "main.c",
            "-Llib",
            "-lgreet",
            "-Wl,-rpath,$ORIGIN/../lib32:$ORIGIN/../lib",
            "-Wl,--disable-new-dtags",
        ],
        dir.path(),
    );
    let app = dir.path().join("bin/app");
    let files = assert_matches_ldd(&app);
    assert!(image_paths(&files).contains(&dir.path().join("lib/libgreet.so")));
}

#[test]
fn missing_library_names_it_and_its_requester() {
    let dir = build_origin_app(true);
    let app = dir.path().join("bin/app");
    fs::remove_file(dir.path().join("lib/libgreet.so")).unwrap();
    let error = resolve(&app, Path::new("/app")).expect_err("libgreet.so is gone");
    let message = error.to_string();
    match error {
        HostBinError::LibraryNotFound {
            library,
            needed_by,
            searched,
        } => {
            assert_eq!(library, "libgreet.so");
            assert_eq!(needed_by, fs::canonicalize(&app).unwrap());
            assert!(
                searched.contains(&dir.path().join("bin/../lib")),
                "{searched:?}"
            );
            assert!(
                searched.contains(&PathBuf::from("/usr/lib")),
                "{searched:?}"
            );
        }
        other => panic!("expected LibraryNotFound, got {other:?}"),
    }
    assert!(message.starts_with("libgreet.so, needed by "), "{message}");
}

#[test]
fn shell_script_is_not_elf() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("run.sh");
    fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let error = resolve(&script, Path::new("/bin/run")).expect_err("a script is not ELF");
    assert!(
        matches!(&error, HostBinError::NotElf { path } if path == &script),
        "{error:?}"
    );
    assert!(error.to_string().contains("copyToRoot"), "{error}");
}

#[test]
fn missing_binary_names_its_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let absent = dir.path().join("absent");
    let error = resolve(&absent, Path::new("/bin/absent")).expect_err("nothing there");
    assert!(
        matches!(&error, HostBinError::NotFound { path } if path == &absent),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&absent.display().to_string()),
        "{error}"
    );
}

#[test]
fn static_binary_is_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("main.c"), "int main(void) { return 0; }\n").unwrap();
    let output = Command::new("gcc")
        .args(["-static", "-o", "static", "main.c"])
        .current_dir(dir.path())
        .output()
        .expect("gcc runs");
    if !output.status.success() {
        eprintln!("gcc -static: {}", String::from_utf8_lossy(&output.stderr));
        gpubox_testkit::missing("static libc for gcc -static (libc6-dev)");
        return;
    }
    let binary = dir.path().join("static");
    let files = resolve(&binary, Path::new("/bin/static")).expect("static binary resolves");
    assert_eq!(
        files,
        vec![HostFile {
            image_path: PathBuf::from("/bin/static"),
            source: fs::canonicalize(&binary).unwrap(),
            mode: fs::metadata(&binary).unwrap().mode() & 0o7777,
            link: None,
            brought_by: None,
        }]
    );
}

#[test]
fn resolve_all_lists_shared_libraries_once() {
    let ls = resolve(Path::new("/usr/bin/ls"), Path::new("/bin/ls")).unwrap();
    let cat = resolve(Path::new("/usr/bin/cat"), Path::new("/bin/cat")).unwrap();
    let both = resolve_all(&[
        (PathBuf::from("/usr/bin/ls"), PathBuf::from("/bin/ls")),
        (PathBuf::from("/usr/bin/cat"), PathBuf::from("/bin/cat")),
    ])
    .unwrap();
    assert_sorted_unique(&both);
    let union: BTreeSet<HostFile> = ls.into_iter().chain(cat).collect();
    assert_eq!(both, union.into_iter().collect::<Vec<_>>());
    assert_eq!(
        both.iter()
            .filter(|f| f.image_path.ends_with("libc.so.6"))
            .count(),
        1,
        "{both:?}"
    );
}

#[test]
fn resolve_all_refuses_one_image_path_for_two_binaries() {
    let error = resolve_all(&[
        (PathBuf::from("/usr/bin/ls"), PathBuf::from("/bin/tool")),
        (PathBuf::from("/usr/bin/cat"), PathBuf::from("/bin/tool")),
    ])
    .expect_err("two binaries at /bin/tool");
    assert!(
        matches!(&error, HostBinError::ImagePathConflict { image_path, .. } if image_path == Path::new("/bin/tool")),
        "{error:?}"
    );
}

#[test]
fn relative_image_path_is_refused() {
    let error =
        resolve(Path::new("/usr/bin/ls"), Path::new("bin/ls")).expect_err("relative image path");
    assert!(
        matches!(error, HostBinError::RelativeImagePath { .. }),
        "{error:?}"
    );
}

/// Every dynamically linked program in /usr/bin (up to 300) agrees with `ldd`.
#[test]
fn usr_bin_programs_match_ldd() {
    let mut programs: Vec<PathBuf> = fs::read_dir("/usr/bin")
        .expect("/usr/bin is readable")
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    programs.sort();
    let mut compared = 0;
    for program in programs.iter().take(300) {
        let output = Command::new("ldd").arg(program).output().expect("ldd runs");
        let text = String::from_utf8_lossy(&output.stdout);
        // Scripts, static programs and programs broken on this machine have no ldd answer.
        if !output.status.success() || text.contains("not found") || !text.contains("=>") {
            continue;
        }
        assert_matches_ldd(program);
        compared += 1;
    }
    assert!(compared > 10, "only {compared} programs compared");
}

/// The linker flag that makes `-rpath` a DT_RUNPATH (new dtags) or a DT_RPATH.
fn dtags_flag(new_dtags: bool) -> &'static str {
    if new_dtags {
        "-Wl,--enable-new-dtags"
    } else {
        "-Wl,--disable-new-dtags"
    }
}
