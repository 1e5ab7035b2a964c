//! User flakes built by the real `nix`: one written as nix2gpu's README writes
//! one (flake-parts, `flakeModules.nix2gpu`), the same image through
//! `gpubox.lib.mkImage` and through plain `nix-build`, and the template; their
//! `nix run .#IMAGE.COMMAND`s against podman, a registry and skopeo.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use super::super::common::{
    gpubox, have, nix_closure, nix_fixture, run_fails, run_ok, stdout, toml_str, write_spec,
};
use super::super::registry::{have_registry_and_skopeo, Registry, RegistrySetup};
use super::{digest_printed, FrontEnd, DEMO};

/// The store paths in an image's layers, from `gpubox inspect --json`.
fn image_store_paths(cache: &Path, image: &str) -> BTreeSet<String> {
    let out = run_ok(gpubox(cache).args(["inspect", "--json", image]));
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    inspected["layers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|layer| layer["storePaths"].as_array().unwrap().iter())
        .map(|path| path.as_str().unwrap().to_owned())
        .collect()
}

/// tests/flakes/demo.nix as a gpubox.toml, written by hand.
fn demo_toml(dir: &Path) -> std::path::PathBuf {
    let (busybox, hello) = (nix_fixture("busybox"), nix_fixture("hello"));
    write_spec(
        dir,
        "gpubox.toml",
        &format!(
            r#"name = "{DEMO}"
systemPackages = [{}, {}]
extraEnv = {{ GREETING = "hello from a nix2gpu flake" }}
labels = {{ "org.example.team" = "ml" }}
exposedPorts = ["8080/tcp"]
user = "dev"
extraStartupScript = "export MODE=prod"
cmd = ["/bin/sh", "-c", "sleep 2; hello; echo main runs as $(id -u)"]

[services.ticker]
argv = ["/bin/sh", "-c", "echo ticker says $MODE; exec sleep 1000"]

[services.second]
argv = ["/bin/sh", "-c", "echo second starts; exec sleep 1000"]
after = ["ticker"]
"#,
            toml_str(busybox),
            toml_str(hello)
        ),
    )
}

#[test]
fn a_nix2gpu_flake_writes_one_spec_file_and_copies_the_image_gpubox_build_makes() {
    let Some(front) = FrontEnd::new() else {
        return;
    };
    let work = front.work.path();
    let project = front.project("nix2gpu-user", "user", "127.0.0.1:5000");

    // `nix build` writes one small file: the spec, as JSON.
    let spec = front.build(&project, "demo");
    let meta = fs::symlink_metadata(&spec).unwrap();
    assert!(meta.is_file(), "{} is not one file", spec.display());
    assert!(meta.len() < 16 * 1024, "the spec is {} bytes", meta.len());
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&spec).unwrap()).unwrap();
    assert_eq!(json["name"], DEMO);
    assert_eq!(
        json["registries"],
        serde_json::json!([format!("docker://127.0.0.1:5000/team/{DEMO}:latest")])
    );

    // `copyTo` gives the image `gpubox build` makes of the same gpubox.toml.
    let from_nix = format!("oci:{}", work.join("from-nix").display());
    let copied = run_ok(&mut front.run(&project, "demo.copyTo", &[&from_nix]));
    let from_toml = format!("oci:{}", work.join("from-toml").display());
    let built = run_ok(
        gpubox(&front.cache)
            .arg("build")
            .arg(demo_toml(work))
            .args(["-o", &from_toml]),
    );
    assert_eq!(digest_printed(&copied), digest_printed(&built));

    // The spec's references are exactly the image's store paths.
    let spec_path = spec.display().to_string();
    let referenced: BTreeSet<String> = nix_closure(&spec_path)
        .into_iter()
        .filter(|path| *path != spec_path)
        .collect();
    assert_eq!(referenced, image_store_paths(&front.cache, &from_nix));
    assert!(referenced
        .iter()
        .any(|path| path.ends_with("-busybox-1.36")));

    // The same image through mkImage without flake-parts, and through
    // nix-build without flakes: the very same spec file.
    let mkimage = front.project("mkimage", "mkimage", "127.0.0.1:5000");
    assert_eq!(front.build(&mkimage, "demo"), spec);
    let plain = front.project("no-flake", "plain", "127.0.0.1:5000");
    let plain_args = |cmd: &mut Command| {
        cmd.args(["--no-out-link", "default.nix", "--arg", "lib"])
            .arg(front.inputs.join("nixpkgs-lib/lib"))
            .arg("--arg")
            .arg("gpuboxSource")
            .arg(&front.gpubox_flake);
    };
    let mut nix_build = front.command("nix-build", &plain);
    plain_args(&mut nix_build);
    assert_eq!(stdout(&run_ok(&mut nix_build)).trim(), spec_path);
    let mut copy_to = front.command("nix-build", &plain);
    plain_args(&mut copy_to);
    let command = stdout(&run_ok(copy_to.args(["-A", "copyTo"])));
    let from_plain = format!("oci:{}", work.join("from-plain").display());
    let plain_copied = run_ok(
        Command::new(Path::new(command.trim()).join(format!("bin/{DEMO}-copyTo")))
            .env("GPUBOX_CACHE_DIR", &front.cache)
            .arg(&from_plain),
    );
    assert_eq!(digest_printed(&plain_copied), digest_printed(&built));

    // `inspect` shows the image the spec describes.
    let inspected = run_ok(&mut front.run(&project, "demo.inspect", &["--json"]));
    let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(
        inspected["manifestDigest"].as_str(),
        Some(digest_printed(&built).as_str())
    );
    // It built into the cache's tmp folder and left nothing there.
    let left: Vec<_> = fs::read_dir(front.cache.join("tmp")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");

    // Without a destination, copyTo says how to give one.
    let said = run_fails(&mut front.run(&project, "demo.copyTo", &[]));
    assert!(
        said.contains("copyTo needs the destination as its first argument"),
        "{said}"
    );
}

