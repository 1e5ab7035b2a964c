//! `fromImage`: an image built on a base from an `oci:` folder, a
//! `docker-archive:` file or a registry keeps the base's layers byte for byte,
//! runs in podman with the base's files, accounts and our environment; a
//! registry base is downloaded once; a base that does not fit `maxLayers` or
//! a tag that is not there is refused with a clear message. `gpubox inspect`
//! and `gpubox diff` read registry images too.

use std::path::{Path, PathBuf};
use std::process::Command;

use gpubox_oci::source::{ImageReader, LayerFile};
use gpubox_oci::Compression;
use tempfile::TempDir;

use super::common::*;
use super::registry::{registry_and_hello, Registry};

/// A spec on `from` with its own file, variable and command.
fn derived_spec(work: &Path, from: &str, extra: &str) -> PathBuf {
    std::fs::write(work.join("mine.txt"), "my own file\n").expect("write mine.txt");
    write_spec(
        work,
        "derived.toml",
        &format!(
            r#"name = "gpubox-e2e-derived"
tag = "t1"
fromImage = "{from}"
copyToRoot = [{{ src = "mine.txt", dst = "/mine.txt" }}]
extraEnv = {{ MINE = "and mine" }}
cmd = ["/bin/sh", "-c", "cat /app/hello.sh >/dev/null && echo $GREETING $MINE && cat /mine.txt"]
{extra}"#
        ),
    )
}

fn env_of(reader: &ImageReader) -> Vec<String> {
    reader.config().expect("config")["config"]["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .map(|v| v.as_str().expect("Env entry").to_owned())
        .collect()
}

/// Checks what an image of [`derived_spec`] printed: the base's file and
/// variable, then ours.
fn assert_derived_output(said: &str) {
    assert!(
        said.contains("hello from a gpubox image and mine"),
        "{said}"
    );
    assert!(said.contains("my own file"), "{said}");
}

#[test]
fn oci_base_layers_are_reused_and_the_image_runs_in_podman() {
    let work = tempdir();
    let base_dir = build_hello(work.path());
    let spec = derived_spec(work.path(), &hello_ref(&base_dir), "");
    let (image, _) = build_and_read(work.path(), &spec);

    let base = ImageReader::open_oci_dir(&base_dir, Some("v1")).expect("read the base");
    let base_layers = base.layers();
    // Ours: the copyToRoot item, gpubox-init and the generated files.
    assert_eq!(image.layers().len(), base_layers.len() + 3);
    assert_eq!(&image.layers()[..base_layers.len()], base_layers);

    let base_config = base.config().expect("base config");
    let config = image.config().expect("config");
    let history = config["history"].as_array().expect("history");
    let base_history = base_config["history"].as_array().expect("base history");
    assert_eq!(&history[..base_history.len()], base_history.as_slice());
    assert_eq!(history.len(), base_history.len() + 3);
    // Not set in the derived spec: the base's working folder, PATH and labels.
    assert_eq!(config["config"]["WorkingDir"], "/app");
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.description"],
        "gpubox quick-start example"
    );
    let env = env_of(&image);
    assert!(
        env.contains(&"PATH=/usr/local/bin:/usr/bin:/bin".to_owned()),
        "{env:?}"
    );
    assert!(env.contains(&"MINE=and mine".to_owned()), "{env:?}");
    assert!(
        env.contains(&"GREETING=hello from a gpubox image".to_owned()),
        "{env:?}"
    );

    if !have("podman") {
        return;
    }
    // A rebuild takes the base's layers from the cache instead of reading them.
    let (log, said) = build_and_run_in_podman(
        &work.path().join("cache"),
        &spec,
        "gpubox-e2e-derived:t1",
        &[],
        &[],
    );
    assert_eq!(
        log.matches("(reused as is, cached)").count(),
        base_layers.len(),
        "{log}"
    );
    assert_derived_output(&said);
}

