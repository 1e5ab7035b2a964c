//! Pushing to a real registry (`docker-registry`, started per test on a free
//! local port, over plain HTTP or TLS with htpasswd logins): the registry
//! serves gpubox's manifest byte for byte, a second push sends no blob, logins
//! come from --creds or credential helpers, blobs are mounted across
//! repositories, the spec's `registries` are the default destinations, and an
//! SBOM goes up as a referrer.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::common::*;
use super::registry::{have_registry_and_skopeo, registry_and_hello, Registry, RegistrySetup};

#[test]
fn builds_push_to_a_registry_and_pushing_again_sends_nothing() {
    if !have_registry_and_skopeo() {
        return;
    }
    let work = tempdir();
    let registry = Registry::start(&work.path().join("registry"));
    let cache = work.path().join("cache");
    let digest_file = work.path().join("digest");

    let pushed = run_ok(
        build_example_to(&cache, registry.image("hello:v1"))
            .arg("--tls-verify=false")
            .arg("--digestfile")
            .arg(&digest_file),
    );
    let digest = stdout(&pushed).trim().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(std::fs::read_to_string(&digest_file).unwrap(), digest);
    let inspected = registry.skopeo_inspect("hello:v1");
    assert_eq!(inspected["Digest"].as_str(), Some(digest.as_str()));

    // The registry's manifest is the one an `oci:` build of the same spec writes.
    let built = work.path().join("built");
    let local = run_ok(&mut build_example_to(&cache, hello_ref(&built)));
    assert_eq!(stdout(&local).trim(), digest);
    let copied = work.path().join("copied");
    registry.skopeo_copy_to_layout("hello:v1", &copied);
    assert_eq!(layout_manifest(&copied), layout_manifest(&built));

    // Every blob is there already: only the manifest goes up, unchanged.
    let again = run_ok(
        push_built(work.path(), &built, &registry.image("hello:v2")).arg("--tls-verify=false"),
    );
    assert_eq!(stdout(&again).trim(), digest);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("uploaded 0 blobs (0 B)"), "{said}");
    let retagged = registry.skopeo_inspect("hello:v2");
    assert_eq!(retagged["Digest"].as_str(), Some(digest.as_str()));
}

