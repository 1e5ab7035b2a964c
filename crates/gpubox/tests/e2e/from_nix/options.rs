//! The option modules, evaluated by the real `nix-instantiate` with the pinned
//! nixpkgs lib: nix2gpu's option names and defaults, merging across modules,
//! the spec they give, and evaluation errors that name the option.

use std::process::Command;

use serde_json::{json, Value};

use super::super::common::{have, nix_conf_dir, repo_root, stdout};
use super::nix_inputs;

/// Evaluates `body` with `lib`, `gpubox` (nix/lib.nix), `image MODULES` (the
/// evaluated modules) and `spec MODULES` (the spec they give) in scope, and
/// `derivation`s from `mk NAME`; returns the JSON, or Nix's stderr.
fn eval(body: &str) -> Option<Result<(Value, String), String>> {
    if !have("nix") {
        return None;
    }
    let inputs = nix_inputs()?;
    let expression = format!(
        r#"let
  lib = import {lib};
  gpubox = import {nix}/lib.nix {{ inherit lib; }};
  image = modules: gpubox.evalImage {{ name = "demo"; inherit modules; prefix = [ "demo" ]; }};
  spec = modules: (gpubox.specOf {{ inherit (image modules) config options; }}).spec;
  mk = name: derivation {{ inherit name; system = "x86_64-linux"; builder = "/bin/sh"; }};
in {body}"#,
        lib = inputs.join("nixpkgs-lib/lib").display(),
        nix = repo_root().join("nix").display(),
    );
    let out = Command::new("nix-instantiate")
        .env("NIX_CONF_DIR", nix_conf_dir())
        .args(["--eval", "--strict", "--json", "--expr", &expression])
        .output()
        .expect("nix-instantiate");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Some(if out.status.success() {
        Ok((serde_json::from_str(&stdout(&out)).expect("JSON"), stderr))
    } else {
        Err(stderr)
    })
}

fn eval_ok(body: &str) -> Option<(Value, String)> {
    eval(body).map(|result| result.unwrap_or_else(|stderr| panic!("{body}:\n{stderr}")))
}

fn eval_fails(body: &str) -> Option<String> {
    eval(body).map(|result| match result {
        Ok((value, _)) => panic!("{body} evaluated to {value}"),
        Err(stderr) => stderr,
    })
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[test]
fn every_nix2gpu_option_exists_with_its_default() {
    // nix2gpu's options (shared/reference/nix2gpu-options.md) and their
    // defaults here; where gpubox's differs on purpose the README's migration
    // table says so (env, labels, exposedPorts, cuda.packages, sshdConfig,
    // nixConfig, age.package, age.identityPaths, home).
    let expected = [
        ("name", json!("demo")),
        ("tag", json!("latest")),
        ("systemPackages", json!([])),
        ("copyToRoot", json!([])),
        ("extraCopyToRoot", json!([])),
        ("env", json!({ "PATH": DEFAULT_PATH })),
        ("extraEnv", json!({})),
        ("labels", json!({})),
        ("extraLabels", json!({})),
        ("exposedPorts", json!({})),
        ("user", json!("root")),
        ("workingDir", json!("/root")),
        ("maxLayers", json!(50)),
        ("cuda.enable", json!(true)),
        ("cuda.packages", json!(null)),
        ("services", json!({})),
        ("nimiSettings", json!({})),
        ("sshdConfig", json!(null)),
        ("nixConfig", json!(null)),
        ("extraStartupScript", json!("")),
        ("age.enable", json!(false)),
        ("age.package", json!(null)),
        ("age.identityPaths", json!(null)),
        ("age.secrets", json!({})),
        ("age.secretsDir", json!(null)),
        ("age.secretsMountPoint", json!(null)),
        ("tailscale.enable", json!(false)),
        ("tailscale.authKey", json!("")),
        ("home", json!(null)),
        ("registries", json!([])),
        ("meta", json!({})),
        ("passthru", json!({})),
    ];
    let paths: Vec<String> = expected
        .iter()
        .map(|(path, _)| format!("\"{path}\""))
        .collect();
    let Some((got, _)) = eval_ok(&format!(
        r#"let evaluated = image [ ]; in lib.genAttrs [ {} ] (path:
  let option = lib.getAttrFromPath (lib.splitString "." path) evaluated.options;
  in {{ isOption = lib.isOption option; value = option.default; }})"#,
        paths.join(" ")
    )) else {
        return;
    };
    for (path, default) in expected {
        assert_eq!(got[path]["isOption"], json!(true), "{path} is no option");
        assert_eq!(got[path]["value"], default, "the default of {path}");
    }

    // A secret's and a service's defaults, nix2gpu's where it has them.
    let Some((got, _)) = eval_ok(
        r#"let evaluated = image [ { age.secrets.db.file = "/s/db.age"; services.web.process.argv = [ "/bin/web" ]; } ];
in { secret = evaluated.config.age.secrets.db; service = evaluated.config.services.web; }"#,
    ) else {
        return;
    };
    assert_eq!(
        got["secret"],
        json!({ "file": "/s/db.age", "name": "db", "path": null, "mode": "0400", "owner": null,
                "group": null, "symlink": true, "optional": false })
    );
    assert_eq!(
        got["service"]["argv"],
        json!(["/bin/web"]),
        "argv defaults to process.argv"
    );
    assert_eq!(got["service"]["restart"], json!("on-failure"));
}

