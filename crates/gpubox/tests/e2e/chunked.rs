//! `compression = "zstd:chunked"` with the real parts: images pushed to a real
//! `docker-registry`, pulled by podman 4.3 with partial pulls enabled (from a
//! storage of the test's own, through `CONTAINERS_STORAGE_CONF`) and run; the
//! registry's access log says which blob bytes went out (status 206 and the
//! bytes written for each range request).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::*;
use super::registry::{have_registry_and_skopeo, Registry};

/// Store paths of the test's own: `bulk`, 10 MB of random files the two
/// images share; `small-VARIANT`, the one path that differs.
const FIXTURE: &str = r#"{ variant ? "1" }:
let
  mk = name: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" script ];
  };
in {
  bulk = mk "chunked-bulk-1.0" ''
    mkdir -p $out/share
    for i in $(seq 1 40); do head -c 250000 /dev/urandom > $out/share/blob-$i; done
    : > $out/share/empty
  '';
  small = mk "chunked-small-${variant}" ''
    mkdir -p $out/share
    echo "variant ${variant}" > $out/share/v
    head -c 20000 /dev/urandom > $out/share/noise
  '';
}
"#;

fn realise(dir: &Path, attr: &str, variant: &str) -> String {
    let out = run_ok(
        Command::new("nix-build")
            .env("NIX_CONF_DIR", nix_conf_dir())
            .arg(dir.join("chunked.nix"))
            .args(["-A", attr, "--no-out-link", "--argstr", "variant", variant]),
    );
    stdout(&out).trim().to_owned()
}

/// A podman whose storage and libpod state live in `root` (its storage.conf,
/// graph and run roots, and `--tmpdir`), partial pulls on or off; it shares
/// nothing with the machine's podman, and goes with the test's folder.
struct Podman {
    conf: PathBuf,
    tmp: PathBuf,
}

impl Podman {
    fn new(root: &Path, partial: bool) -> Podman {
        std::fs::create_dir_all(root).unwrap();
        let conf = root.join("storage.conf");
        std::fs::write(
            &conf,
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n\
                 [storage.options]\npull_options = {{enable_partial_images = \"{partial}\", \
                 use_hard_links = \"false\", ostree_repos = \"\"}}\n",
                root.join("graph").display(),
                root.join("run").display()
            ),
        )
        .unwrap();
        Podman {
            conf,
            tmp: root.join("tmp"),
        }
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_STORAGE_CONF", &self.conf)
            .arg("--tmpdir")
            .arg(&self.tmp);
        cmd
    }

    /// Pulls `image` with debug logging; returns the log.
    fn pull(&self, image: &str) -> String {
        let out =
            run_ok(
                self.cmd()
                    .args(["--log-level=debug", "pull", "--tls-verify=false", image]),
            );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn run(&self, image: &str, args: &[&str]) -> String {
        stdout(&run_ok(
            self.cmd()
                .args(["run", "--rm", "--network", "none", image])
                .args(args),
        ))
    }
}

/// `(status, bytes written)` of every blob GET the registry logged after the
/// first `from` bytes of its log, for the blobs in `digests`.
fn blob_gets(log: &str, from: usize, digests: &[String]) -> Vec<(String, u16, u64)> {
    log[from..]
        .lines()
        .filter_map(|line| {
            // The access log's combined format: `"GET /v2/R/blobs/D HTTP/1.1" 206 1393 ...`.
            let request = line.split('"').nth(1)?;
            let rest = line.split('"').nth(2)?;
            let uri = request.strip_prefix("GET ")?.split(' ').next()?;
            let digest = uri.split("/blobs/").nth(1)?;
            if !digests.iter().any(|d| d == digest) {
                return None;
            }
            let mut numbers = rest.split_whitespace();
            let status = numbers.next()?.parse().ok()?;
            let written = numbers.next()?.parse().ok()?;
            Some((digest.to_owned(), status, written))
        })
        .collect()
}

/// The layer digests and sizes of `name` in `registry`, with their annotations.
fn layers(registry: &Registry, name: &str) -> Vec<(String, u64, serde_json::Value)> {
    let out = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(registry.image(name)),
    );
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_owned(),
                l["size"].as_u64().unwrap(),
                l["annotations"].clone(),
            )
        })
        .collect()
}

fn spec(dir: &Path, name: &str, paths: &[&str]) -> PathBuf {
    let list: Vec<String> = paths.iter().map(toml_str).collect();
    write_spec(
        dir,
        &format!("{name}.toml"),
        &format!(
            "name = \"{name}\"\ncompression = \"zstd:chunked\"\nmaxLayers = 2\n\
             systemPackages = [{}]\n",
            list.join(", ")
        ),
    )
}

fn build(cache: &Path, spec: &Path, dest: &str) {
    run_ok(
        gpubox(cache)
            .arg("build")
            .arg(spec)
            .arg("--tls-verify=false")
            .args(["-o", dest]),
    );
}

