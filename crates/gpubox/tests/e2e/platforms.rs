//! One spec, two platforms (issue 14): real Nix closures for x86_64-linux and
//! aarch64-linux (tests/fixtures/multiarch.nix, whose aarch64 paths Nix builds
//! through qemu-user), one OCI index pushed to docker-registry, read by skopeo,
//! and run by podman per platform under gpubox-init; reproducible across
//! folders; and the bad inputs, each refused before anything is written.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::*;
use super::registry::{have_registry_and_skopeo, Registry};

fn multiarch() -> PathBuf {
    repo_root().join("tests/fixtures/multiarch.nix")
}

/// Builds an attribute of tests/fixtures/multiarch.nix for a Nix system.
fn multiarch_path(attr: &str, system: &str) -> String {
    let out = run_ok(
        Command::new("nix-build")
            .env("NIX_CONF_DIR", nix_conf_dir())
            .arg(multiarch())
            .args(["-A", attr, "--no-out-link", "--argstr", "system", system]),
    );
    stdout(&out).trim().to_owned()
}

/// A two-platform spec whose package is the fixture's `app`, built for each
/// platform's system by gpubox (`--argstr system`).
fn two_platform_spec(dir: &Path) -> PathBuf {
    write_spec(
        dir,
        "gpubox.toml",
        &format!(
            r#"name = "multi"
tag = "v1"
platforms = ["linux/amd64", "linux/arm64"]
systemPackages = [{{ file = {}, attr = "app" }}]
cmd = ["whoami-arch"]
cuda.enable = false
"#,
            toml_str(multiarch())
        ),
    )
}

fn ready() -> bool {
    have("nix") && have_aarch64()
}

#[test]
fn one_index_in_the_registry_runs_each_platforms_program_in_podman_and_docker() {
    if !(ready() && have_registry_and_skopeo() && have("podman")) {
        return;
    }
    let work = tempdir();
    let registry = Registry::start(&work.path().join("registry"));
    let spec = two_platform_spec(work.path());
    let image = registry.image("multi:v1");
    let built = run_ok(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .args(["--tls-verify=false", "-o", &image]),
    );
    let index_digest = stdout(&built).trim().to_owned();
    let log = String::from_utf8_lossy(&built.stderr).into_owned();
    assert!(log.contains("building the linux/arm64 image"), "{log}");

    // skopeo reads one index with both platforms.
    let raw =
        run_ok(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &image]));
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    let platforms: Vec<(String, String, String)> = manifests
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let text = |key: &str| p[key].as_str().unwrap_or_default().to_owned();
            (text("os"), text("architecture"), text("variant"))
        })
        .collect();
    assert_eq!(
        platforms,
        [
            ("linux".into(), "amd64".into(), String::new()),
            ("linux".into(), "arm64".into(), "v8".into())
        ]
    );
    let sha = |bytes: &[u8]| {
        use sha2::Digest as _;
        format!("sha256:{:x}", sha2::Sha256::digest(bytes))
    };
    assert_eq!(
        sha(&raw.stdout),
        index_digest,
        "the digest printed is the index's"
    );

    // Each manifest's config names its platform; the shared store path is the
    // same layer in both, and the registry received that blob once.
    let manifest_of = |digest: &str| -> serde_json::Value {
        let raw = run_ok(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/multi@{digest}", registry.address()),
        ]));
        serde_json::from_slice(&raw.stdout).unwrap()
    };
    let shared = multiarch_path("shared", "x86_64-linux");
    let mut shared_layers = Vec::new();
    for (entry, arch) in manifests.iter().zip(["amd64", "arm64"]) {
        let manifest = manifest_of(entry["digest"].as_str().unwrap());
        let config = manifest["config"]["digest"].as_str().unwrap();
        let (_, config) = registry
            .get(&format!("/v2/multi/blobs/{config}"))
            .expect("config");
        let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(config["architecture"], arch);
        let layer = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| {
                l["annotations"]["io.gpubox.layer.store-paths"]
                    .as_str()
                    .and_then(|paths| serde_json::from_str::<Vec<String>>(paths).ok())
                    .is_some_and(|paths| paths.contains(&shared))
            })
            .unwrap_or_else(|| panic!("no layer of {shared} in the {arch} manifest: {manifest}"));
        shared_layers.push(layer["digest"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        shared_layers[0], shared_layers[1],
        "one blob for the shared path"
    );
    let shared_hex = shared_layers[0].trim_start_matches("sha256:");
    let uploads = registry
        .log()
        .lines()
        .filter(|line| line.contains("\"PUT /v2/multi/blobs/uploads/") && line.contains(shared_hex))
        .count();
    assert_eq!(
        uploads,
        1,
        "the shared layer went up once:\n{}",
        registry.log()
    );

    // A fresh runner (empty cache) building the same index for the same tag
    // reuses every platform's layers from the index in the registry.
    let again = run_ok(
        gpubox(&work.path().join("fresh-cache"))
            .arg("build")
            .arg(&spec)
            .args(["--tls-verify=false", "-o", &image]),
    );
    assert_eq!(stdout(&again).trim(), index_digest);
    let log = String::from_utf8_lossy(&again.stderr).into_owned();
    let reused = log.matches("reused from the registry").count();
    assert!(
        reused >= 8,
        "both platforms' layers reused ({reused}):\n{log}"
    );
    assert!(!log.contains("(1 of"), "no layer built:\n{log}");
    // The registry's index is read once for both platforms.
    assert_eq!(log.matches("with a gpubox key").count(), 1, "{log}");

    // podman, and Docker's engine (20.10 here; it takes a registry on
    // 127.0.0.1 over plain HTTP), pull each platform's image from the one
    // reference and run its own CPU's program under gpubox-init (the arm64 one
    // through qemu-user).
    let image = image.trim_start_matches("docker://");
    let engines = [("podman", &["--tls-verify=false"][..]), ("docker", &[][..])];
    for (engine, flags) in engines {
        if engine == "docker" && !have("docker") {
            continue;
        }
        for (platform, machine) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
            let out = run_ok(
                Command::new(engine)
                    .args(["run", "--rm", "--network", "none", "--platform", platform])
                    .args(flags)
                    .arg(image),
            );
            let printed = stdout(&out);
            assert!(
                printed.contains(&format!("arch: {machine}")),
                "{engine} {platform}: {printed}"
            );
            assert!(
                printed.contains("hello from the shared store path"),
                "{engine} {platform}: {printed}"
            );
            let _ = Command::new(engine).args(["rmi", "-f", image]).output();
        }
    }
}