#[test]
fn docker_archive_base_layers_are_reused_uncompressed() {
    if !have("skopeo") {
        return;
    }
    let work = tempdir();
    let base_dir = build_hello(work.path());
    // skopeo writes docker-archive layers as plain tars.
    let archive = work.path().join("base-docker.tar");
    run_ok(Command::new("skopeo").args([
        "copy",
        &hello_ref(&base_dir),
        &format!("docker-archive:{}:base:v1", archive.display()),
    ]));
    let spec = derived_spec(
        work.path(),
        &format!("docker-archive:{}", archive.display()),
        "",
    );
    let derived = work.path().join("derived.tar");
    build_logged(&work.path().join("cache"), &spec, &derived);

    let base = ImageReader::open_docker_archive(&archive).expect("read the base");
    let (image, summaries) = read_oci_archive(&derived);
    for (ours, theirs) in image.layers().iter().zip(base.layers()) {
        assert_eq!(ours.digest, theirs.digest);
        assert_eq!(ours.compression, Compression::None);
        assert_eq!(ours.diff_id.as_ref(), Some(&theirs.digest));
    }
    assert!(summaries[0].entry_count > 0);

    let inspected = run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci-archive:{}", derived.display()),
    ]));
    let manifest: serde_json::Value = serde_json::from_slice(&inspected.stdout).expect("manifest");
    let first = &manifest["layers"][0];
    assert_eq!(first["mediaType"], "application/vnd.oci.image.layer.v1.tar");
    assert_eq!(first["digest"], base.layers()[0].digest.to_string());
}

#[test]
fn a_base_with_more_layers_than_max_layers_allows_is_refused() {
    let work = tempdir();
    let base_dir = build_hello(work.path());
    // The example's layers and three of ours: a base for the next spec.
    let spec = derived_spec(work.path(), &hello_ref(&base_dir), "");
    let two_layers = work.path().join("two-layers");
    run_ok(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(format!("oci:{}:two", two_layers.display())),
    );
    let spec = derived_spec(
        work.path(),
        &format!("oci:{}:two", two_layers.display()),
        "maxLayers = 2\n",
    );
    let stderr = run_fails(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .args(["-o", &format!("oci:{}", work.path().join("out").display())]),
    );
    let base_layers = ImageReader::open_oci_dir(&two_layers, Some("two"))
        .expect("read the base")
        .layers()
        .len();
    assert!(stderr.contains("fromImage"), "{stderr}");
    assert!(
        stderr.contains(&format!("has {base_layers} layers")),
        "{stderr}"
    );
    assert!(stderr.contains("maxLayers = 2"), "{stderr}");
}

/// [`registry_and_hello`] with the example layout pushed to the registry as
/// `base:v1`; the pushed manifest digest comes last. `None` where the test is
/// skipped.
fn registry_with_base() -> Option<(TempDir, Registry, PathBuf, String)> {
    let (work, registry, base_dir) = registry_and_hello()?;
    let pushed = run_ok(
        push_built(work.path(), &base_dir, &registry.image("base:v1")).arg("--tls-verify=false"),
    );
    let digest = stdout(&pushed).trim().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    Some((work, registry, base_dir, digest))
}

/// How many blob downloads from the `base` repository the registry has logged.
fn blob_gets(registry: &Registry) -> usize {
    registry
        .log()
        .lines()
        .filter(|line| line.contains("\"GET /v2/base/blobs/"))
        .count()
}

