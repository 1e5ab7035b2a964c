//! What comes along with a host program beside its libraries: the files of its packages,
//! read from this machine's real dpkg database (Debian) and from small made-up ones; shared
//! libraries named directly; patterns.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

mod common;

use common::{image_paths, ldd_paths};
use gpubox_hostbin::dpkg::{Database, DEFAULT_ROOT};
use gpubox_hostbin::{
    expand_pattern, normalize, resolve, HostBinError, HostFile, PackageDatabase, Resolver,
};

/// This machine's Python (`/usr/bin/python3` and the `python3.X` it leads to), when Debian's
/// package database knows it.
fn debian_python() -> Option<(PathBuf, String)> {
    let python = PathBuf::from("/usr/bin/python3");
    let real = fs::canonicalize(&python).ok()?;
    let version = real
        .file_name()?
        .to_str()?
        .strip_prefix("python")?
        .to_owned();
    let mut db = Database::open(Path::new(DEFAULT_ROOT)).ok()??;
    db.owner(&real).ok()??;
    Some((python, version))
}

fn skip_without_python() -> Option<(PathBuf, String)> {
    let found = debian_python();
    if found.is_none() {
        gpubox_testkit::missing("Debian's python3 (/usr/bin/python3 known to the dpkg database)");
    }
    found
}

/// The first of the usual library folders that has `name`.
fn system_library(name: &str) -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
    ]
    .iter()
    .map(|dir| Path::new(dir).join(name))
    .find(|path| path.is_file())
}

#[test]
fn the_dpkg_database_knows_python_and_the_packages_it_runs_with() {
    let Some((_, version)) = skip_without_python() else {
        return;
    };
    let mut db = Database::open(Path::new(DEFAULT_ROOT))
        .expect("readable")
        .expect("a status file");
    let real = PathBuf::from(format!("/usr/bin/python{version}"));
    let owner = db.owner(&real).unwrap().expect("an owner").clone();
    assert_eq!(owner.name, format!("python{version}-minimal"));
    assert_eq!(owner.source, format!("python{version}"));
    // `/bin/python3.X` is the same file on merged-usr, and dpkg knows only one name.
    let twin = db
        .owner(Path::new(&format!("/bin/python{version}")))
        .unwrap()
        .map(|p| p.name.clone());
    assert_eq!(twin, Some(owner.name.clone()));
    // `/usr/bin/python3` itself is the link python3-minimal (source python3-defaults) ships.
    let link_owner = db.owner(Path::new("/usr/bin/python3")).unwrap().unwrap();
    assert_eq!(link_owner.source, "python3-defaults");

    let runtime: BTreeSet<String> = db
        .runtime_of(&owner)
        .iter()
        .map(|p| p.name.clone())
        .collect();
    for wanted in [
        format!("python{version}-minimal"),
        format!("libpython{version}-minimal"),
        format!("libpython{version}-stdlib"),
    ] {
        assert!(runtime.contains(&wanted), "{wanted} in {runtime:?}");
    }
    for package in &runtime {
        assert!(
            !package.ends_with("-dev") && !package.ends_with("-venv"),
            "{runtime:?}"
        );
    }
    let stdlib = db
        .named(&format!("libpython{version}-stdlib"))
        .next()
        .unwrap();
    let list = db.list(stdlib).unwrap();
    assert!(
        list.contains(&PathBuf::from(format!(
            "/usr/lib/python{version}/json/__init__.py"
        ))),
        "{} paths",
        list.len()
    );
}