#[test]
fn the_index_digest_is_the_same_from_another_folder_and_cache() {
    if !ready() {
        return;
    }
    let digests: Vec<(String, Vec<u8>)> = (0..2)
        .map(|_| {
            let work = tempdir();
            let spec = two_platform_spec(work.path());
            let archive = work.path().join("multi.tar");
            let out = run_ok(
                gpubox(&work.path().join("cache"))
                    .arg("build")
                    .arg(&spec)
                    .arg("-o")
                    .arg(format!("oci-archive:{}", archive.display())),
            );
            (
                stdout(&out).trim().to_owned(),
                std::fs::read(&archive).unwrap(),
            )
        })
        .collect();
    assert!(digests[0].0.starts_with("sha256:"), "{}", digests[0].0);
    assert_eq!(digests[0].0, digests[1].0);
    assert!(digests[0].1 == digests[1].1, "the archives differ");
}

#[test]
fn bad_platform_input_is_refused_before_anything_is_written() {
    if !ready() {
        return;
    }
    let work = tempdir();
    let cache = work.path().join("cache");
    let x86_toolbox = multiarch_path("toolbox", "x86_64-linux");

    // An x86_64 store path given to the arm64 image.
    let spec = write_spec(
        work.path(),
        "wrong-arch.toml",
        &format!(
            r#"name = "multi"
platforms = ["linux/amd64", "linux/arm64"]
cuda.enable = false

[platform."linux/arm64"]
systemPackages = ["{x86_toolbox}"]
"#
        ),
    );
    let out = work.path().join("out");
    // Builds `spec` (with `args`) to `out`, expecting a refusal; its message.
    let refused = |spec: &Path, args: &[&str]| {
        unwrapped(&run_fails(
            gpubox(&cache)
                .arg("build")
                .arg(spec)
                .args(args)
                .arg("-o")
                .arg(format!("oci:{}", out.display())),
        ))
    };
    let error = refused(&spec, &[]);
    assert!(error.contains("is x86_64 code"), "{error}");
    assert!(error.contains("linux/arm64 image"), "{error}");
    assert!(error.contains(&x86_toolbox), "{error}");
    assert!(!out.exists());

    // A package for a platform the build does not make.
    let spec = write_spec(
        work.path(),
        "no-platform.toml",
        &format!(
            "name = \"multi\"\nplatforms = [\"linux/amd64\"]\ncuda.enable = false\n\
             systemPackages = [{{ file = {}, attr = \"app\", system = \"aarch64-linux\" }}]\n",
            toml_str(multiarch())
        ),
    );
    let error = refused(&spec, &[]);
    assert!(
        error.contains(
            "systemPackages[0] is for aarch64-linux, but this build makes only linux/amd64"
        ),
        "{error}"
    );
    assert!(!out.exists());

    // An unknown platform, in the spec and on the command line.
    let spec = write_spec(
        work.path(),
        "unknown.toml",
        "name = \"multi\"\nplatforms = [\"linux/amd64\", \"linux/mips\"]\n",
    );
    let error = refused(&spec, &[]);
    assert!(error.contains("unknown platform \"linux/mips\""), "{error}");
    assert!(error.contains("platforms[1]"), "{error}");
    let error = refused(
        &two_platform_spec(work.path()),
        &["--platform", "linux/aarch64"],
    );
    assert!(error.contains("write linux/arm64"), "{error}");
    assert!(!out.exists());

    // A docker-archive holds one platform: the message names the flag.
    let archive = work.path().join("multi.tar");
    let fresh_cache = work.path().join("fresh-cache");
    let error = unwrapped(&run_fails(
        gpubox(&fresh_cache)
            .arg("build")
            .arg(two_platform_spec(work.path()))
            .arg("-o")
            .arg(format!("docker-archive:{}", archive.display())),
    ));
    assert!(error.contains("holds one platform's image"), "{error}");
    assert!(error.contains("linux/amd64 and linux/arm64"), "{error}");
    assert!(error.contains("--platform linux/amd64"), "{error}");
    assert!(!archive.exists());
    assert!(!fresh_cache.exists(), "refused before any layer was made");

    // hostBinaries are checked against the platform: an x86_64 program is
    // refused in the arm64 image, an aarch64 one (Debian's busybox-static:arm64)
    // is taken.
    let host_spec = |binary: &str| {
        write_spec(
            work.path(),
            "host.toml",
            &format!(
                "name = \"host\"\nplatforms = [\"linux/arm64\"]\ncuda.enable = false\n\
                 hostBinaries = [{{ src = \"{binary}\", dst = \"/bin/busybox\" }}]\n"
            ),
        )
    };
    let error = refused(&host_spec("/bin/busybox"), &[]);
    assert!(error.contains("/bin/busybox is x86_64 code"), "{error}");
    assert!(error.contains("hostBinaries[0]"), "{error}");
    assert!(error.contains("dpkg --add-architecture arm64"), "{error}");
    assert!(!out.exists());
    run_ok(
        gpubox(&cache)
            .arg("build")
            .arg(host_spec("/opt/gpubox-test/aarch64/bin/busybox"))
            .arg("-o")
            .arg(format!("oci:{}", out.display())),
    );

    // --platform picks one, and the archive holds that platform's image.
    run_ok(
        gpubox(&cache)
            .arg("build")
            .arg(two_platform_spec(work.path()))
            .args(["--platform", "linux/arm64", "-o"])
            .arg(format!("docker-archive:{}", archive.display())),
    );
    let reader = gpubox_oci::source::ImageReader::open_docker_archive(&archive).unwrap();
    let config: serde_json::Value = serde_json::from_slice(reader.config_json()).unwrap();
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["variant"], "v8");
}