#[test]
fn a_registry_base_is_pulled_once_and_its_layers_reused() {
    let Some((work, registry, base_dir, digest)) = registry_with_base() else {
        return;
    };
    let from = registry.image("base:v1");
    let spec = derived_spec(work.path(), &from, "");
    // A cache of its own, so the base's blobs are not there yet.
    let cache = work.path().join("pull-cache");
    let derived = work.path().join("derived.tar");

    let base = ImageReader::open_oci_dir(&base_dir, Some("v1")).expect("read the base");
    let blobs = base.layers().len() + 1;
    let log = build_logged(&cache, &spec, &derived);
    assert!(
        log.contains(&format!("resolved {from} to {digest}")),
        "{log}"
    );
    assert!(log.contains(&format!("{blobs} blobs downloaded")), "{log}");
    let fetched = blob_gets(&registry);
    assert!(fetched >= blobs, "the registry logged {fetched} blob GETs");

    let (image, _) = read_oci_archive(&derived);
    assert_eq!(image.layers().len(), base.layers().len() + 3);
    assert_eq!(&image.layers()[..base.layers().len()], base.layers());
    let env = env_of(&image);
    assert!(env.contains(&"MINE=and mine".to_owned()), "{env:?}");
    assert!(
        env.contains(&"PATH=/usr/local/bin:/usr/bin:/bin".to_owned()),
        "{env:?}"
    );

    // Rebuilt: the tag is resolved again, but no blob comes down.
    let log = build_logged(&cache, &spec, &derived);
    assert!(log.contains("0 blobs downloaded"), "{log}");
    assert_eq!(blob_gets(&registry), fetched);
    let (again, _) = read_oci_archive(&derived);
    assert_eq!(again.manifest_digest(), image.manifest_digest());

    // It runs in podman with the base's files and our environment.
    if have("podman") {
        let (_, said) =
            build_and_run_in_podman(&cache, &spec, "gpubox-e2e-registry-derived:t1", &[], &[]);
        assert_derived_output(&said);
    }

    // Pinned by digest: the same image, nothing to resolve; the SBOM names
    // the base by its digest.
    let pinned = derived_spec(work.path(), &registry.image(&format!("base@{digest}")), "");
    let sbom = work.path().join("sbom.json");
    let built = run_ok(
        gpubox(&cache)
            .arg("build")
            .arg(&pinned)
            .arg("--tls-verify=false")
            .arg("--sbom")
            .arg(&sbom)
            .arg("-o")
            .arg(format!(
                "oci-archive:{}",
                work.path().join("pinned.tar").display()
            )),
    );
    let log = String::from_utf8_lossy(&built.stderr);
    assert!(!log.contains("resolved"), "{log}");
    let (pinned_image, _) = read_oci_archive(&work.path().join("pinned.tar"));
    assert_eq!(&pinned_image.layers()[..base.layers().len()], base.layers());
    let sbom = std::fs::read_to_string(&sbom).expect("SBOM");
    assert!(sbom.contains("SPDXRef-BaseImage"), "{sbom}");
    assert!(
        sbom.contains(digest.trim_start_matches("sha256:")),
        "{sbom}"
    );

    // A tag that is not there is named in the error.
    let missing = registry.image("base:nope");
    let spec_missing = derived_spec(work.path(), &missing, "");
    let stderr = run_fails(
        gpubox(&cache)
            .arg("build")
            .arg(&spec_missing)
            .arg("--tls-verify=false")
            .args(["-o", &format!("oci:{}", work.path().join("out").display())]),
    );
    let said = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(said.contains(&format!("fromImage `{missing}`")), "{stderr}");
    assert!(
        said.contains(&format!("{missing} does not exist")),
        "{stderr}"
    );
}

