//! Builds small derivations with the real Nix (builder `/bin/sh`, no nixpkgs)
//! and checks what `Nix` reports against `nix-store`'s own queries.

use std::path::Path;
use std::process::Command;

use gpubox_nix::{Installable, Nix, NixError, StorePath};

const NIX_CONF_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/nix");

/// `base` <- `mid` <- `app` (app also refers to base directly), a build that
/// fails, and a derivation with two outputs.
const FIXTURE: &str = r#"
let
  mk = name: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" script ];
  };
  base = mk "gpubox-test-base-1.0" "echo base > $out";
  mid = mk "gpubox-test-mid-1.0" "mkdir -p $out; echo ${base} > $out/ref; head -c 3000 /dev/zero > $out/pad";
in {
  inherit base mid;
  app = mk "gpubox-test-app-2.0" "mkdir -p $out/bin; echo ${mid} ${base} > $out/bin/ref";
  fail = mk "gpubox-test-fail-1" "echo boom-marker; exit 1";
  multi = derivation {
    name = "gpubox-test-multi";
    outputs = [ "out" "dev" ];
    system = builtins.currentSystem;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" "echo out > $out; echo dev > $dev" ];
  };
}
"#;

fn nix() -> Nix {
    Nix::new().with_env("NIX_CONF_DIR", NIX_CONF_DIR)
}

fn fixture(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("default.nix");
    std::fs::write(&file, FIXTURE).unwrap();
    file
}

fn attr(file: &Path, attr: &str) -> Installable {
    Installable::File {
        file: file.to_owned(),
        attr: Some(attr.to_owned()),
    }
}

fn realise_one(file: &Path, name: &str) -> StorePath {
    let paths = nix().realise(&attr(file, name)).unwrap();
    assert_eq!(paths.len(), 1, "{paths:?}");
    paths.into_iter().next().unwrap()
}

/// Runs `nix-store ARGS` and returns its stdout lines.
fn nix_store(args: &[&str]) -> Vec<String> {
    let out = Command::new("nix-store")
        .args(args)
        .env("NIX_CONF_DIR", NIX_CONF_DIR)
        .output()
        .unwrap();
    assert!(out.status.success(), "nix-store {args:?}: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn closure_of_a_three_level_graph_matches_nix_store() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture(dir.path());
    let app = realise_one(&file, "app");
    let mid = realise_one(&file, "mid");
    let base = realise_one(&file, "base");
    assert_eq!(app.name(), "gpubox-test-app-2.0");

    let closure = nix().closure(std::slice::from_ref(&app)).unwrap();
    let mut expected = vec![&app, &mid, &base];
    expected.sort();
    let got: Vec<&StorePath> = closure.paths().map(|i| &i.path).collect();
    assert_eq!(got, expected);

    for info in closure.paths() {
        let mut references = nix_store(&["-q", "--references", info.path.as_str()]);
        references.sort();
        let ours: Vec<&str> = info.references.iter().map(StorePath::as_str).collect();
        assert_eq!(ours, references, "references of {}", info.path);
        let size = nix_store(&["-q", "--size", info.path.as_str()]);
        assert_eq!(
            vec![info.nar_size.to_string()],
            size,
            "size of {}",
            info.path
        );
    }
    assert_eq!(closure.get(&app).unwrap().references, {
        let mut r = vec![mid.clone(), base.clone()];
        r.sort();
        r
    });
    assert_eq!(closure.get(&mid).unwrap().references, vec![base.clone()]);
    assert!(closure.get(&base).unwrap().references.is_empty());
    assert!(closure.get(&mid).unwrap().nar_size > 3000);
    let sum: u64 = closure.paths().map(|i| i.nar_size).sum();
    assert_eq!(closure.total_nar_size(), sum);

    // Several roots that overlap give the same closure.
    let again = nix().closure(&[base, app.clone(), mid]).unwrap();
    assert_eq!(again, closure);
    assert_eq!(
        nix().realise(&Installable::StorePath(app.clone())).unwrap(),
        vec![app]
    );
}

#[test]
fn missing_store_path_is_reported_as_missing() {
    let missing =
        StorePath::parse("/nix/store/00000000000000000000000000000000-gpubox-test-missing")
            .unwrap();
    let err = nix()
        .realise(&Installable::StorePath(missing.clone()))
        .unwrap_err();
    assert!(
        matches!(&err, NixError::PathMissing { path } if *path == missing),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(missing.as_str()), "{message}");
    assert!(message.contains("nix-store --realise"), "{message}");

    let err = nix().closure(std::slice::from_ref(&missing)).unwrap_err();
    assert!(
        matches!(&err, NixError::PathMissing { path } if *path == missing),
        "{err:?}"
    );
}

#[test]
fn failing_build_keeps_nix_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture(dir.path());
    let err = nix().realise(&attr(&file, "fail")).unwrap_err();
    let NixError::CommandFailed {
        command, stderr, ..
    } = &err
    else {
        panic!("expected CommandFailed, got {err:?}");
    };
    assert!(command.starts_with("nix-build "), "{command}");
    assert!(command.contains("-A fail"), "{command}");
    assert!(stderr.contains("boom-marker"), "{stderr}");
    assert!(stderr.contains("gpubox-test-fail-1.drv"), "{stderr}");
    assert!(err.to_string().contains("boom-marker"));
}