#[test]
fn podman_pulls_zstd_chunked_layers_partially_and_runs_them() {
    if !(have("nix") && have("podman") && have_registry_and_skopeo()) {
        return;
    }
    let work = tempdir();
    let dir = work.path();
    std::fs::write(dir.join("chunked.nix"), FIXTURE).unwrap();
    let bulk = realise(dir, "bulk", "1");
    let small1 = realise(dir, "small", "1");
    let small2 = realise(dir, "small", "2");
    let busybox = nix_fixture("busybox");
    let registry = Registry::start(&dir.join("registry"));

    let spec1 = spec(dir, "one", &[&bulk, &small1, &busybox]);
    let spec2 = spec(dir, "two", &[&bulk, &small2, &busybox]);
    build(&dir.join("cache"), &spec1, &registry.image("chunked:one"));
    build(&dir.join("cache"), &spec2, &registry.image("chunked:two"));
    // Another cache, the same bytes.
    build(
        &dir.join("cache-b"),
        &spec1,
        &registry.image("chunked:again"),
    );
    let one = registry.skopeo_inspect("chunked:one");
    assert_eq!(
        one["Digest"],
        registry.skopeo_inspect("chunked:again")["Digest"],
        "two builds of one spec gave different manifests"
    );

    // Every layer says where its table of contents is, in both spellings
    // (skopeo 1.9's `inspect` has no LayersData; `--raw` shows the manifest).
    let layers1 = layers(&registry, "chunked:one");
    let layers2 = layers(&registry, "chunked:two");
    for (digest, _, annotations) in layers1.iter().chain(&layers2) {
        for key in [
            "io.github.containers.zstd-chunked.manifest-checksum",
            "io.github.containers.zstd-chunked.manifest-position",
            "io.containers.zstd-chunked.manifest-checksum",
            "io.containers.zstd-chunked.manifest-position",
            "io.github.containers.zstd-chunked.tarsplit-position",
            "io.github.containers.zstd-chunked.tarsplit-checksum",
        ] {
            assert!(
                annotations[key].is_string(),
                "{digest} lacks {key}: {annotations}"
            );
        }
    }

    // gpubox inspect says which layers are chunked, from the manifest alone.
    let inspected = run_ok(
        gpubox(&dir.join("cache"))
            .args(["inspect", "--json", "--tls-verify=false"])
            .arg(registry.image("chunked:one")),
    );
    let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).expect("JSON");
    for layer in inspected["layers"].as_array().expect("layers") {
        assert_eq!(layer["chunked"], true, "{layer}");
        assert_eq!(layer["compression"], "zstd:chunked", "{layer}");
        // Built with this cache, so a build here takes it from there.
        assert_eq!(layer["cached"], true, "{layer}");
    }

    // Partial pull of the first image: only range requests for its layers.
    let partial = Podman::new(&dir.join("podman-partial"), true);
    let digests1: Vec<String> = layers1.iter().map(|l| l.0.clone()).collect();
    let image1 = format!("{}/chunked:one", registry.address());
    let log = partial.pull(&image1);
    assert!(
        log.contains("Retrieved partial blob"),
        "podman did not pull partially:\n{log}"
    );
    let gets = blob_gets(&registry.log(), 0, &digests1);
    assert!(
        !gets.is_empty(),
        "no layer GETs logged:\n{}",
        registry.log()
    );
    assert!(
        gets.iter().all(|(_, status, _)| *status == 206),
        "a layer was fetched whole: {gets:?}"
    );
    let out = partial.run(
        &image1,
        &[&format!("{busybox}/bin/cat"), &format!("{small1}/share/v")],
    );
    assert_eq!(out.trim(), "variant 1");
    let sums = partial.run(
        &image1,
        &[
            &format!("{busybox}/bin/sh"),
            "-c",
            &format!("{busybox}/bin/busybox sha256sum {bulk}/share/blob-7"),
        ],
    );
    let expected = run_ok(Command::new("sha256sum").arg(format!("{bulk}/share/blob-7")));
    assert_eq!(
        sums.split_whitespace().next(),
        stdout(&expected).split_whitespace().next(),
        "a file pulled by range differs from the store's"
    );

    // The second image, one store path apart: its changed layer comes mostly
    // from the files podman already has.
    let digests2: Vec<String> = layers2.iter().map(|l| l.0.clone()).collect();
    let before = registry.log().len();
    let image2 = format!("{}/chunked:two", registry.address());
    partial.pull(&image2);
    let gets2 = blob_gets(&registry.log(), before, &digests2);
    let sent: u64 = gets2.iter().map(|g| g.2).sum();
    let total: u64 = layers2.iter().map(|l| l.1).sum();
    assert!(
        total > 10_000_000,
        "the layers are smaller than the fixture: {total}"
    );
    assert!(
        sent * 20 < total,
        "the second pull fetched {sent} of {total} layer bytes (5% allowed): {gets2:?}"
    );
    eprintln!(
        "second image: {sent} of {total} layer bytes fetched ({:.2}%)",
        sent as f64 * 100.0 / total as f64
    );
    let out = partial.run(
        &image2,
        &[&format!("{busybox}/bin/cat"), &format!("{small2}/share/v")],
    );
    assert_eq!(out.trim(), "variant 2");

    // Partial pulls off: the same layers are plain zstd, fetched whole.
    let plain = Podman::new(&dir.join("podman-plain"), false);
    let before = registry.log().len();
    let log = plain.pull(&image1);
    assert!(!log.contains("Retrieved partial blob"), "{log}");
    let gets = blob_gets(&registry.log(), before, &digests1);
    for (digest, size, _) in &layers1 {
        assert!(
            gets.iter()
                .any(|g| &g.0 == digest && g.1 == 200 && g.2 == *size),
            "{digest} was not fetched whole: {gets:?}"
        );
    }
    let out = plain.run(
        &image1,
        &[&format!("{busybox}/bin/cat"), &format!("{small1}/share/v")],
    );
    assert_eq!(out.trim(), "variant 1");
}