#[test]
fn inspect_and_diff_read_registry_images() {
    let Some((work, registry, base_dir, digest)) = registry_with_base() else {
        return;
    };
    let remote = registry.image("base:v1");
    let cache = work.path().join("pull-cache");

    let inspected = run_ok(
        gpubox(&cache)
            .args(["inspect", "--json", "--tls-verify=false"])
            .arg(&remote),
    );
    let report: serde_json::Value = serde_json::from_slice(&inspected.stdout).expect("JSON");
    let skopeo = registry.skopeo_inspect("base:v1");
    assert_eq!(report["manifestDigest"], skopeo["Digest"]);
    assert_eq!(report["manifestDigest"], digest.as_str());
    let layers: Vec<&serde_json::Value> = report["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .collect();
    let skopeo_layers = skopeo["Layers"].as_array().expect("Layers");
    assert_eq!(layers.len(), skopeo_layers.len());
    for (ours, theirs) in layers.iter().zip(skopeo_layers) {
        assert_eq!(ours["digest"], *theirs);
        assert!(ours["entries"].as_u64().unwrap_or(0) > 0, "{ours}");
    }
    // Its layers are described by their annotations: none was downloaded.
    let layer_gets = |registry: &Registry, repository: &str| {
        let log = registry.log();
        skopeo_layers
            .iter()
            .filter(|digest| {
                let digest = digest.as_str().unwrap_or_default();
                log.contains(&format!("\"GET /v2/{repository}/blobs/{digest}"))
            })
            .count()
    };
    assert_eq!(layer_gets(&registry, "base"), 0, "{}", registry.log());
    // --layers reads them, and finds what the annotations said.
    let read = run_ok(
        gpubox(&cache)
            .args(["inspect", "--json", "--layers", "--tls-verify=false"])
            .arg(&remote),
    );
    let read: serde_json::Value = serde_json::from_slice(&read.stdout).expect("JSON");
    assert_eq!(layer_gets(&registry, "base"), skopeo_layers.len());
    for (annotated, read) in layers
        .iter()
        .zip(read["layers"].as_array().expect("layers"))
    {
        for field in ["entries", "uncompressedSize", "storePaths"] {
            assert_eq!(annotated[field], read[field], "{field}");
        }
    }
    // An image whose layers carry no annotations (a Docker v2s2 copy) is shown
    // without their contents, and still nothing is downloaded.
    run_ok(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--format",
        "v2s2",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &remote,
        &registry.image("foreign:v1"),
    ]));
    let foreign = run_ok(
        gpubox(&work.path().join("foreign-cache"))
            .args(["inspect", "--tls-verify=false"])
            .arg(registry.image("foreign:v1")),
    );
    let said = unwrapped(&stdout(&foreign));
    assert!(
        said.contains("is not known without downloading: pass --layers"),
        "{said}"
    );
    assert_eq!(layer_gets(&registry, "foreign"), 0, "{}", registry.log());

    let diff = run_ok(
        gpubox(&cache)
            .args(["diff", "--tls-verify=false"])
            .arg(hello_ref(&base_dir))
            .arg(&remote),
    );
    let said = stdout(&diff);
    assert!(
        said.contains(&format!(
            "shared: {}",
            gpubox_build::Count(layers.len(), "layer")
        )),
        "{said}"
    );
    assert!(said.contains("only in B: 0 layers"), "{said}");
    assert!(said.contains("only in A: 0 layers"), "{said}");
}

/// A base image with its own accounts and name-service settings.
fn build_base_with_accounts(work: &Path) -> PathBuf {
    let etc = work.join("base-etc");
    std::fs::create_dir_all(&etc).expect("etc folder");
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
         alice:x:1000:1000:Alice:/home/alice:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(
        etc.join("group"),
        "root:x:0:\nnogroup:x:65534:\nalice:x:1000:\n",
    )
    .expect("group");
    std::fs::write(
        etc.join("nsswitch.conf"),
        "# the base's own\npasswd: files\n",
    )
    .expect("nsswitch.conf");
    let spec = write_spec(
        work,
        "accounts-base.toml",
        r#"name = "gpubox-e2e-accounts-base"
hostBinaries = ["/bin/sh", "/bin/cat"]
copyToRoot = [{ src = "base-etc", dst = "/etc" }]
env = { PATH = "/usr/bin:/bin" }
"#,
    );
    build_base(work, &spec, "accounts-base")
}

/// Builds the base `spec` into the OCI layout `work/name`, tagged `base`.
fn build_base(work: &Path, spec: &Path, name: &str) -> PathBuf {
    let dir = work.join(name);
    run_ok(
        gpubox(&work.join("cache"))
            .arg("build")
            .arg(spec)
            .arg("-o")
            .arg(format!("oci:{}:base", dir.display())),
    );
    dir
}