#[test]
fn nonexistent_attribute_keeps_nix_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture(dir.path());
    let err = nix().realise(&attr(&file, "nope")).unwrap_err();
    let NixError::CommandFailed { stderr, .. } = &err else {
        panic!("expected CommandFailed, got {err:?}");
    };
    assert!(stderr.contains("attribute 'nope'"), "{stderr}");
}

#[test]
fn every_output_of_a_build_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture(dir.path());
    let paths = nix().realise(&attr(&file, "multi.all")).unwrap();
    let names: Vec<&str> = paths.iter().map(StorePath::name).collect();
    assert_eq!(names, ["gpubox-test-multi", "gpubox-test-multi-dev"]);
}

#[test]
fn derivation_path_realises_to_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture(dir.path());
    let out = Command::new("nix-instantiate")
        .arg(&file)
        .args(["-A", "multi"])
        .env("NIX_CONF_DIR", NIX_CONF_DIR)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let drv = StorePath::parse(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    let paths = nix().realise(&Installable::StorePath(drv)).unwrap();
    let mut names: Vec<&str> = paths.iter().map(StorePath::name).collect();
    names.sort();
    assert_eq!(names, ["gpubox-test-multi", "gpubox-test-multi-dev"]);
}

#[test]
fn local_flake_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let system = format!("{}-linux", std::env::consts::ARCH);
    let flake = format!(
        r#"{{ outputs = {{ self }}: {{ packages.{system}.default = derivation {{
             name = "gpubox-test-flake-1.0"; system = "{system}"; builder = "/bin/sh";
             PATH = "/usr/bin:/bin"; args = [ "-c" "echo flake > $out" ]; }}; }}; }}"#
    );
    std::fs::write(dir.path().join("flake.nix"), flake).unwrap();
    let reference = format!("path:{}", dir.path().display());

    let paths = nix()
        .realise(&Installable::Flake(reference.clone()))
        .unwrap();
    let names: Vec<&str> = paths.iter().map(StorePath::name).collect();
    assert_eq!(names, ["gpubox-test-flake-1.0"]);
    assert_eq!(std::fs::read_to_string(&paths[0]).unwrap(), "flake\n");

    let err = nix()
        .realise(&Installable::Flake(format!("{reference}#nope")))
        .unwrap_err();
    let NixError::CommandFailed { stderr, .. } = &err else {
        panic!("expected CommandFailed, got {err:?}");
    };
    assert!(stderr.contains("nope"), "{stderr}");
}