#[test]
fn definitions_from_several_modules_merge_into_the_spec() {
    let Some((got, stderr)) = eval_ok(
        r#"spec [
  { tag = "v1"; extraEnv.A = "1"; extraLabels."org.a" = "a"; extraStartupScript = lib.mkBefore "echo one";
    exposedPorts."22/tcp" = { }; maxLayers = lib.mkDefault 20; }
  ({ lib, ... }: { tag = lib.mkForce "v2"; extraEnv.B = "2"; extraLabels."org.b" = "b";
    extraStartupScript = "echo two"; maxLayers = 30; ssh.enable = true;
    services.web = { process.argv = [ "/bin/web" "--port" "8000" ]; readiness.tcp = 8000; };
    services.worker = { argv = [ "/bin/worker" ]; after = [ "web" ]; restart = "always"; restartDelay = 0.5; };
    registries = [ "ghcr.io/org" "docker://127.0.0.1:5000/mirror/demo:edge" ]; })
]"#,
    ) else {
        return;
    };
    assert!(!stderr.contains("warning: gpubox"), "{stderr}");
    let expected = json!({
        "name": "demo",
        "tag": "v2",
        "cmd": [],
        "compression": "gzip",
        "copyToRoot": [],
        "hostBinaries": [],
        "systemPackages": [],
        "cuda": { "enable": true, "capabilities": "compute,utility", "allowMixedVersions": false },
        "exposedPorts": ["22/tcp"],
        "extraEnv": { "A": "1", "B": "2" },
        "labels": {},
        "extraLabels": { "org.a": "a", "org.b": "b" },
        "extraStartupScript": "echo one\necho two",
        "maxLayers": 30,
        "registries": ["docker://ghcr.io/org/demo:v2", "docker://127.0.0.1:5000/mirror/demo:edge"],
        "ssh": { "enable": true, "port": 22, "authorizedKeys": [], "rsaHostKey": false, "passwordLogin": false },
        "stopTimeout": 10,
        "services": {
            "web": { "argv": ["/bin/web", "--port", "8000"], "restart": "on-failure", "restartDelay": 1,
                     "readiness": { "tcp": 8000, "timeout": 30 } },
            "worker": { "argv": ["/bin/worker"], "after": ["web"], "restart": "always", "restartDelay": 0.5 },
        },
    });
    assert_eq!(got, expected);

    // env, user and workingDir are written only when defined, so gpubox's
    // defaults (and a base image's) apply otherwise.
    let Some((got, _)) = eval_ok(
        r#"{ unset = spec [ ]; set = spec [ { env.PATH = "/bin"; user = "dev"; workingDir = "/work"; checkPrograms = false; volumes = [ "/workspace" ]; } ]; }"#,
    ) else {
        return;
    };
    // checkPrograms likewise: written only when turned off; volumes only when
    // it names some, so existing specs stay as they were.
    for key in ["env", "user", "workingDir", "checkPrograms", "volumes"] {
        assert_eq!(got["unset"].get(key), None, "{key}");
    }
    assert_eq!(got["set"]["env"], json!({ "PATH": "/bin" }));
    assert_eq!(got["set"]["user"], json!("dev"));
    assert_eq!(got["set"]["workingDir"], json!("/work"));
    assert_eq!(got["set"]["checkPrograms"], json!(false));
    assert_eq!(got["set"]["volumes"], json!(["/workspace"]));
}

#[test]
fn store_paths_the_spec_names_are_its_image_paths() {
    // Context-carrying strings anywhere (an env value, a service's argv) put
    // their store paths into storePaths; copyToRoot packages are copied to /
    // and only their dependencies join (gpubox adds them at build time).
    let Some((got, _)) = eval_ok(
        r#"let
  redis = mk "redis-7.2"; tool = mk "tool-1.0"; root = mk "root-env"; lib1 = mk "libcublas-12.4.5";
  made = gpubox.specOf { inherit (image [ {
    systemPackages = [ tool ];
    extraEnv.REDIS = "${redis}/bin/redis-server";
    services.cache.argv = [ "${redis}/bin/redis-server" "--dir" "${tool}/share" ];
    copyToRoot = [ root ];
    cuda.packages = { cudaMajorMinorVersion = "12.4"; libcublas = lib1; };
  } ]) config options; };
in {
  spec = made.spec;
  roots = made.closureRoots;
  paths = { redis = "${redis}"; tool = "${tool}"; root = "${root}"; lib1 = "${lib1}"; };
}"#,
    ) else {
        return;
    };
    let path = |name: &str| got["paths"][name].as_str().unwrap().to_owned();
    let mut named = vec![path("redis"), path("tool")];
    named.sort();
    assert_eq!(got["spec"]["storePaths"], json!(named));
    assert_eq!(
        got["spec"]["systemPackages"],
        json!([path("tool"), path("lib1")])
    );
    assert_eq!(
        got["spec"]["copyToRoot"],
        json!([{ "src": path("root"), "dst": "/" }])
    );
    assert_eq!(got["spec"]["cuda"]["version"], json!("12.4"));
    // The builder gets the closure of all of them, the copied package included.
    let mut roots = vec![path("redis"), path("tool"), path("root"), path("lib1")];
    roots.sort();
    assert_eq!(got["roots"], json!(roots));
}

