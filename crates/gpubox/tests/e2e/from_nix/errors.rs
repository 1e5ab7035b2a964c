//! Values gpubox refuses fail `nix build` itself, with gpubox's own message in
//! the last lines Nix shows, and nothing is written.

use std::fs;

use super::super::common::run_fails;
use super::FrontEnd;

/// `nix build -f FILE` of an image whose module is `module` (Nix text with
/// `fixtures` in scope), in a project that also holds `files`; returns what
/// Nix printed.
fn nix_build_fails(front: &FrontEnd, name: &str, module: &str, files: &[(&str, &str)]) -> String {
    let project = front.project("no-flake", name, "127.0.0.1:5000");
    for (file, text) in files {
        fs::write(project.join(file), text).unwrap();
    }
    fs::write(
        project.join("bad.nix"),
        format!(
            r#"{{ lib, gpuboxSource }}:
let
  gpubox = import (gpuboxSource + "/nix/lib.nix") {{ lib = import lib; }};
  fixtures = import ./closure.nix {{ }};
in
gpubox.mkImage {{
  system = builtins.currentSystem;
  gpubox = ./gpubox;
  name = "bad";
  modules = [ ({module}) ];
}}
"#
        ),
    )
    .unwrap();
    let said = run_fails(
        front
            .command("nix", &project)
            .args(["build", "-f", "bad.nix", "--arg", "lib"])
            .arg(front.inputs.join("nixpkgs-lib/lib"))
            .arg("--arg")
            .arg("gpuboxSource")
            .arg(&front.gpubox_flake),
    );
    assert!(
        !project.join("result").exists(),
        "a failed build left a result"
    );
    said
}

/// A project name, the image module, files beside it, and what Nix must show.
struct Refused {
    name: &'static str,
    module: &'static str,
    files: &'static [(&'static str, &'static str)],
    says: &'static [&'static str],
}

#[test]
fn refused_values_fail_nix_build_with_gpuboxs_message() {
    let Some(front) = FrontEnd::new() else {
        return;
    };
    let cases = [
        Refused {
            name: "cycle",
            module: r#"{ systemPackages = [ fixtures.busybox ];
                 services.a = { argv = [ "/bin/sh" ]; after = [ "b" ]; };
                 services.b = { argv = [ "/bin/sh" ]; after = [ "a" ]; }; }"#,
            files: &[],
            says: &[
                "gpubox refused the spec",
                "invalid `services.a.after`: `after` forms a cycle: a -> b -> a",
            ],
        },
        Refused {
            name: "missing-secret",
            module: r#"{ age = { enable = true; secrets.db.file = ./secrets/db.age; }; }"#,
            files: &[],
            says: &[
                "gpubox refused the spec",
                "`age.secrets.db.file` cannot be used",
                "cannot read the secret file",
                "secrets/db.age",
            ],
        },
        Refused {
            name: "plaintext-secret",
            module: r#"{ age = { enable = true; secrets.db.file = ./db.txt; }; }"#,
            files: &[("db.txt", "not a secret\n")],
            says: &["gpubox refused the spec", "is not an age-encrypted file"],
        },
        Refused {
            name: "no-sshd",
            module: r#"{ systemPackages = [ fixtures.busybox ]; ssh.enable = true; }"#,
            files: &[],
            says: &[
                "gpubox refused the spec",
                "`ssh.enable` is on but the image has no `sshd`",
            ],
        },
        Refused {
            name: "mixed-cuda",
            module: r#"{ systemPackages = [ fixtures.cudaMixed ]; }"#,
            files: &[],
            says: &[
                "gpubox refused the spec",
                "cuda_cudart-12.4.127",
                "cuda_cudart-12.6.77",
            ],
        },
    ];
    for Refused {
        name,
        module,
        files,
        says,
    } in cases
    {
        let said = nix_build_fails(&front, name, module, files);
        // What Nix shows of a failed build: its last 10 log lines.
        let shown = said
            .split_once("last 10 log lines:")
            .map_or(said.as_str(), |(_, tail)| tail);
        for expected in says {
            assert!(
                shown.contains(expected),
                "{name}: {expected:?} not in:\n{said}"
            );
        }
    }
}