/// Removes a podman image however the test ends.
struct PodmanImage(&'static str);

impl Drop for PodmanImage {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rmi", "-f", self.0]).output();
    }
}

const DEMO_IMAGE: &str = "gpubox-e2e-nix-demo:latest";

#[test]
fn copy_to_podman_runs_the_env_services_and_user_asked_for() {
    if !have("podman") {
        return;
    }
    let Some(front) = FrontEnd::new() else {
        return;
    };
    let project = front.project("nix2gpu-user", "user", "127.0.0.1:5000");
    let _image = PodmanImage(DEMO_IMAGE);
    let loaded = run_ok(&mut front.run(&project, "demo.copyToPodman", &[]));
    assert!(
        String::from_utf8_lossy(&loaded.stderr)
            .contains(&format!("loading into podman as {DEMO_IMAGE}")),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );

    let ran = Command::new("podman")
        .args(["run", "--rm", "--network", "none", DEMO_IMAGE])
        .output()
        .unwrap();
    let said = format!("{}{}", stdout(&ran), String::from_utf8_lossy(&ran.stderr));
    assert!(ran.status.success(), "{said}");
    for expected in [
        "[ticker] ticker says prod",
        "[second] second starts",
        "GREETING=hello from a nix2gpu flake",
        "file: hello from the nix store",
        "main runs as 1000",
    ] {
        assert!(said.contains(expected), "{expected}: {said}");
    }
    let config = run_ok(Command::new("podman").args([
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        DEMO_IMAGE,
    ]));
    let config: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
    assert_eq!(config["Labels"]["org.example.team"], "ml");
    assert!(config["ExposedPorts"].get("8080/tcp").is_some(), "{config}");

    // copyToContainerRuntime takes podman when it answers.
    let loaded = run_ok(&mut front.run(&project, "demo.copyToContainerRuntime", &[]));
    assert!(String::from_utf8_lossy(&loaded.stderr).contains("loading into podman"));

    // podmanShell loads the image and starts it through `gpubox run` with the
    // GPU flags it picks (CDI on this fake NVIDIA host) and the folder at
    // /workspace; --dry-run prints the engine command instead.
    let host = front.work.path().join("host");
    gpubox_cdi::fake_host::build_fake_host(&host, "550.54.14", 1).expect("fake host (needs root)");
    let cdi_root = front.work.path().join("cdi-root");
    fs::create_dir_all(cdi_root.join("etc/cdi")).unwrap();
    run_ok(
        gpubox(&front.cache)
            .args(["cdi", "generate", "--driver-root"])
            .arg(&host)
            .arg("--dev-root")
            .arg(&host)
            .arg("--output")
            .arg(cdi_root.join("etc/cdi/nvidia.yaml")),
    );
    let (host, cdi_root) = (host.display().to_string(), cdi_root.display().to_string());
    let shell = run_ok(&mut front.run(
        &project,
        "demo.podmanShell",
        &[
            "--dry-run",
            "--network",
            "none",
            "--driver-root",
            &host,
            "--dev-root",
            &host,
            "--cdi-root",
            &cdi_root,
            "--",
            "/bin/sh",
            "-c",
            "true",
        ],
    ));
    assert_eq!(
        stdout(&shell).trim(),
        format!(
            "podman run --rm --device nvidia.com/gpu=all --network none --volume {}:/workspace --workdir /workspace {DEMO_IMAGE} /bin/sh -c true",
            project.display()
        )
    );
}