#[test]
fn a_base_keeps_its_own_accounts_and_gains_only_the_missing_ones() {
    let work = tempdir();
    let base_dir = build_base_with_accounts(work.path());
    let wanted = ["etc/passwd", "etc/group", "etc/nsswitch.conf"];
    let build = |name: &str, user: &str| {
        let spec = write_spec(
            work.path(),
            &format!("{name}.toml"),
            &format!(
                r#"name = "{name}"
tag = "t1"
fromImage = "oci:{}:base"
user = "{user}"
cmd = ["/bin/cat", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf"]
"#,
                base_dir.display()
            ),
        );
        let file = work.path().join(format!("{name}.tar"));
        build_logged(&work.path().join("cache"), &spec, &file);
        let (image, _) = read_oci_archive(&file);
        let top = image.layers().len() - 1;
        (
            spec,
            // The top layer's changes at the account files (folders above them
            // are recorded too, for following links).
            image
                .layer_files(top, &wanted)
                .expect("top layer files")
                .into_iter()
                .filter(|(path, _)| wanted.contains(&path.as_str()))
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
    };

    // root exists in the base: gpubox writes no account file at all.
    let (_, as_root) = build("gpubox-e2e-accounts-root", "root");
    assert!(as_root.is_empty(), "{as_root:?}");

    // bob does not: the base's lines stay, bob is added with a free id.
    let (spec, as_bob) = build("gpubox-e2e-accounts-bob", "bob");
    let text = |path: &str| match &as_bob[path] {
        LayerFile::Text(text) => text.clone(),
        other => panic!("{path}: {other:?}"),
    };
    assert_eq!(
        text("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
         alice:x:1000:1000:Alice:/home/alice:/bin/sh\nbob:x:1001:1001:bob:/home/bob:/bin/sh\n"
    );
    assert_eq!(
        text("etc/group"),
        "root:x:0:\nnogroup:x:65534:\nalice:x:1000:\nbob:x:1001:\n"
    );
    assert!(!as_bob.contains_key("etc/nsswitch.conf"), "{as_bob:?}");

    if !have("podman") {
        return;
    }
    let (_, said) = build_and_run_in_podman(
        &work.path().join("cache"),
        &spec,
        "gpubox-e2e-accounts-bob:t1",
        &["--entrypoint", "/bin/sh"],
        &["-c", "cat /proc/self/status /etc/passwd /etc/nsswitch.conf"],
    );
    assert!(said.contains("alice:x:1000:1000:Alice"), "{said}");
    assert!(said.contains("Uid:\t1001"), "{said}");
    assert!(said.contains("# the base's own"), "{said}");
}

/// A spec named `name`, tagged `t1`, on the OCI layout `base` (its `base` tag), with
/// the lines of `body` after.
fn spec_on_base(work: &Path, name: &str, base: &Path, body: &str) -> PathBuf {
    write_spec(
        work,
        &format!("{name}.toml"),
        &format!(
            "name = \"{name}\"\ntag = \"t1\"\nfromImage = \"oci:{}:base\"\n{body}",
            base.display()
        ),
    )
}

/// A NixOS-style base: `/etc/passwd` and `/etc/group` are links to `/etc/static/...`,
/// and `/etc/static` is a link to a folder elsewhere in the image, which holds the
/// accounts. `etc_link`: `/etc` itself is a link to that folder instead.
fn build_base_with_linked_accounts(work: &Path, name: &str, etc_link: bool) -> PathBuf {
    let root = work.join(format!("{name}-root"));
    let store_etc = root.join("nix/store/0000000000000000000000000000000a-etc/etc");
    std::fs::create_dir_all(&store_etc).expect("store etc");
    std::fs::write(
        store_etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .expect("passwd");
    std::fs::write(store_etc.join("group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
    let link = |at: PathBuf, target: &str| {
        std::fs::create_dir_all(at.parent().expect("parent")).expect("folder");
        std::os::unix::fs::symlink(target, at).expect("symlink");
    };
    if etc_link {
        link(
            root.join("etc"),
            "/nix/store/0000000000000000000000000000000a-etc/etc",
        );
    } else {
        link(
            root.join("etc/static"),
            "../nix/store/0000000000000000000000000000000a-etc/etc",
        );
        link(root.join("etc/passwd"), "static/passwd");
        link(root.join("etc/group"), "/etc/static/group");
    }
    let spec = write_spec(
        work,
        &format!("{name}.toml"),
        &format!(
            r#"name = "{name}"
hostBinaries = ["/bin/sh", "/usr/bin/id"]
copyToRoot = [{{ src = "{name}-root", dst = "/" }}]
env = {{ PATH = "/usr/bin:/bin" }}
"#
        ),
    );
    build_base(work, &spec, name)
}

/// A base whose `/etc/passwd` is a link (NixOS-style) gets the spec's user: the links
/// are followed inside the base's layers, the build log says so, and the container
/// starts as that user. A base whose `/etc` is a link is refused, naming the link.
#[test]
fn linked_account_files_in_a_base_are_followed_and_a_linked_etc_is_refused() {
    let work = tempdir();
    let cache = work.path().join("cache");
    let derived = |name: &str, base: &Path| {
        spec_on_base(
            work.path(),
            name,
            base,
            "user = \"alice\"\ncmd = [\"/usr/bin/id\"]\n",
        )
    };

    let base = build_base_with_linked_accounts(work.path(), "gpubox-e2e-linked-base", false);
    let spec = derived("gpubox-e2e-linked-derived", &base);
    let file = work.path().join("linked.tar");
    let log = build_logged(&cache, &spec, &file);
    assert!(
        log.contains("the base's /etc/passwd is a link (/etc/passwd -> static/passwd, /etc/static -> ../nix/store/0000000000000000000000000000000a-etc/etc)"),
        "{log}"
    );
    let (image, _) = read_oci_archive(&file);
    let top = image.layers().len() - 1;
    let files = image
        .layer_files(top, &["etc/passwd", "etc/group"])
        .expect("top layer files");
    match &files["etc/passwd"] {
        LayerFile::Text(text) => assert_eq!(
            text,
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
             alice:x:1000:1000:alice:/home/alice:/bin/sh\n"
        ),
        other => panic!("{other:?}"),
    }

    let linked_etc = build_base_with_linked_accounts(work.path(), "gpubox-e2e-linked-etc", true);
    let refused = run_fails(
        gpubox(&cache)
            .arg("build")
            .arg(derived("gpubox-e2e-linked-etc-derived", &linked_etc))
            .args([
                "-o",
                &format!("oci-archive:{}", work.path().join("refused.tar").display()),
            ]),
    );
    // miette wraps long lines, even inside a path: compare without whitespace.
    let unwrapped: String = refused.split_whitespace().collect();
    assert!(
        unwrapped.contains(
            "thebase's/etcisasymboliclinkto/nix/store/0000000000000000000000000000000a-etc/etc"
        ),
        "{refused}"
    );
    assert!(!work.path().join("refused.tar").exists());

    if !have("podman") {
        return;
    }
    let (_, said) = build_and_run_in_podman(
        &cache,
        &spec,
        "gpubox-e2e-linked-derived:t1",
        &["--entrypoint", "/usr/bin/id"],
        &[],
    );
    assert!(said.contains("uid=1000(alice)"), "{said}");
}

/// A merged-/usr base (`/bin -> usr/bin`, as Debian, Ubuntu and Fedora ship theirs):
/// gpubox's files for `/bin` are written through the link to `/usr/bin`, and the link
/// stays, so the base's programs keep their `/bin` paths. A `/bin` folder in the top
/// layer would replace the link and hide them.
#[test]
fn a_merged_usr_base_keeps_its_bin_link() {
    let work = tempdir();
    let cache = work.path().join("cache");
    let root = work.path().join("merged-root");
    std::fs::create_dir_all(root.join("usr/bin")).expect("usr/bin");
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).expect("bin link");
    let base_spec = write_spec(
        work.path(),
        "merged-base.toml",
        r#"name = "gpubox-e2e-merged-base"
hostBinaries = ["/usr/bin/id"]
copyToRoot = [{ src = "merged-root", dst = "/" }]
"#,
    );
    let base = build_base(work.path(), &base_spec, "merged-base");
    let spec = spec_on_base(
        work.path(),
        "gpubox-e2e-merged-derived",
        &base,
        "cmd = [\"/bin/id\"]\n",
    );
    let file = work.path().join("merged.tar");
    let log = build_logged(&cache, &spec, &file);
    assert!(
        log.contains("the base's /bin is a link to /usr/bin: gpubox's files for /bin are written to /usr/bin"),
        "{log}"
    );
    let (image, _) = read_oci_archive(&file);
    // Ours: gpubox-init, then the generated files.
    let ours = image.layers().len() - 2..image.layers().len();
    let paths: Vec<String> = ours
        .flat_map(|index| gpubox_oci::tar::read_entries(image.open_layer(index).expect("layer")))
        .map(|entry| String::from_utf8_lossy(&entry.expect("entry").path).into_owned())
        .collect();
    assert!(
        !paths.iter().any(|p| p == "bin" || p.starts_with("bin/")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p == "usr/bin/gpubox-init"),
        "{paths:?}"
    );

    if !have("podman") {
        return;
    }
    let (_, said) =
        build_and_run_in_podman(&cache, &spec, "gpubox-e2e-merged-derived:t1", &[], &[]);
    assert!(said.contains("uid=0(root)"), "{said}");
}
