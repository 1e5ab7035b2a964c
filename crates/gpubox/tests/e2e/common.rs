//! Shared helpers: running gpubox, building the Nix fixtures, finding the real
//! parts, reading images back.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gpubox_oci::source::{summarize_layer, ImageReader, LayerSummary};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn nix_conf_dir() -> PathBuf {
    repo_root().join("tests/nix")
}

/// The gpubox binary under test, with Nix pointed at the test settings and a
/// private layer cache.
pub fn gpubox(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpubox"));
    cmd.env("NIX_CONF_DIR", nix_conf_dir())
        .env("GPUBOX_CACHE_DIR", cache)
        .env_remove("SOURCE_DATE_EPOCH");
    cmd
}

/// Runs `cmd`, failing the test with its output when it does not succeed.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd`, expecting it to fail; returns its stderr.
pub fn run_fails(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded but should have failed; stderr: {stderr}"
    );
    stderr
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a real part is usable. In CI its absence fails the test; elsewhere the
/// test prints why it is skipped and returns early.
pub fn have(part: &str) -> bool {
    let works = match part {
        "docker" => Command::new("docker").arg("info").output(),
        "podman" => Command::new("podman").arg("info").output(),
        "nix" => Command::new("nix-build").arg("--version").output(),
        "skopeo" => Command::new("skopeo").arg("--version").output(),
        // Its --version takes an argument (the SPDX version to write).
        "pyspdxtools" => Command::new("pyspdxtools").arg("--help").output(),
        // OpenSSH's programs and sshpass know only -V.
        "ssh" | "sshd" | "sshpass" => Command::new(part).arg("-V").output(),
        other => Command::new(other).arg("--version").output(),
    }
    .is_ok_and(|o| o.status.success());
    gpubox_testkit::found(part, works)
}

/// Whether this machine runs aarch64 programs (qemu-user through binfmt_misc)
/// and has the aarch64 busybox the fixture builds with.
pub fn have_aarch64() -> bool {
    let binfmt = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64")
        .is_ok_and(|status| status.starts_with("enabled"));
    let busybox = Path::new("/opt/gpubox-test/aarch64/bin/busybox").is_file();
    gpubox_testkit::found(
        "qemu-aarch64 (binfmt_misc) and the aarch64 busybox",
        binfmt && busybox,
    )
}

/// The architecture podman's storage records for `image` (`amd64`, `arm64`).
pub fn podman_architecture(image: &str) -> String {
    let out = run_ok(Command::new("podman").args([
        "image",
        "inspect",
        "--format",
        "{{.Architecture}}",
        image,
    ]));
    stdout(&out).trim().to_owned()
}

/// Realises an attribute of tests/fixtures/closure.nix with real `nix-build`.
pub fn nix_fixture(attr: &str) -> String {
    nix_fixture_with(attr, &[])
}

/// Realises an attribute of tests/fixtures/closure.nix with the fixture's
/// arguments (`--argstr NAME VALUE`) set.
pub fn nix_fixture_with(attr: &str, args: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("nix-build");
    cmd.env("NIX_CONF_DIR", nix_conf_dir())
        .arg(repo_root().join("tests/fixtures/closure.nix"))
        .args(["-A", attr, "--no-out-link"]);
    for (name, value) in args {
        cmd.args(["--argstr", name, value]);
    }
    stdout(&run_ok(&mut cmd)).trim().to_owned()
}

/// The closure of `path`, from `nix-store -qR`.
pub fn nix_closure(path: &str) -> Vec<String> {
    let out = run_ok(
        Command::new("nix-store")
            .env("NIX_CONF_DIR", nix_conf_dir())
            .args(["--query", "--requisites", path]),
    );
    let mut paths: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    paths.sort();
    paths
}

/// A spec file written into `dir`.
pub fn write_spec(dir: &Path, name: &str, toml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, toml).expect("write spec");
    path
}