#[test]
fn nix2gpu_values_gpubox_does_not_use_are_reported_not_dropped() {
    let Some((got, stderr)) = eval_ok(
        r#"spec [ {
  nimiSettings.restart.mode = "always";
  age.package = mk "rage-0.10";
  age.secrets.db.file = "/s/db.age";
  tailscale.authKey = "/run/secrets/ts";
} ]"#,
    ) else {
        return;
    };
    for said in [
        "gpubox: `nimiSettings` is nix2gpu's (nimi's) and is left out",
        "gpubox: `age.package` is left out",
        "gpubox: `age.secrets` are left out because `age.enable` is false",
        "gpubox: `tailscale.authKey` is left out because `tailscale.enable` is false",
    ] {
        assert!(stderr.contains(said), "{said}: {stderr}");
    }
    assert_eq!(got.get("age"), None);
    assert_eq!(got.get("tailscale"), None);

    // With them on, nix2gpu's spellings become gpubox's keys.
    let Some((got, _)) = eval_ok(
        r#"spec [ {
  age = { enable = true; secrets.db = { file = "/s/db.age"; name = "database"; mode = "0440"; }; };
  tailscale = { enable = true; authKey = "/run/secrets/ts"; };
} ]"#,
    ) else {
        return;
    };
    assert_eq!(
        got["age"],
        json!({ "secrets": { "database": { "file": "/s/db.age", "mode": "0440", "symlink": true, "optional": false } } })
    );
    assert_eq!(
        got["tailscale"],
        json!({ "enable": true, "authKeyFile": "/run/secrets/ts", "extraUpFlags": [], "extraDaemonFlags": [] })
    );
}

#[test]
fn unknown_options_and_wrong_types_fail_naming_the_option() {
    let cases = [
        ("spec [ { extraEnvv.A = \"1\"; } ]", "The option `demo.extraEnvv' does not exist"),
        ("spec [ { maxLayers = \"50\"; } ]", "A definition for option `demo.maxLayers' is not of type `signed integer'"),
        ("spec [ { services.web.proces.argv = [ ]; } ]", "The option `demo.services.web.proces' does not exist"),
        ("spec [ { cuda.enable = \"yes\"; } ]", "`demo.cuda.enable' is not of type `boolean'"),
        (
            "spec [ { copyToRoot = [ { src = \"app\"; dst = \"/app\"; } ]; } ]",
            "gpubox: `copyToRoot[0].src` is the relative path \"app\"; write it as a Nix path (./app) or an absolute path",
        ),
        (
            "spec [ { fromImage = \"oci:base\"; } ]",
            "gpubox: `fromImage` names the relative path \"base\"",
        ),
    ];
    for (body, says) in cases {
        let Some(stderr) = eval_fails(body) else {
            return;
        };
        assert!(stderr.contains(says), "{body}: {stderr}");
    }
}

#[test]
fn platforms_and_per_platform_packages_reach_the_spec() {
    // Each platform's packages stay in its own table: they are not named in
    // the top-level storePaths (which every platform's image would take), but
    // the builder gets their closure.
    let Some((got, _)) = eval_ok(
        r#"let
  tool = mk "tool-1.0"; armTool = mk "tool-aarch64-1.0";
  made = gpubox.specOf { inherit (image [ {
    systemPackages = [ tool ];
    platforms = [ "linux/amd64" "linux/arm64" ];
    platform."linux/arm64".systemPackages = [ armTool ];
  } ]) config options; };
in {
  spec = made.spec;
  roots = made.closureRoots;
  paths = { tool = "${tool}"; armTool = "${armTool}"; };
}"#,
    ) else {
        return;
    };
    let path = |name: &str| got["paths"][name].as_str().unwrap().to_owned();
    assert_eq!(
        got["spec"]["platforms"],
        json!(["linux/amd64", "linux/arm64"])
    );
    assert_eq!(
        got["spec"]["platform"],
        json!({ "linux/arm64": { "systemPackages": [path("armTool")] } })
    );
    assert_eq!(got["spec"]["systemPackages"], json!([path("tool")]));
    assert!(got["spec"].get("storePaths").is_none(), "{}", got["spec"]);
    let mut roots = vec![path("tool"), path("armTool")];
    roots.sort();
    assert_eq!(got["roots"], json!(roots));

    // A platform gpubox does not build is refused by the option's type.
    let Some(stderr) = eval_fails(r#"spec [ { platforms = [ "linux/s390x" ]; } ]"#) else {
        return;
    };
    assert!(stderr.contains("platforms"), "{stderr}");
}