#[test]
fn inspect_diff_push_sbom_and_from_image_read_the_index() {
    if !(ready() && have_registry_and_skopeo()) {
        return;
    }
    let work = tempdir();
    let cache = work.path().join("cache");
    let spec = two_platform_spec(work.path());
    let layout = work.path().join("layout");
    let sbom = work.path().join("sbom.spdx.json");
    let built = run_ok(
        gpubox(&cache)
            .arg("build")
            .arg(&spec)
            .arg("--sbom")
            .arg(&sbom)
            .arg("-o")
            .arg(format!("oci:{}", layout.display())),
    );
    let index_digest = stdout(&built).trim().to_owned();
    let source = format!("oci:{}:v1", layout.display());

    // One SPDX document per platform, each naming its architecture and the index.
    assert!(!sbom.exists(), "one document per platform, not one for all");
    for arch in ["amd64", "arm64"] {
        let file = work.path().join(format!("sbom.linux-{arch}.spdx.json"));
        let document: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let image = document["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["SPDXID"] == "SPDXRef-Image")
            .unwrap();
        let purl = image["externalRefs"][0]["referenceLocator"]
            .as_str()
            .unwrap();
        assert!(purl.contains(&format!("arch={arch}")), "{purl}");
        assert!(
            image["comment"].as_str().unwrap().contains(&index_digest),
            "{image}"
        );
    }

    // inspect shows the index and both images.
    let shown = run_ok(gpubox(&cache).args(["inspect", "--json", &source]));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["indexDigest"], index_digest);
    assert_eq!(
        shown["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64/v8"])
    );
    let architectures: Vec<&str> = shown["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| image["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(architectures, ["amd64", "arm64"]);
    let one = run_ok(gpubox(&cache).args(["inspect", "--platform", "linux/arm64", &source]));
    let text = stdout(&one);
    assert!(text.contains("Platform:     linux/arm64/v8"), "{text}");
    assert!(!text.contains("Platform:     linux/amd64"), "{text}");

    // diff compares platform by platform: the same index shares every layer.
    let diffed = run_ok(gpubox(&cache).args(["diff", "--json", &source, &source]));
    let diffed: serde_json::Value = serde_json::from_slice(&diffed.stdout).unwrap();
    let platforms = diffed["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 2, "{diffed}");
    for entry in platforms {
        assert!(
            entry["diff"]["onlyInB"].as_array().unwrap().is_empty(),
            "{entry}"
        );
        assert!(
            !entry["diff"]["shared"].as_array().unwrap().is_empty(),
            "{entry}"
        );
    }

    // push sends the index as it is: same digest, both platforms, the shared
    // layer once; inspect of the pushed index reads no layer blob.
    let registry = Registry::start(&work.path().join("registry"));
    let pushed = run_ok(
        gpubox(&cache)
            .args(["push", &source, &registry.image("multi:v1")])
            .arg("--tls-verify=false"),
    );
    assert_eq!(stdout(&pushed).trim(), index_digest);
    let remote = registry.skopeo_inspect("multi:v1");
    assert!(
        remote["Digest"].as_str().is_some_and(|d| d == index_digest),
        "{remote}"
    );
    let logged_before = registry.log().lines().count();
    let shown = run_ok(
        gpubox(&cache)
            .args(["inspect", "--json", &registry.image("multi:v1")])
            .arg("--tls-verify=false"),
    );
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["indexDigest"], index_digest);
    assert_eq!(shown["images"].as_array().unwrap().len(), 2);
    let layer_reads = registry
        .log()
        .lines()
        .skip(logged_before)
        .filter(|line| line.contains("\"GET /v2/multi/blobs/"))
        .count();
    // Two configs are the only blobs a metadata inspect reads.
    assert_eq!(layer_reads, 2, "{}", registry.log());

    // A spec built on the index takes each platform's own base image.
    let derived = write_spec(
        work.path(),
        "derived.toml",
        &format!(
            "name = \"derived\"\nfromImage = {}\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\ncuda.enable = false\n",
            toml_str(&source)
        ),
    );
    let derived_layout = work.path().join("derived");
    run_ok(
        gpubox(&cache)
            .arg("build")
            .arg(&derived)
            .arg("-o")
            .arg(format!("oci:{}", derived_layout.display())),
    );
    for arch in ["amd64", "arm64"] {
        let base =
            gpubox_oci::source::ImageReader::open_oci_dir_for(&layout, Some("v1"), Some(arch))
                .unwrap();
        let image = gpubox_oci::source::ImageReader::open_oci_dir_for(
            &derived_layout,
            Some("latest"),
            Some(arch),
        )
        .unwrap();
        let base_layers: Vec<_> = base.layers().iter().map(|l| l.digest.clone()).collect();
        let first: Vec<_> = image.layers()[..base_layers.len()]
            .iter()
            .map(|l| l.digest.clone())
            .collect();
        assert_eq!(
            first, base_layers,
            "the {arch} image starts with the {arch} base"
        );
    }
}

