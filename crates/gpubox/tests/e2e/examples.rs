//! The bundled examples beyond the quick start, built with the gpubox binary and run in
//! real podman: `examples/python` (the host's Python through `hostBinaries`, with the
//! files of its packages); and how `hostBinaries` names shared libraries, patterns and
//! files that are not there.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::common::*;

/// This machine's Debian Python: `/usr/bin/python3`, the `3.X` it leads to, when the dpkg
/// database lists it (what the example needs to build).
fn debian_python() -> Option<String> {
    let real = fs::canonicalize("/usr/bin/python3").ok()?;
    let version = real
        .file_name()?
        .to_str()?
        .strip_prefix("python")?
        .to_owned();
    let list = format!("/var/lib/dpkg/info/python{version}-minimal.list");
    Path::new(&list).is_file().then_some(version)
}

fn have_debian_python() -> Option<String> {
    let version = debian_python();
    gpubox_testkit::found(
        "Debian's python3 (/usr/bin/python3 listed by the dpkg database)",
        version.is_some(),
    );
    version
}

fn python_example() -> PathBuf {
    repo_root().join("examples/python/gpubox.toml")
}

/// `gpubox build` of the Python example to `dest`, without Nix (it needs none).
fn build_python(cache: &Path, dest: &str) -> std::process::Output {
    run_ok(
        gpubox(cache)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("NIX_CONF_DIR", "/nonexistent")
            .arg("build")
            .arg(python_example())
            .arg("-o")
            .arg(dest),
    )
}

/// Unpacks the image (gpubox's own layers only: the example has no closure) into
/// `dest`.
fn unpack_top_layer(archive: &Path, dest: &Path) {
    let (reader, summaries) = read_oci_archive(archive);
    assert!(
        summaries.iter().all(|s| s.store_paths.is_empty()),
        "a closure-less image has no store-path layer"
    );
    assert_eq!(own_layers(&reader), 0..reader.layers().len());
    unpack_own_layers_with_gnu_tar(&reader, dest);
}

#[test]
fn python_example_brings_the_interpreters_packages() {
    let Some(version) = have_debian_python() else {
        return;
    };
    let work = tempdir();
    let archive = work.path().join("python.tar");
    let started = Instant::now();
    let out = build_python(
        &work.path().join("cache"),
        &format!("oci-archive:{}", archive.display()),
    );
    eprintln!(
        "built examples/python in {:.1} s: {} bytes",
        started.elapsed().as_secs_f64(),
        fs::metadata(&archive).map_or(0, |m| m.len())
    );
    let log = unwrapped(&String::from_utf8_lossy(&out.stderr));
    assert!(
        log.contains("hostBinaries /usr/bin/python3: bringing")
            && log.contains(&format!("libpython{version}-stdlib"))
            && log.contains("from the dpkg database"),
        "the build says which packages came along: {log}"
    );

    let root = work.path().join("root");
    unpack_top_layer(&archive, &root);
    let lib = root.join(format!("usr/lib/python{version}"));
    assert!(root.join("usr/bin/python3").is_file());
    for module in [
        "encodings/__init__.py",
        "json/__init__.py",
        "http/server.py",
    ] {
        assert!(lib.join(module).is_file(), "{module}");
    }
    let dynload: Vec<String> = fs::read_dir(lib.join("lib-dynload"))
        .expect("lib-dynload")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for module in ["_ssl.", "_sqlite3.", "_ctypes.", "_lzma.", "_bz2."] {
        assert!(dynload.iter().any(|n| n.starts_with(module)), "{module}");
    }
    // A package's link stays a link.
    let sitecustomize = lib.join("sitecustomize.py");
    if fs::symlink_metadata(&sitecustomize).is_ok() {
        assert!(fs::symlink_metadata(&sitecustomize)
            .unwrap()
            .file_type()
            .is_symlink());
    }
    assert!(
        !root.join("usr/share/doc").exists() && !root.join("usr/share/man").exists(),
        "documentation came along"
    );
    // Other programs of the packages stay out; the one named is there.
    assert!(!root.join(format!("usr/bin/pydoc{version}")).exists());
}