#[test]
fn pushing_to_a_registry_that_is_not_there_fails_and_names_it() {
    let work = tempdir();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let spec = example_spec();
    let stderr = run_fails(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(format!("docker://127.0.0.1:{port}/hello:v1"))
            .arg("--tls-verify=false")
            .arg("--creds")
            .arg("someone:hunter2"),
    );
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    // The same through --creds-stdin: the password never reaches the output.
    let mut child = gpubox(&work.path().join("cache"))
        .arg("build")
        .arg(&spec)
        .arg("-o")
        .arg(format!("docker://127.0.0.1:{port}/hello:v1"))
        .args(["--tls-verify=false", "--creds-stdin"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"someone:hunter2\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pw-4711";

/// A fresh folder WORK with a TLS registry in `WORK/registry` that has the
/// one user [`USER`], and the folder holding its CA (for `--cert-dir`).
/// `None` where the test is skipped ([`have_registry_and_skopeo`] is false).
fn secure_registry() -> Option<(TempDir, Registry, PathBuf)> {
    if !have_registry_and_skopeo() {
        return None;
    }
    let work = tempdir();
    let registry = Registry::start_with(
        &work.path().join("registry"),
        RegistrySetup {
            tls: true,
            users: vec![(USER.to_owned(), PASSWORD.to_owned())],
        },
    );
    let certs = registry.cert_dir.clone().expect("a TLS registry has a CA");
    Some((work, registry, certs))
}

/// `gpubox` that sees no login but the ones the test gives: its auth files
/// are a Docker config in `docker_config` (which may not exist).
fn isolated(work: &Path, docker_config: &Path) -> Command {
    let mut cmd = gpubox(&work.join("cache"));
    cmd.env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("GPUBOX_REGISTRY_CREDS")
        .env("DOCKER_CONFIG", docker_config);
    cmd
}

/// [`isolated`] `gpubox push` of the layout `built` to `dest`; add flags and
/// run it.
fn isolated_push(work: &Path, docker_config: &Path, built: &Path, dest: &str) -> Command {
    let mut cmd = isolated(work, docker_config);
    cmd.arg("push").arg(hello_ref(built)).arg(dest);
    cmd
}

#[test]
fn pushes_over_tls_with_a_login_and_says_what_is_wrong_with_bad_ones() {
    let Some((work, registry, certs)) = secure_registry() else {
        return;
    };
    let no_config = work.path().join("no-docker-config");
    let built = build_hello(work.path());
    let creds = format!("{USER}:{PASSWORD}");

    let pushed = run_ok(
        isolated(work.path(), &no_config)
            .arg("build")
            .arg(example_spec())
            .arg("-o")
            .arg(registry.image("secure:v1"))
            .arg("--cert-dir")
            .arg(&certs)
            .args(["--creds", &creds]),
    );
    let digest = stdout(&pushed).trim().to_owned();
    let inspected = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg("--cert-dir")
            .arg(&certs)
            .args(["--creds", &creds])
            .arg(registry.image("secure:v1")),
    );
    let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(inspected["Digest"].as_str(), Some(digest.as_str()));
    let copied = work.path().join("copied");
    run_ok(
        Command::new("skopeo")
            .arg("copy")
            .arg("--src-cert-dir")
            .arg(&certs)
            .args(["--src-creds", &creds])
            .arg(registry.image("secure:v1"))
            .arg(hello_ref(&copied)),
    );
    assert_eq!(layout_manifest(&copied), layout_manifest(&built));

    let address = registry.address();
    let push_v2 = || {
        isolated_push(
            work.path(),
            &no_config,
            &built,
            &registry.image("secure:v2"),
        )
    };
    let anonymous = run_fails(push_v2().arg("--cert-dir").arg(&certs));
    assert!(
        anonymous.contains(&format!("registry {address} requires a login"))
            && anonymous.contains("--creds"),
        "{anonymous}"
    );

    let wrong = "wrong-pw-0815";
    let refused = run_fails(
        push_v2()
            .arg("--cert-dir")
            .arg(&certs)
            .args(["--creds", &format!("{USER}:{wrong}")]),
    );
    assert!(
        refused.contains(&format!("registry {address} refused the login for {USER}")),
        "{refused}"
    );
    assert!(!refused.contains(wrong), "{refused}");

    let untrusted = run_fails(push_v2().args(["--creds", &creds]));
    assert!(
        untrusted.contains("not trusted") && untrusted.contains("--cert-dir"),
        "{untrusted}"
    );
    assert!(!untrusted.contains(PASSWORD), "{untrusted}");
}

/// Writes `bin/docker-credential-NAME`, a stand-in helper that appends
/// `ACTION SERVER` to `asked` and runs `answer` for `get`.
fn fake_helper(bin: &Path, name: &str, asked: &Path, answer: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(bin).unwrap();
    let path = bin.join(format!("docker-credential-{name}"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$1 $(cat)\" >> '{}'\ncase \"$1\" in get) {answer} ;; *) exit 1 ;; esac\n",
            asked.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn logins_come_from_docker_credential_helpers() {
    let Some((work, registry, certs)) = secure_registry() else {
        return;
    };
    let built = build_hello(work.path());
    let address = registry.address();
    let bin = work.path().join("bin");
    let asked = work.path().join("asked");
    fake_helper(
        &bin,
        "gpuboxtest",
        &asked,
        &format!(r#"printf '{{"ServerURL":"%s","Username":"{USER}","Secret":"{PASSWORD}"}}' x"#),
    );
    fake_helper(
        &bin,
        "gpuboxlocked",
        &asked,
        "echo 'the keychain is locked' >&2; exit 1",
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let docker_config = work.path().join("docker");
    std::fs::create_dir(&docker_config).unwrap();
    // credHelpers wins over the file's credsStore.
    std::fs::write(
        docker_config.join("config.json"),
        format!(r#"{{"credsStore":"gpuboxlocked","credHelpers":{{"{address}":"gpuboxtest"}}}}"#),
    )
    .unwrap();
    let push_helped = |tag: &str| {
        let mut cmd = isolated_push(work.path(), &docker_config, &built, &registry.image(tag));
        cmd.env("PATH", &path).arg("--cert-dir").arg(&certs);
        cmd
    };
    let pushed = run_ok(&mut push_helped("helped:v1"));
    assert!(stdout(&pushed).trim().starts_with("sha256:"));
    assert_eq!(
        std::fs::read_to_string(&asked).unwrap(),
        format!("get {address}\n")
    );

    // A store that cannot answer is named, with what to do.
    std::fs::write(
        docker_config.join("config.json"),
        r#"{"credsStore":"gpuboxlocked"}"#,
    )
    .unwrap();
    let failed = run_fails(&mut push_helped("helped:v2"));
    assert!(
        failed.contains("docker-credential-gpuboxlocked")
            && failed.contains("the keychain is locked")
            && failed.contains("docker login"),
        "{failed}"
    );
}

#[test]
fn a_second_repository_mounts_the_blobs_the_first_received() {
    let Some((work, registry, built)) = registry_and_hello() else {
        return;
    };
    let manifest: serde_json::Value = serde_json::from_slice(&layout_manifest(&built)).unwrap();
    let blobs = 1 + manifest["layers"].as_array().unwrap().len();

    run_ok(push_built(work.path(), &built, &registry.image("a:v1")).arg("--tls-verify=false"));
    let second =
        run_ok(push_built(work.path(), &built, &registry.image("b:v1")).arg("--tls-verify=false"));
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        said.contains(&format!("uploaded 0 blobs (0 B), mounted {blobs},")),
        "{said}"
    );
    assert_eq!(said.matches("from repository a").count(), blobs, "{said}");

    let copied = work.path().join("copied");
    registry.skopeo_copy_to_layout("b:v1", &copied);
    assert_eq!(layout_manifest(&copied), layout_manifest(&built));
}

#[test]
fn without_a_destination_the_spec_registries_are_pushed_to() {
    let Some((work, registry, built)) = registry_and_hello() else {
        return;
    };
    let spec = work.path().join("gpubox.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"hello\"\ntag = \"v3\"\nregistries = [\"{}\", \"{}\"]\n",
            registry.image("one:v1"),
            registry.image("two")
        ),
    )
    .unwrap();
    let pushed = run_ok(
        gpubox(&work.path().join("cache"))
            .arg("push")
            .arg(hello_ref(&built))
            .arg("--spec")
            .arg(&spec)
            .arg("--tls-verify=false"),
    );
    let digest = stdout(&pushed).trim().to_owned();
    for image in ["one:v1", "two:v3"] {
        let inspected = registry.skopeo_inspect(image);
        assert_eq!(
            inspected["Digest"].as_str(),
            Some(digest.as_str()),
            "{image}"
        );
    }

    std::fs::write(&spec, "name = \"hello\"\n").unwrap();
    let none = run_fails(
        gpubox(&work.path().join("cache"))
            .arg("push")
            .arg(hello_ref(&built))
            .arg("--spec")
            .arg(&spec),
    );
    assert!(
        none.contains("no destination was given") && none.contains("registries"),
        "{none}"
    );
    // The default spec, gpubox.toml in the current folder, is missing here.
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = run_fails(
        gpubox(&work.path().join("cache"))
            .current_dir(&empty)
            .arg("push")
            .arg(hello_ref(&built)),
    );
    assert!(missing.contains("gpubox.toml"), "{missing}");
}

/// The referrers of `digest` in `repo`: the referrers API's answer when the
/// registry has one, else the index at the fallback tag `sha256-HEX`.
fn referrers(registry: &Registry, repo: &str, digest: &str) -> serde_json::Value {
    if let Some((200, body)) = registry.get(&format!("/v2/{repo}/referrers/{digest}")) {
        return serde_json::from_slice(&body).unwrap();
    }
    let tag = digest.replace(':', "-");
    let raw = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(registry.image(&format!("{repo}:{tag}"))),
    );
    serde_json::from_slice(&raw.stdout).unwrap()
}

/// The SBOM bytes held by the artifact `entry` of a referrers index.
fn referred_sbom(registry: &Registry, repo: &str, entry: &serde_json::Value) -> Vec<u8> {
    assert_eq!(entry["artifactType"], "application/spdx+json", "{entry}");
    let raw = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(registry.image(&format!("{repo}@{}", entry["digest"].as_str().unwrap()))),
    );
    let artifact: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        artifact["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    let layer = &artifact["layers"][0];
    assert_eq!(layer["mediaType"], "application/spdx+json");
    let (status, body) = registry
        .get(&format!(
            "/v2/{repo}/blobs/{}",
            layer["digest"].as_str().unwrap()
        ))
        .unwrap();
    assert_eq!(status, 200);
    body
}

#[test]
fn sboms_go_up_as_referrers_of_the_image() {
    let Some((work, registry, built)) = registry_and_hello() else {
        return;
    };
    let sbom = work.path().join("sbom.spdx.json");
    let pushed = run_ok(
        build_example_to(&work.path().join("cache"), registry.image("sbom:v1"))
            .arg("--sbom")
            .arg(&sbom)
            .arg("--tls-verify=false"),
    );
    let digest = stdout(&pushed).trim().to_owned();
    let index = referrers(&registry, "sbom", &digest);
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{index}");
    assert_eq!(
        referred_sbom(&registry, "sbom", &entries[0]),
        std::fs::read(&sbom).unwrap()
    );

    // A second SBOM the user gives joins the first in the index.
    let other = work.path().join("other.spdx.json");
    std::fs::write(
        &other,
        br#"{"spdxVersion":"SPDX-2.3","name":"given by hand"}"#,
    )
    .unwrap();
    let again = run_ok(
        push_built(work.path(), &built, &registry.image("sbom:v1"))
            .arg("--sbom")
            .arg(&other)
            .arg("--tls-verify=false"),
    );
    assert_eq!(stdout(&again).trim(), digest);
    let index = referrers(&registry, "sbom", &digest);
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    let sboms: Vec<Vec<u8>> = entries
        .iter()
        .map(|entry| referred_sbom(&registry, "sbom", entry))
        .collect();
    assert!(sboms.contains(&std::fs::read(&sbom).unwrap()));
    assert!(sboms.contains(&std::fs::read(&other).unwrap()));
}

/// A spec of the Nix fixture `hello` (a program that prints `GREETING` and a
/// file it references by store path) compressed with `compression`, named
/// `name:t1`, in `dir`.
fn program_spec(dir: &Path, name: &str, compression: &str) -> PathBuf {
    write_spec(
        dir,
        "gpubox.toml",
        &format!(
            "name = \"{name}\"\ntag = \"t1\"\ncompression = \"{compression}\"\n\
             systemPackages = [{}]\nextraEnv = {{ GREETING = \"pushed as built\" }}\n\
             cmd = [\"hello\", \"first arg\"]\n",
            toml_str(nix_fixture("hello"))
        ),
    )
}

/// The manifest `skopeo inspect --raw` reads from the registry: its bytes, parsed.
fn raw_manifest(registry: &Registry, name: &str) -> (Vec<u8>, serde_json::Value) {
    let raw = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(registry.image(name)),
    )
    .stdout;
    let parsed = serde_json::from_slice(&raw).expect("a JSON manifest");
    (raw, parsed)
}

/// The layers' media types of a manifest.
fn layer_media_types(manifest: &serde_json::Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["mediaType"].as_str().expect("a media type").to_owned())
        .collect()
}

/// Builds the program spec into `ENGINE:NAME:t1` (`transport` is `podman` or
/// `docker-daemon`) with `compression` and pushes the engine's image; the
/// registry gets the build's manifest (same digest as the build's
/// `--digestfile` and as an `oci:` build's manifest, byte for byte) with the
/// build's compressed layers. Pushed again with another (empty) layer cache,
/// the engine's export goes up under a new manifest, and gpubox says why.
/// Returns the folder, the registry and the cache for more checks.
fn engine_image_pushes_as_built(
    transport: &str,
    engine: &str,
    name: &str,
    compression: &str,
) -> (TempDir, Registry, PathBuf) {
    let work = tempdir();
    let registry = Registry::start(&work.path().join("registry"));
    let cache = work.path().join("cache");
    let spec = program_spec(work.path(), name, compression);
    let built_digest = work.path().join("built.digest");
    run_ok(
        gpubox(&cache)
            .arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(format!("{transport}:{name}:t1"))
            .arg("--digestfile")
            .arg(&built_digest),
    );
    let pushed_digest = work.path().join("pushed.digest");
    let pushed = run_ok(
        gpubox(&cache)
            .arg("push")
            .arg(format!("{transport}:{name}:t1"))
            .arg(registry.image("x:y"))
            .arg("--tls-verify=false")
            .arg("--digestfile")
            .arg(&pushed_digest),
    );
    let said = String::from_utf8_lossy(&pushed.stderr);
    let built_digest = std::fs::read_to_string(&built_digest).unwrap();
    assert_eq!(
        std::fs::read_to_string(&pushed_digest).unwrap(),
        built_digest,
        "{said}"
    );
    assert!(
        said.contains(&format!("{transport}:{name}:t1 is the image gpubox built")),
        "{said}"
    );
    // The manifest an `oci:` build writes, byte for byte, with the build's layers.
    let layout = work.path().join("layout");
    run_ok(
        gpubox(&cache)
            .arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(format!("oci:{}:t1", layout.display())),
    );
    let (raw, manifest) = raw_manifest(&registry, "x:y");
    assert_eq!(raw, layout_manifest(&layout));
    let types = layer_media_types(&manifest);
    assert!(types.len() >= 2, "{manifest}");
    let wanted = format!("application/vnd.oci.image.layer.v1.tar+{compression}");
    assert!(types.iter().all(|t| *t == wanted), "{manifest}");

    // Without the build's cache: the engine's export goes up, still runnable,
    // and gpubox says why the digest differs.
    let fallback = run_ok(
        gpubox(&work.path().join("other-cache"))
            .arg("push")
            .arg(format!("{transport}:{name}:t1"))
            .arg(registry.image("x:fallback"))
            .arg("--tls-verify=false"),
    );
    let said = unwrapped(&String::from_utf8_lossy(&fallback.stderr));
    assert!(
        said.contains(&format!(
            "the layer cache has no record of building {transport}:{name}:t1"
        )) && said.contains(&format!("as {engine} exported them (uncompressed)"))
            && said.contains("whose digest differs from the build's"),
        "{said}"
    );
    assert_ne!(stdout(&fallback).trim(), built_digest);
    let (_, manifest) = raw_manifest(&registry, "x:fallback");
    assert!(
        layer_media_types(&manifest)
            .iter()
            .all(|t| t == "application/vnd.oci.image.layer.v1.tar"),
        "{manifest}"
    );
    (work, registry, cache)
}

/// Runs `image` in podman (pulled from the plain-HTTP `registry` when it is
/// one of its images) and checks the program's output.
fn runs_in_podman(image: &str) {
    let out = run_ok(Command::new("podman").args([
        "run",
        "--rm",
        "--tls-verify=false",
        "--network",
        "none",
        image,
    ]));
    let out = stdout(&out);
    assert!(
        out.contains("GREETING=pushed as built") && out.contains("file: hello from the nix store"),
        "{image}:\n{out}"
    );
}

fn remove_images(engine: &str, images: &[&str]) {
    // Best effort: a leftover image only takes space.
    let _ = Command::new(engine)
        .args(["rmi", "-f"])
        .args(images)
        .output();
}

#[test]
fn a_podman_image_gpubox_built_goes_up_as_built() {
    if !have("nix") || !have("podman") || !have_registry_and_skopeo() {
        return;
    }
    let name = "gpubox-e2e-push-podman";
    let (work, registry, cache) = engine_image_pushes_as_built("podman", "podman", name, "zstd");
    let fallback = format!("{}/x:fallback", registry.address());
    runs_in_podman(&fallback);

    // podman's image made from it (a label added: a new config, the same
    // layers) goes up with the build's compressed layers under a new manifest.
    let containerfile = work.path().join("Containerfile");
    std::fs::write(
        &containerfile,
        format!("FROM localhost/{name}:t1\nLABEL org.example.changed=yes\n"),
    )
    .unwrap();
    let derived = format!("{name}-derived:t1");
    run_ok(
        Command::new("podman")
            .args(["build", "-q", "--network", "none", "-t", &derived, "-f"])
            .arg(&containerfile)
            .arg(work.path()),
    );
    let pushed = run_ok(
        gpubox(&cache)
            .arg("push")
            .arg(format!("podman:{derived}"))
            .arg(registry.image("x:derived"))
            .arg("--tls-verify=false"),
    );
    let said = unwrapped(&String::from_utf8_lossy(&pushed.stderr));
    assert!(
        said.contains(&format!(
            "podman:{derived} is not the image gpubox built for podman:{name}:t1"
        )) && said.contains("as built, from the layer cache (zstd)")
            && said.contains("whose digest differs from the build's"),
        "{said}"
    );
    let (_, built) = raw_manifest(&registry, "x:y");
    let (_, manifest) = raw_manifest(&registry, "x:derived");
    assert_ne!(manifest["config"], built["config"]);
    assert_eq!(manifest["layers"], built["layers"]);

    // `--cache-dir` names the cache the image was built with, over the default.
    let pushed = run_ok(
        gpubox(&work.path().join("another-cache"))
            .arg("push")
            .arg("--cache-dir")
            .arg(&cache)
            .arg(format!("podman:{name}:t1"))
            .arg(registry.image("x:from-flag"))
            .arg("--tls-verify=false"),
    );
    let said = unwrapped(&String::from_utf8_lossy(&pushed.stderr));
    assert!(said.contains("is the image gpubox built"), "{said}");
    assert_eq!(raw_manifest(&registry, "x:from-flag").1, built);
    let pulled = format!("{}/x:derived", registry.address());
    runs_in_podman(&pulled);
    remove_images(
        "podman",
        &[&format!("{name}:t1"), &derived, &fallback, &pulled],
    );
}

#[test]
fn a_docker_image_gpubox_built_goes_up_as_built() {
    if !have("nix") || !have("docker") || !have_registry_and_skopeo() {
        return;
    }
    let name = "gpubox-e2e-push-docker";
    let _kept = engine_image_pushes_as_built("docker-daemon", "docker", name, "gzip");
    remove_images("docker", &[&format!("{name}:t1")]);
}

#[test]
fn a_plain_http_registry_reached_over_https_is_named_with_the_fix() {
    let Some((work, registry, built)) = registry_and_hello() else {
        return;
    };
    let address = registry.address();
    let wanted = format!(
        "the registry at {address} answers plain HTTP, not HTTPS; if that is expected \
         (a local registry), pass --tls-verify=false"
    );
    let check = |what: &str, said: String| {
        // The renderer wraps the message and marks its continued lines.
        let said = unwrapped(&said.replace(['│', '╰', '▶', '─'], " "));
        assert!(said.contains(&wanted), "{what}: {said}");
        assert!(!said.contains("InvalidContentType"), "{what}: {said}");
    };
    check(
        "push",
        run_fails(&mut push_built(
            work.path(),
            &built,
            &registry.image("plain:v1"),
        )),
    );
    check(
        "build -o docker://",
        run_fails(&mut build_example_to(
            &work.path().join("cache"),
            registry.image("plain:v1"),
        )),
    );
    // Reading from it: inspect, and a base image, once the image is there.
    run_ok(push_built(work.path(), &built, &registry.image("plain:v1")).arg("--tls-verify=false"));
    check(
        "inspect",
        run_fails(
            gpubox(&work.path().join("cache"))
                .arg("inspect")
                .arg(registry.image("plain:v1")),
        ),
    );
    let spec = write_spec(
        work.path(),
        "derived.toml",
        &format!(
            "name = \"derived\"\nfromImage = \"{}\"\ncuda.enable = false\n",
            registry.image("plain:v1")
        ),
    );
    check(
        "fromImage",
        run_fails(
            gpubox(&work.path().join("cache"))
                .arg("build")
                .arg(&spec)
                .arg("-o")
                .arg(format!("oci:{}", work.path().join("derived").display())),
        ),
    );
}
