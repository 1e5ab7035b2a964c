//! The Nix front end (`flake.nix`, `nix/`) with the real `nix`: option modules
//! evaluated by `nix-instantiate`, user flakes built with the pinned inputs in
//! `../shared/nix-inputs` (there is no network), and their commands run against
//! podman and a registry on 127.0.0.1.

mod errors;
mod flake;
mod options;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::{have, nix_conf_dir, repo_root, run_ok, stdout, tempdir};

/// The image every front end builds from `tests/flakes/demo.nix`.
pub const DEMO: &str = "gpubox-e2e-nix-demo";

/// The pinned flake inputs: `$GPUBOX_NIX_INPUTS`, else `shared/nix-inputs`
/// beside the repository or inside it. Missing, the test is skipped (fails
/// under CI).
pub fn nix_inputs() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("GPUBOX_NIX_INPUTS") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => vec![
            repo_root().join("../shared/nix-inputs"),
            repo_root().join("shared/nix-inputs"),
        ],
    };
    let found = candidates.iter().find(|dir| {
        dir.join("nixpkgs-lib/lib/default.nix").is_file()
            && dir.join("flake-parts/flake.nix").is_file()
    });
    if let Some(dir) = found {
        return Some(dir.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
    gpubox_testkit::missing(&format!(
        "the pinned Nix inputs (set GPUBOX_NIX_INPUTS; looked in {looked:?})"
    ));
    None
}

/// A test's folder with what the Nix front end needs: a copy of gpubox's
/// flake (without the Cargo build folder a `path:` input would copy), the
/// gpubox under test stripped of its debug info (every flake copies it into
/// the store), and a layer cache.
pub struct FrontEnd {
    pub work: tempfile::TempDir,
    pub inputs: PathBuf,
    pub gpubox_flake: PathBuf,
    binary: PathBuf,
    pub cache: PathBuf,
}

impl FrontEnd {
    /// `None` where Nix or the pinned inputs are missing (see [`have`]).
    pub fn new() -> Option<FrontEnd> {
        if !have("nix") || !have("strip") {
            return None;
        }
        let inputs = nix_inputs()?;
        let work = tempdir();
        let gpubox_flake = work.path().join("gpubox");
        fs::create_dir_all(&gpubox_flake).unwrap();
        for item in ["flake.nix", "nix", "templates", "Cargo.toml", "Cargo.lock"] {
            run_ok(
                Command::new("cp")
                    .arg("-r")
                    .arg(repo_root().join(item))
                    .arg(&gpubox_flake),
            );
        }
        let binary = work.path().join("gpubox-bin");
        run_ok(
            Command::new("strip")
                .arg("-o")
                .arg(&binary)
                .arg(env!("CARGO_BIN_EXE_gpubox")),
        );
        let cache = work.path().join("cache");
        Some(FrontEnd {
            work,
            inputs,
            gpubox_flake,
            binary,
            cache,
        })
    }

    /// A user's project `WORK/NAME`: the files of `tests/flakes/FIXTURE`,
    /// `demo.nix`, `closure.nix`, the gpubox binary as `gpubox`, and `registry`
    /// holding `registry` (HOST:PORT).
    pub fn project(&self, fixture: &str, name: &str, registry: &str) -> PathBuf {
        let dir = self.work.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        let flakes = repo_root().join("tests/flakes");
        for entry in fs::read_dir(flakes.join(fixture)).unwrap() {
            let entry = entry.unwrap();
            let text = fs::read_to_string(entry.path()).unwrap().replace(
                "@NIXPKGS_LIB@",
                &self.inputs.join("nixpkgs-lib").display().to_string(),
            );
            fs::write(dir.join(entry.file_name()), text).unwrap();
        }
        fs::copy(flakes.join("demo.nix"), dir.join("demo.nix")).unwrap();
        fs::copy(
            repo_root().join("tests/fixtures/closure.nix"),
            dir.join("closure.nix"),
        )
        .unwrap();
        fs::copy(&self.binary, dir.join("gpubox")).unwrap();
        fs::write(dir.join("registry"), registry).unwrap();
        dir
    }

    /// A Nix program run in `dir` with the test settings and this test's
    /// layer cache.
    pub fn command(&self, program: &str, dir: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(dir)
            .env("NIX_CONF_DIR", nix_conf_dir())
            .env("GPUBOX_CACHE_DIR", &self.cache)
            .env_remove("SOURCE_DATE_EPOCH");
        cmd
    }

    /// `--override-input` for every input of the test flakes: the pinned
    /// copies and this gpubox.
    pub fn overrides(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (name, path) in [
            ("nixpkgs-lib", self.inputs.join("nixpkgs-lib")),
            ("flake-parts", self.inputs.join("flake-parts")),
            ("gpubox", self.gpubox_flake.clone()),
        ] {
            args.extend([
                "--override-input".to_owned(),
                name.to_owned(),
                format!("path:{}", path.display()),
            ]);
        }
        args
    }

    /// `nix build .#ATTR` of the flake in `dir`; returns the output path.
    pub fn build(&self, dir: &Path, attr: &str) -> PathBuf {
        let out = run_ok(
            self.command("nix", dir)
                .args(["build", "--no-link", "--json"])
                .args(self.overrides())
                .arg(format!(".#{attr}")),
        );
        let built: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        PathBuf::from(built[0]["outputs"]["out"].as_str().expect("an output path"))
    }

    /// `nix run .#ATTR -- ARGS` in `dir`; add environment and run it.
    pub fn run(&self, dir: &Path, attr: &str, args: &[&str]) -> Command {
        let mut cmd = self.command("nix", dir);
        cmd.arg("run")
            .args(self.overrides())
            .arg(format!(".#{attr}"))
            .arg("--")
            .args(args);
        cmd
    }
}

/// The manifest digest gpubox printed last.
pub fn digest_printed(out: &std::process::Output) -> String {
    stdout(out)
        .lines()
        .last()
        .filter(|line| line.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest printed: {}", stdout(out)))
        .to_owned()
}