#[test]
fn copy_to_registry_pushes_once_and_diff_compares_with_what_is_there() {
    if !have_registry_and_skopeo() {
        return;
    }
    let Some(front) = FrontEnd::new() else {
        return;
    };
    let registry = Registry::start(&front.work.path().join("registry"));
    let project = front.project("nix2gpu-user", "user", &registry.address());

    let push = || front.run(&project, "demo.copyToRegistry", &["--tls-verify=false"]);
    let first = run_ok(&mut push());
    let digest = digest_printed(&first);
    let inspected = registry.skopeo_inspect(&format!("team/{DEMO}:latest"));
    assert_eq!(inspected["Digest"].as_str(), Some(digest.as_str()));
    let again = run_ok(&mut push());
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("uploaded 0 blobs (0 B)"), "{said}");
    assert_eq!(digest_printed(&again), digest);

    // `deploy` writes a deployment of the image the first `registries` entry holds,
    // pinned to the digest just pushed.
    let deployed = run_ok(&mut front.run(&project, "demo.deploy", &["vast", "--tls-verify=false"]));
    let template: serde_json::Value = serde_json::from_slice(&deployed.stdout).unwrap();
    assert_eq!(template["runtype"], "args");
    assert_eq!(
        template["image"].as_str(),
        Some(format!("{}/team/{DEMO}@{digest}", registry.address()).as_str())
    );

    // `diff` compares the image the flake describes with the one pushed.
    let diff = || front.run(&project, "demo.diff", &["--tls-verify=false"]);
    let same = stdout(&run_ok(&mut diff()));
    assert!(
        same.contains("only in B: 0 layers (0 B); only in A: 0 layers (0 B)"),
        "{same}"
    );
    let demo = project.join("demo.nix");
    let changed = fs::read_to_string(&demo)
        .unwrap()
        .replace("hello from a nix2gpu flake", "hello again");
    fs::write(&demo, changed).unwrap();
    // Only the environment changed: every layer is shared, the config differs.
    let changed = stdout(&run_ok(&mut diff()));
    assert!(changed.contains("only in B: 0 layers (0 B)"), "{changed}");
    assert!(
        changed.contains("~ Env.GREETING: hello from a nix2gpu flake → hello again"),
        "{changed}"
    );
}