#[test]
fn python_example_runs_its_modules_in_podman() {
    let Some(_) = have_debian_python() else {
        return;
    };
    if !have("podman") {
        return;
    }
    let work = tempdir();
    let image = "gpubox-e2e-python:latest";
    let started = Instant::now();
    build_python(&work.path().join("cache"), &format!("podman:{image}"));
    eprintln!(
        "built examples/python into podman in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let run = Command::new("podman")
        .args(["run", "--rm", "--network", "none", image])
        .output()
        .expect("podman runs");
    let _ = Command::new("podman").args(["rmi", "-f", image]).output();
    let out = stdout(&run);
    assert!(
        run.status.success(),
        "the example failed in the container:\n{out}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for wanted in [
        "from /usr/bin/python3",
        "json: {\"answer\": 42, \"tools\": [\"gpubox\", \"python\"]}",
        "http.server: GET / -> 200 {\"answer\": 42",
        "ssl: OpenSSL 3.",
        "ssl: default context verifies certificates: True",
        "hashlib: sha256(b'gpubox') = d2dcebc37c353aca",
        "sum(stars) = 42",
        "ctypes: libc abs(-42) = 42",
        "lzma: 7000 -> ",
        "bz2: 7000 -> ",
        "all modules work",
    ] {
        assert!(out.contains(wanted), "{wanted:?} in:\n{out}");
    }
    assert!(!out.contains("round trip False"), "{out}");
}

/// The first of the usual library folders that has `name`.
fn system_library(name: &str) -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
    ]
    .iter()
    .map(|dir| Path::new(dir).join(name))
    .find(|path| path.is_file())
}

#[test]
fn a_shared_library_and_a_pattern_bring_what_they_load() {
    let Some(version) = have_debian_python() else {
        return;
    };
    let Some(libssl) = system_library("libssl.so.3") else {
        gpubox_testkit::missing("libssl.so.3 (Debian's libssl3)");
        return;
    };
    let work = tempdir();
    let pattern = format!("/usr/lib/python{version}/lib-dynload/_sqlite3*.so");
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        &format!(
            "name = \"libs\"\ncuda.enable = false\nhostBinaries = [{}, {}]\n",
            toml_str(&libssl),
            toml_str(&pattern)
        ),
    );
    let (reader, _) = build_and_read(work.path(), &spec);
    let root = work.path().join("root");
    unpack_own_layers_with_gnu_tar(&reader, &root);
    let inside = |path: &Path| root.join(path.strip_prefix("/").unwrap());
    assert!(inside(&libssl).is_file(), "libssl keeps its path");
    let libcrypto = libssl.with_file_name("libcrypto.so.3");
    let lib_twin = Path::new("/lib").join(libcrypto.strip_prefix("/usr/lib").unwrap());
    assert!(
        inside(&libcrypto).is_file() || inside(&lib_twin).is_file(),
        "libssl brings libcrypto"
    );
    let modules: Vec<String> = fs::read_dir(inside(Path::new(&format!(
        "/usr/lib/python{version}/lib-dynload"
    ))))
    .expect("the matched module's folder")
    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
    .collect();
    assert!(
        modules.iter().any(|m| m.starts_with("_sqlite3.")),
        "{modules:?}"
    );
    let has_sqlite = ["usr/lib", "lib"].iter().any(|dir| {
        fs::read_dir(
            root.join(dir)
                .join(libssl.parent().unwrap().file_name().unwrap()),
        )
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("libsqlite3.so"))
    });
    assert!(has_sqlite, "the module brings libsqlite3");
}

#[test]
fn a_missing_host_binary_is_shown_at_its_spec_line() {
    let err = build_fails(
        "name = \"x\"\nhostBinaries = [\n  \"/bin/sh\",\n  \"/no/such/tool\",\n]\n",
        out_dir,
    );
    let err = unwrapped(&err);
    assert!(err.contains("gpubox.toml:4"), "the spec's line: {err}");
    assert!(err.contains("hostBinaries[1]"), "{err}");
    assert!(
        err.contains("/no/such/tool does not exist on this machine"),
        "{err}"
    );
}

#[test]
fn a_pattern_matching_nothing_is_shown_at_its_spec_line() {
    let err = build_fails(
        "name = \"x\"\n\nhostBinaries = [\"/no/such/dir/*.so\"]\n",
        out_dir,
    );
    let err = unwrapped(&err);
    assert!(err.contains("gpubox.toml:3"), "the spec's line: {err}");
    assert!(
        err.contains("no file on this machine matches /no/such/dir/*.so"),
        "{err}"
    );
}