#[test]
fn python_brings_its_standard_library_and_the_libraries_of_its_modules() {
    let Some((python, version)) = skip_without_python() else {
        return;
    };
    let mut resolver = Resolver::new(PackageDatabase::Dpkg(DEFAULT_ROOT.into()));
    let added = resolver.add(&python, &python).expect("python resolves");
    let files = resolver.finish();
    let paths = image_paths(&files);

    assert!(
        added
            .packages
            .iter()
            .any(|p| p.starts_with(&format!("libpython{version}-stdlib"))),
        "{:?}",
        added.packages
    );
    assert!(added.package_files > 100, "{added:?}");
    assert!(
        added.unpackaged.is_empty() && !added.no_database,
        "{added:?}"
    );

    let lib = PathBuf::from(format!("/usr/lib/python{version}"));
    for module in [
        "encodings/__init__.py",
        "json/__init__.py",
        "http/server.py",
        "ssl.py",
        "sqlite3/__init__.py",
        "ctypes/__init__.py",
        "lzma.py",
        "bz2.py",
    ] {
        assert!(paths.contains(&lib.join(module)), "{module}");
    }
    let dynload: Vec<&HostFile> = files
        .iter()
        .filter(|f| f.image_path.starts_with(lib.join("lib-dynload")))
        .collect();
    for module in ["_ssl", "_sqlite3", "_ctypes", "_lzma", "_bz2", "_hashlib"] {
        let found = dynload
            .iter()
            .find(|f| {
                f.image_path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{module}.")))
            })
            .unwrap_or_else(|| panic!("{module} in lib-dynload"));
        assert!(found.brought_by.is_some(), "{found:?}");
        // Every library the module loads comes too, at the path the loader opens.
        let needed = ldd_paths(&found.source);
        let missing: Vec<&PathBuf> = needed.difference(&paths).collect();
        assert!(missing.is_empty(), "{module} needs {missing:?}");
    }
    for library in [
        "libssl.so.3",
        "libcrypto.so.3",
        "libsqlite3.so.0",
        "libffi.so.8",
        "liblzma.so.5",
        "libbz2.so.1.0",
    ] {
        assert!(
            paths
                .iter()
                .any(|p| p.file_name().and_then(|n| n.to_str()) == Some(library)),
            "{library}"
        );
    }
    // The program itself, where it was asked for; no documentation, no other programs.
    assert!(paths.contains(&python));
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("/usr/share/doc") || p.starts_with("/usr/share/man")),
        "documentation came along"
    );
    assert!(!paths.contains(&PathBuf::from(format!("/usr/bin/pydoc{version}"))));
    // Links stay links: sitecustomize.py leads to /etc, which comes too.
    let sitecustomize = files
        .iter()
        .find(|f| f.image_path == lib.join("sitecustomize.py"));
    if let Some(file) = sitecustomize {
        let target = file.link.as_ref().expect("a link");
        assert!(paths.contains(&normalize(&lib.join(target))), "{target:?}");
    }
}

#[test]
fn a_shared_library_brings_the_libraries_it_needs() {
    let Some(libssl) = system_library("libssl.so.3") else {
        gpubox_testkit::missing("libssl.so.3 (Debian's libssl3)");
        return;
    };
    // As the simple resolve does...
    let files = resolve(&libssl, &libssl).expect("libssl resolves");
    let paths = image_paths(&files);
    assert!(paths.contains(&libssl), "it keeps its own path");
    assert!(
        paths.iter().any(|p| p.ends_with("libcrypto.so.3")),
        "{paths:?}"
    );
    let mut expected = ldd_paths(&libssl);
    expected.insert(libssl.clone());
    assert_eq!(
        paths.iter().map(|p| p.file_name()).collect::<BTreeSet<_>>(),
        expected
            .iter()
            .map(|p| p.file_name())
            .collect::<BTreeSet<_>>()
    );
    // ...and the resolver, without packages.
    let mut resolver = Resolver::new(PackageDatabase::Off);
    resolver.add(&libssl, &libssl).expect("libssl resolves");
    assert_eq!(image_paths(&resolver.finish()), paths);
}

#[test]
fn a_pattern_names_every_matching_file_and_none_is_an_error() {
    let Some((_, version)) = skip_without_python() else {
        return;
    };
    let pattern = PathBuf::from(format!("/usr/lib/python{version}/lib-dynload/*.so"));
    let matches = expand_pattern(&pattern).expect("lib-dynload has modules");
    assert!(matches.len() > 10, "{matches:?}");
    assert!(matches.windows(2).all(|w| w[0] < w[1]), "sorted");
    let mut resolver = Resolver::new(PackageDatabase::Off);
    for file in &matches {
        resolver.add(file, file).expect("a module resolves");
    }
    let paths = image_paths(&resolver.finish());
    for file in &matches {
        assert!(paths.contains(file), "{} keeps its path", file.display());
    }
    assert!(paths.iter().any(|p| p.ends_with("libssl.so.3")));

    let none = PathBuf::from(format!("/usr/lib/python{version}/lib-dynload/*.nothing"));
    match expand_pattern(&none) {
        Err(error @ HostBinError::NoMatch { .. }) => {
            assert!(
                error.to_string().contains(&none.display().to_string()),
                "{error}"
            )
        }
        other => panic!("{other:?}"),
    }
}