#[test]
fn podman_takes_this_machines_platform_of_several() {
    if !(ready() && have("podman")) {
        return;
    }
    let work = tempdir();
    let image = "gpubox-e2e-multi:v1";
    let built = run_ok(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(two_platform_spec(work.path()))
            .args(["-o", &format!("podman:{image}")]),
    );
    let (own, other) = match std::env::consts::ARCH {
        "aarch64" => ("arm64", "amd64"),
        _ => ("amd64", "arm64"),
    };
    let log = unwrapped(&String::from_utf8_lossy(&built.stderr));
    assert!(
        log.contains(&format!(
            "podman's storage takes one platform: building and loading linux/{own}"
        )),
        "{log}"
    );
    assert!(
        !log.contains(&format!("building the linux/{other} image")),
        "{log}"
    );
    let arch = podman_architecture(image);
    let _ = Command::new("podman").args(["rmi", "-f", image]).output();
    assert_eq!(arch, own);
}

#[test]
fn a_flake_installable_is_built_for_each_platforms_system() {
    if !ready() {
        return;
    }
    // A flake of the fixture's `app` for both systems; `#app` names
    // `packages.<system>.app`, so each platform gets its own.
    let work = tempdir();
    let flake = work.path().join("flake");
    std::fs::create_dir_all(&flake).unwrap();
    std::fs::copy(multiarch(), flake.join("multiarch.nix")).unwrap();
    std::fs::write(
        flake.join("flake.nix"),
        r#"{
  outputs = { self }:
    let app = system: (import ./multiarch.nix { inherit system; buildSystem = "x86_64-linux"; }).app;
    in {
      packages.x86_64-linux.app = app "x86_64-linux";
      packages.aarch64-linux.app = app "aarch64-linux";
    };
}
"#,
    )
    .unwrap();
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        &format!(
            "name = \"flaky\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\
             cuda.enable = false\nsystemPackages = [\"path:{}#app\"]\n",
            flake.display()
        ),
    );
    let layout = work.path().join("layout");
    run_ok(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(format!("oci:{}", layout.display())),
    );
    for (arch, system) in [("amd64", "x86_64-linux"), ("arm64", "aarch64-linux")] {
        let reader =
            gpubox_oci::source::ImageReader::open_oci_dir_for(&layout, Some("latest"), Some(arch))
                .unwrap();
        let paths: Vec<String> = reader
            .layers()
            .iter()
            .filter_map(|layer| layer.annotations.get("io.gpubox.layer.store-paths"))
            .flat_map(|paths| serde_json::from_str::<Vec<String>>(paths).unwrap())
            .collect();
        let toolbox = multiarch_path("toolbox", system);
        assert!(
            paths.contains(&toolbox),
            "{arch}: {paths:?} lacks {toolbox}"
        );
    }
}