#[test]
fn copy_to_github_pushes_to_every_registry_with_the_token() {
    if !have_registry_and_skopeo() {
        return;
    }
    let Some(front) = FrontEnd::new() else {
        return;
    };
    const TOKEN: &str = "ghp_test_token_4711";
    let registry = Registry::start_with(
        &front.work.path().join("registry"),
        RegistrySetup {
            tls: true,
            users: vec![("octocat".to_owned(), TOKEN.to_owned())],
        },
    );
    let certs = registry.cert_dir.clone().expect("a TLS registry has a CA");
    let project = front.project("nix2gpu-user", "user", &registry.address());
    let github = |token: Option<&str>| {
        let mut cmd = front.run(
            &project,
            "demo.copyToGithub",
            &["--cert-dir", &certs.display().to_string()],
        );
        cmd.env("GITHUB_ACTOR", "octocat")
            .env("DOCKER_CONFIG", front.work.path().join("no-docker-config"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("GPUBOX_REGISTRY_CREDS")
            // No GitHub CLI to fall back on.
            .env("PATH", "/usr/bin:/bin");
        match token {
            Some(token) => cmd.env("GITHUB_TOKEN", token),
            None => cmd.env_remove("GITHUB_TOKEN"),
        };
        cmd
    };
    let pushed = run_ok(&mut github(Some(TOKEN)));
    let said = format!(
        "{}{}",
        stdout(&pushed),
        String::from_utf8_lossy(&pushed.stderr)
    );
    assert!(!said.contains(TOKEN), "the token was printed: {said}");
    assert!(said.contains("--creds octocat:***"), "{said}");
    let inspected = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg("--cert-dir")
            .arg(&certs)
            .args(["--creds", &format!("octocat:{TOKEN}")])
            .arg(registry.image(&format!("team/{DEMO}:latest"))),
    );
    let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(
        inspected["Digest"].as_str(),
        Some(digest_printed(&pushed).as_str())
    );

    let refused = run_fails(&mut github(None));
    assert!(
        refused.contains("copyToGithub: no GitHub token") && refused.contains("GITHUB_TOKEN"),
        "{refused}"
    );
}

#[test]
fn the_template_builds_with_its_inputs_overridden() {
    let Some(front) = FrontEnd::new() else {
        return;
    };
    let project = front.work.path().join("from-template");
    fs::create_dir_all(&project).unwrap();
    // `nix flake init` takes no --override-input: lock gpubox's own inputs to
    // the local copies first, so it reads the template without fetching.
    run_ok(
        front
            .command("nix", &front.gpubox_flake)
            .args(["flake", "lock"])
            .args(&front.overrides()[..6]),
    );
    run_ok(
        front
            .command("nix", &project)
            .args(["flake", "init", "-t"])
            .arg(format!("path:{}", front.gpubox_flake.display())),
    );
    assert!(project.join("flake.nix").is_file());
    // No nixpkgs here: a stand-in with the packages the template names, whose
    // rustPlatform hands back the prebuilt gpubox (see its flake.nix).
    let nixpkgs = front.project("stub-nixpkgs", "nixpkgs", "");
    let overrides = [
        ("nixpkgs", nixpkgs.clone()),
        ("flake-parts", front.inputs.join("flake-parts")),
        ("gpubox", front.gpubox_flake.clone()),
    ]
    .map(|(name, path)| {
        [
            "--override-input".to_owned(),
            name.to_owned(),
            format!("path:{}", path.display()),
        ]
    })
    .concat();
    let spec = run_ok(
        front
            .command("nix", &project)
            .args(["build", "--no-link", "--json"])
            .args(&overrides)
            .arg(".#hello"),
    );
    let spec: serde_json::Value = serde_json::from_slice(&spec.stdout).unwrap();
    let spec = spec[0]["outputs"]["out"].as_str().unwrap().to_owned();
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&spec).unwrap()).unwrap();
    assert_eq!(json["name"], "hello");
    assert_eq!(json["cmd"], serde_json::json!(["hello"]));

    let image = format!(
        "oci-archive:{}",
        front.work.path().join("hello.tar").display()
    );
    run_ok(
        front
            .command("nix", &project)
            .arg("run")
            .args(&overrides)
            .args([".#hello.copyTo", "--", &image]),
    );
    let out = run_ok(gpubox(&front.cache).args(["inspect", "--json", &image]));
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let env = inspected["config"]["Env"].to_string();
    assert!(env.contains("GREETING=hello from a gpubox image"), "{env}");
}