/// A made-up dpkg database that says `package` installed `files`.
fn fake_database(dir: &Path, package: &str, files: &[&Path]) -> PathBuf {
    let root = dir.join("dpkg");
    fs::create_dir_all(root.join("info")).unwrap();
    fs::write(
        root.join("status"),
        format!(
            "Package: {package}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n\n"
        ),
    )
    .unwrap();
    let list: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
    fs::write(root.join("info").join(format!("{package}.list")), list).unwrap();
    root
}

#[test]
fn a_package_brings_its_files_and_links_but_not_folders_documentation_or_other_programs() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("opt/tool");
    fs::create_dir_all(prefix.join("bin")).unwrap();
    fs::create_dir_all(prefix.join("share")).unwrap();
    let tool = prefix.join("bin/tool");
    fs::copy("/usr/bin/true", &tool).unwrap();
    let data = prefix.join("share/data.txt");
    fs::write(&data, b"data").unwrap();
    let link = prefix.join("share/current");
    std::os::unix::fs::symlink("data.txt", &link).unwrap();
    let gone = prefix.join("share/excluded.txt");
    let doc = Path::new("/usr/share/doc");
    let other_program = Path::new("/usr/bin/true");
    let root = fake_database(
        dir.path(),
        "tool",
        &[
            &prefix,
            &prefix.join("bin"),
            &tool,
            &prefix.join("share"),
            &data,
            &link,
            &gone,
            doc,
            other_program,
        ],
    );

    let mut resolver = Resolver::new(PackageDatabase::Dpkg(root));
    let image_tool = Path::new("/usr/local/bin/tool");
    let added = resolver.add(&tool, image_tool).expect("tool resolves");
    assert_eq!(added.packages.iter().collect::<Vec<_>>(), ["tool"]);
    let files = resolver.finish();
    let find = |path: &Path| files.iter().find(|f| f.image_path == path);

    let brought = find(&data).expect("the data file");
    assert_eq!(brought.brought_by.as_deref(), Some("tool"));
    assert_eq!(brought.link, None);
    let brought_link = find(&link).expect("the link");
    assert_eq!(brought_link.link.as_deref(), Some(Path::new("data.txt")));
    // The program where it was asked for, by the loader's rules, not from the package.
    assert_eq!(find(image_tool).unwrap().brought_by, None);
    // The package's copy outside the program folders comes too, where the package put it.
    assert_eq!(find(&tool).unwrap().brought_by.as_deref(), Some("tool"));
    for absent in [
        &prefix,
        &gone,
        &doc.to_path_buf(),
        &other_program.to_path_buf(),
    ] {
        assert!(find(absent).is_none(), "{} came along", absent.display());
    }
    assert_eq!(added.package_files, 3, "{added:?}");
    let tool_size = fs::metadata(&tool).unwrap().len();
    assert_eq!(added.package_bytes, 4 + tool_size, "{added:?}");
}

#[test]
fn a_file_no_package_lists_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let tool = dir.path().join("tool");
    fs::copy("/usr/bin/true", &tool).unwrap();
    let root = fake_database(dir.path(), "other", &[Path::new("/nothing/here")]);
    let mut resolver = Resolver::new(PackageDatabase::Dpkg(root));
    let added = resolver
        .add(&tool, Path::new("/usr/local/bin/tool"))
        .unwrap();
    assert_eq!(added.unpackaged, std::slice::from_ref(&tool));
    assert!(!added.no_database);
    assert!(added.packages.is_empty());

    let mut resolver = Resolver::new(PackageDatabase::Dpkg(dir.path().join("no-dpkg")));
    let added = resolver
        .add(&tool, Path::new("/usr/local/bin/tool"))
        .unwrap();
    assert!(added.no_database, "{added:?}");
}