/// An image read back with gpubox's own reader, and each layer's summary.
pub fn read_oci_archive(file: &Path) -> (ImageReader, Vec<LayerSummary>) {
    let reader = ImageReader::open_oci_archive(file, None).expect("read oci-archive");
    let summaries = (0..reader.layers().len())
        .map(|i| summarize_layer(reader.open_layer(i).expect("open layer")).expect("summarize"))
        .collect();
    (reader, summaries)
}

/// A fresh temporary folder.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// TOML string literal for a path.
pub fn toml_str(p: impl AsRef<Path>) -> String {
    format!("{:?}", p.as_ref().display().to_string())
}

/// Builds `spec` into `image.tar` (an oci-archive) in `work`, with a cache there,
/// and reads it back.
pub fn build_and_read(work: &Path, spec: &Path) -> (ImageReader, Vec<LayerSummary>) {
    let image = work.join("image.tar");
    run_ok(
        gpubox(&work.join("cache"))
            .arg("build")
            .arg(spec)
            .arg("-o")
            .arg(format!("oci-archive:{}", image.display())),
    );
    read_oci_archive(&image)
}

/// Unpacks layer `index` of `reader` into `dest` with GNU tar, keeping modes.
/// The indexes of gpubox's own layers (copyToRoot, hostBinaries, gpubox-init and
/// the generated files): the last layers whose history line says gpubox made
/// them from files rather than store paths.
pub fn own_layers(reader: &ImageReader) -> std::ops::Range<usize> {
    let config = reader.config().expect("the image's config");
    let made_by: Vec<String> = config["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|h| h["empty_layer"] != true)
        .map(|h| h["created_by"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(made_by.len(), reader.layers().len(), "{made_by:?}");
    let own = made_by
        .iter()
        .rev()
        .take_while(|line| line.starts_with("gpubox: ") && !line.starts_with("gpubox: store paths"))
        .count();
    made_by.len() - own..made_by.len()
}

/// Unpacks gpubox's own layers ([`own_layers`]) with GNU tar into `dest`, in
/// order, as a runtime stacks them.
pub fn unpack_own_layers_with_gnu_tar(reader: &ImageReader, dest: &Path) {
    for index in own_layers(reader) {
        unpack_layer_with_gnu_tar(reader, index, dest);
    }
}

pub fn unpack_layer_with_gnu_tar(reader: &ImageReader, index: usize, dest: &Path) {
    std::fs::create_dir_all(dest).expect("create unpack folder");
    let mut tar = Command::new("tar")
        .args(["-x", "--numeric-owner", "-p", "-C"])
        .arg(dest)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("GNU tar");
    let mut stdin = tar.stdin.take().expect("tar stdin");
    std::io::copy(
        &mut reader.open_layer(index).expect("open layer"),
        &mut stdin,
    )
    .expect("stream the layer to tar");
    drop(stdin);
    assert!(
        tar.wait().expect("tar").success(),
        "GNU tar refused layer {index}"
    );
}

/// Builds `spec` (written into a fresh folder with `setup` run first) into an
/// oci-archive there, expects failure, checks nothing was left behind, and
/// returns stderr.
pub fn build_fails(spec: &str, setup: impl FnOnce(&Path)) -> String {
    let work = tempdir();
    setup(work.path());
    let spec_path = write_spec(work.path(), "gpubox.toml", spec);
    let before = listing(work.path());
    let stderr = run_fails(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec_path)
            .args(["-o", "oci-archive:out/image.tar"])
            .current_dir(work.path()),
    );
    let after: Vec<String> = listing(work.path())
        .into_iter()
        .filter(|p| !p.starts_with("cache"))
        .collect();
    let before: Vec<String> = before
        .into_iter()
        .filter(|p| !p.starts_with("cache"))
        .collect();
    assert_eq!(
        before, after,
        "the failed build left files behind; stderr: {stderr}"
    );
    stderr
}

/// Every path under `dir`, relative to it, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Creates `out/` in `dir`, where [`build_fails`] writes.
pub fn out_dir(dir: &Path) {
    fs::create_dir_all(dir.join("out")).unwrap();
}

/// The bundled example's spec (examples/hello: files from this machine, no Nix).
pub fn example_spec() -> PathBuf {
    repo_root().join("examples/hello/gpubox.toml")
}

/// `gpubox build` of the bundled example to `dest`, with the layer cache
/// `cache`; add flags and run it.
pub fn build_example_to(cache: &Path, dest: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = gpubox(cache);
    cmd.arg("build").arg(example_spec()).arg("-o").arg(dest);
    cmd
}

/// Builds the bundled example into the OCI layout `WORK/built` (see
/// [`hello_ref`]) with the cache `WORK/cache`; returns the layout folder.
pub fn build_hello(work: &Path) -> PathBuf {
    let built = work.join("built");
    run_ok(&mut build_example_to(
        &work.join("cache"),
        hello_ref(&built),
    ));
    built
}

/// `oci:DIR:v1`, the image in an OCI layout that [`build_hello`] wrote.
pub fn hello_ref(dir: &Path) -> String {
    format!("oci:{}:v1", dir.display())
}

/// `gpubox push` of the layout `built` ([`hello_ref`]) to `dest`, with the
/// cache `WORK/cache`; add flags and run it.
pub fn push_built(work: &Path, built: &Path, dest: &str) -> Command {
    let mut cmd = gpubox(&work.join("cache"));
    cmd.arg("push").arg(hello_ref(built)).arg(dest);
    cmd
}

/// The manifest an OCI layout's index names for its only image.
pub fn layout_manifest(dir: &Path) -> Vec<u8> {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index.json"))
            .expect("index.json is JSON");
    let digest = index["manifests"][0]["digest"].as_str().expect("a digest");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    fs::read(dir.join("blobs/sha256").join(hex)).expect("the manifest blob")
}

/// Builds `spec` into the oci-archive `file` with `cache`, letting a base
/// come from a plain-HTTP registry; returns what gpubox said on stderr.
pub fn build_logged(cache: &Path, spec: &Path, file: &Path) -> String {
    let out = run_ok(
        gpubox(cache)
            .arg("build")
            .arg(spec)
            .arg("--tls-verify=false")
            .arg("-o")
            .arg(format!("oci-archive:{}", file.display())),
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `text` with every run of whitespace made one space, so an assertion can look for
/// a phrase that the diagnostics renderer wrapped over lines (it wraps between words
/// only: paths and names stay whole).
pub fn unwrapped(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Builds `spec` into podman as `image` with `cache`, runs it there without a
/// network (`podman run OPTIONS IMAGE ARGS`) and removes it; returns what the build
/// said on stderr and the run's output, successful or not.
pub fn build_and_try_in_podman(
    cache: &Path,
    spec: &Path,
    image: &str,
    options: &[&str],
    args: &[&str],
) -> (String, Output) {
    let built = run_ok(
        gpubox(cache)
            .arg("build")
            .arg(spec)
            .arg("--tls-verify=false")
            .args(["-o", &format!("podman:{image}")]),
    );
    let out = run_in_podman(options, image, args);
    let _ = Command::new("podman").args(["rmi", "-f", image]).output();
    (String::from_utf8_lossy(&built.stderr).into_owned(), out)
}

/// `podman run --rm --network none OPTIONS IMAGE ARGS`, successful or not.
pub fn run_in_podman(options: &[&str], image: &str, args: &[&str]) -> Output {
    Command::new("podman")
        .args(["run", "--rm", "--network", "none"])
        .args(options)
        .arg(image)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run podman: {e}"))
}

/// [`build_and_try_in_podman`], failing the test when the container fails;
/// returns the build's stderr and what the container printed.
pub fn build_and_run_in_podman(
    cache: &Path,
    spec: &Path,
    image: &str,
    options: &[&str],
    args: &[&str],
) -> (String, String) {
    let (log, out) = build_and_try_in_podman(cache, spec, image, options, args);
    assert!(
        out.status.success(),
        "podman run {image} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    (log, stdout(&out))
}