#[test]
fn an_aarch64_host_binary_brings_its_libraries_from_the_arm64_multiarch_folder() {
    if !(have_aarch64() && have("podman") && have("aarch64-linux-gnu-gcc")) {
        return;
    }
    // A dynamically linked aarch64 program of this machine's (cross-compiled),
    // whose loader and libc come from Debian's libc6:arm64.
    let work = tempdir();
    let source = work.path().join("hello.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\n#include <sys/utsname.h>\n\
         int main(void) { struct utsname u; uname(&u); printf(\"host binary on %s\\n\", u.machine); return 0; }\n",
    )
    .unwrap();
    let program = work.path().join("hello-arm64");
    run_ok(
        Command::new("aarch64-linux-gnu-gcc")
            .arg("-O2")
            .arg("-o")
            .arg(&program)
            .arg(&source),
    );
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        &format!(
            "name = \"hostbin-arm\"\nplatforms = [\"linux/arm64\"]\ncuda.enable = false\n\
             hostBinaries = [{{ src = {}, dst = \"/usr/bin/hello\" }}]\ncmd = [\"/usr/bin/hello\"]\n",
            toml_str(&program)
        ),
    );
    let image = "gpubox-e2e-hostbin-arm64:v1";
    let built = run_ok(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .args(["-o", &format!("podman:{image}")]),
    );
    let log = String::from_utf8_lossy(&built.stderr).into_owned();
    // The loader and libc the image got are the aarch64 multiarch folder's.
    let archive = work.path().join("image.tar");
    run_ok(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(format!("oci-archive:{}", archive.display())),
    );
    let root = work.path().join("root");
    let (reader, _) = read_oci_archive(&archive);
    unpack_own_layers_with_gnu_tar(&reader, &root);
    for file in [
        "lib/aarch64-linux-gnu/libc.so.6",
        "lib/ld-linux-aarch64.so.1",
    ] {
        assert!(
            root.join(file).symlink_metadata().is_ok(),
            "{file} is not in the image: {log}"
        );
    }
    assert!(
        !root.join("lib/x86_64-linux-gnu/libc.so.6").exists(),
        "no x86_64 libc in the arm64 image"
    );
    let out = run_in_podman(&["--platform", "linux/arm64"], image, &[]);
    let _ = Command::new("podman").args(["rmi", "-f", image]).output();
    assert!(
        stdout(&out).contains("host binary on aarch64"),
        "{}\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
}
