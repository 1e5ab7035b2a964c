//! The Nix front end's side of gpubox (the flake in `nix/` runs these):
//!
//! - `gpubox nix spec-builder`: the builder of an image's derivation. Nix hands
//!   it the spec it evaluated and the closure of every store path the spec names
//!   (structured attributes: `spec`, `closure` from `exportReferencesGraph`,
//!   `outputs.out`); it checks the spec as `gpubox build` would, against that
//!   closure, and writes it as the one output file. So a value gpubox refuses
//!   fails `nix build` with gpubox's own message, and the file's references are
//!   the store paths it names. What lies outside the store and Nix cannot hand to
//!   a builder (a `fromImage`, `hostBinaries`) is read and checked when the image
//!   is copied.
//! - `gpubox nix command-builder`: the builder of an image command's
//!   derivation (`nix run .#IMAGE.COMMAND`): a two-line script that runs
//!   `gpubox nix run COMMAND SPEC "$@"`.
//! - `gpubox nix run COMMAND SPEC [ARGS]`: nix2gpu's image commands, each
//!   turned into the gpubox command lines it stands for ([`command_lines`]),
//!   which the CLI then runs in order. ARGS reach the gpubox command as given.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use gpubox_nix::Closure;
use gpubox_registry::Engine;
use gpubox_spec::Spec;
use serde_json::Value;

use crate::commands::base::Base;
use crate::commands::build::{gpu_settings, top_layer, StoreContents};
use crate::error::CliError;
use crate::progress::{bytes, Progress};
use crate::target::with_default_tag;

/// An image command, by nix2gpu's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageCommand {
    /// Build and load into the Docker engine as NAME:TAG.
    #[value(name = "copyToDockerDaemon")]
    CopyToDockerDaemon,
    /// Build and load into podman as NAME:TAG.
    #[value(name = "copyToPodman")]
    CopyToPodman,
    /// Build and push to the first `registries` entry, else docker://NAME:TAG.
    #[value(name = "copyToRegistry")]
    CopyToRegistry,
    /// Build and write to DEST, the first argument (any `gpubox build -o`).
    #[value(name = "copyTo")]
    CopyTo,
    /// Build and load into podman when it runs here, else Docker.
    #[value(name = "copyToContainerRuntime")]
    CopyToContainerRuntime,
    /// Build and push to every `registries` entry with a GitHub token.
    #[value(name = "copyToGithub")]
    CopyToGithub,
    /// Load into podman (else Docker) and start a shell with the GPUs and the
    /// current folder at /workspace.
    #[value(name = "shell")]
    Shell,
    /// `shell` in podman.
    #[value(name = "podmanShell")]
    PodmanShell,
    /// `shell` in Docker.
    #[value(name = "dockerShell")]
    DockerShell,
    /// Build and show the image (`gpubox inspect`).
    #[value(name = "inspect")]
    Inspect,
    /// Build and compare with the image now at the first `registries` entry.
    #[value(name = "diff")]
    Diff,
}

/// nix2gpu's name, as the flake's attributes spell it.
impl fmt::Display for ImageCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use clap::ValueEnum;
        match self.to_possible_value() {
            Some(value) => f.write_str(value.get_name()),
            None => Ok(()),
        }
    }
}

/// Why a Nix builder or an image command cannot go on.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum NixFrontEndError {
    #[error("$NIX_ATTRS_JSON_FILE is not set: `gpubox nix {builder}` is the builder of a derivation with __structuredAttrs, run by Nix")]
    #[diagnostic(help("build the image with `nix build` (see the README's \"From Nix\"); to check a spec by hand, use `gpubox build`"))]
    NotInABuild { builder: &'static str },
    #[error("cannot read the attributes Nix gave this build ({path}): {detail}")]
    #[diagnostic(help(
        "gpubox's builders need Nix 2.8 or newer; report this with the file attached"
    ))]
    BadAttributes { path: PathBuf, detail: String },
    #[error("`{0}` is not an image command")]
    #[diagnostic(help("the commands are copyToDockerDaemon, copyToPodman, copyToRegistry, copyTo, copyToContainerRuntime, copyToGithub, shell, podmanShell, dockerShell, inspect and diff"))]
    UnknownCommand(String),
    #[error("copyTo needs the destination as its first argument")]
    #[diagnostic(help("e.g. `nix run .#IMAGE.copyTo -- oci:DIR`, `-- oci-archive:image.tar` or `-- docker://HOST/REPO:TAG`"))]
    NoDestination,
    #[error("{command}: the spec has no `registries`{also}")]
    #[diagnostic(help("add one, e.g. registries = [ \"ghcr.io/my-org\" ] (the image's name and tag are added), or use `copyTo docker://HOST/REPO:TAG`"))]
    NoRegistries {
        command: ImageCommand,
        also: &'static str,
    },
    #[error("{command}: neither podman nor a Docker engine answers here")]
    #[diagnostic(help("start one (`podman info` or `docker info` must work), or write the image with `copyTo oci-archive:image.tar`"))]
    NoEngine { command: ImageCommand },
    #[error("copyToGithub: no GitHub {what}")]
    #[diagnostic(help("{help}"))]
    NoGithubLogin { what: &'static str, help: String },
}

/// The attributes Nix gives a builder with `__structuredAttrs`.
struct BuildAttributes {
    path: PathBuf,
    attrs: Value,
}

impl BuildAttributes {
    fn read(builder: &'static str) -> Result<BuildAttributes, CliError> {
        let path = std::env::var_os("NIX_ATTRS_JSON_FILE")
            .map(PathBuf::from)
            .ok_or(NixFrontEndError::NotInABuild { builder })?;
        let text = std::fs::read_to_string(&path).map_err(|source| CliError::InputNotReadable {
            path: path.clone(),
            source,
        })?;
        let attrs = serde_json::from_str(&text).map_err(|e| NixFrontEndError::BadAttributes {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        Ok(BuildAttributes { path, attrs })
    }

    fn get(&self, pointer: &str) -> Result<&Value, CliError> {
        self.attrs.pointer(pointer).ok_or_else(|| {
            NixFrontEndError::BadAttributes {
                path: self.path.clone(),
                detail: format!("there is no {pointer}"),
            }
            .into()
        })
    }

    fn string(&self, pointer: &str) -> Result<&str, CliError> {
        self.get(pointer)?.as_str().ok_or_else(|| {
            NixFrontEndError::BadAttributes {
                path: self.path.clone(),
                detail: format!("{pointer} is not a string"),
            }
            .into()
        })
    }

    /// The output path Nix expects.
    fn out(&self) -> Result<PathBuf, CliError> {
        self.string("/outputs/out").map(PathBuf::from)
    }
}

/// `gpubox nix spec-builder`: checks the spec Nix evaluated and writes it to
/// the derivation's output.
pub fn spec_builder(progress: &Progress) -> Result<(), CliError> {
    let attrs = BuildAttributes::read("spec-builder")?;
    let out = attrs.out()?;
    let mut text = serde_json::to_string_pretty(attrs.get("/spec")?).map_err(|e| {
        NixFrontEndError::BadAttributes {
            path: attrs.path.clone(),
            detail: e.to_string(),
        }
    })?;
    text.push('\n');
    let spec = gpubox_spec::parse(&text, &out)?;
    let closure = Closure::from_exported_graph(attrs.get("/closure")?)?;
    let store = StoreContents::from_closure(&spec, &closure)?;
    gpu_settings(&spec, &store.closure)?;
    match unchecked_here(&spec) {
        None => {
            top_layer(&spec, &store, &[], &Base::default(), None)?;
        }
        Some(keys) => progress.step(format!(
            "{keys} lie outside the store: they are read, and the top layer checked, when the image is copied"
        )),
    }
    gpubox_oci::archive::write_file_atomically(&out, |file| {
        file.write_all(text.as_bytes())
            .map_err(|source| gpubox_oci::layout::OutputError::Io {
                action: "write",
                path: out.clone(),
                source,
            })
    })?;
    progress.step(format!(
        "checked the spec of {}:{}: {} store paths, {}",
        spec.name,
        spec.tag,
        store.closure.len(),
        bytes(store.closure.total_nar_size())
    ));
    Ok(())
}

/// The keys whose inputs a builder cannot read, so the top layer waits for
/// the copy to be checked.
fn unchecked_here(spec: &Spec) -> Option<String> {
    let keys: Vec<&str> = [
        ("fromImage", spec.from_image.is_some()),
        ("hostBinaries", !spec.host_binaries.is_empty()),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect();
    (!keys.is_empty()).then(|| keys.join(" and "))
}

/// `gpubox nix command-builder`: writes `$out/bin/PROGRAM`, the script `nix
/// run .#IMAGE.COMMAND` starts.
pub fn command_builder() -> Result<(), CliError> {
    use clap::ValueEnum;
    let attrs = BuildAttributes::read("command-builder")?;
    let command = attrs.string("/command")?;
    let command = ImageCommand::from_str(command, false)
        .map_err(|_| NixFrontEndError::UnknownCommand(command.to_owned()))?;
    let script = command_script(
        command,
        Path::new(attrs.string("/gpubox")?),
        Path::new(attrs.string("/spec")?),
    );
    let bin = attrs.out()?.join("bin");
    let program = bin.join(attrs.string("/program")?);
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| gpubox_oci::layout::OutputError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(&bin).map_err(io("create", &bin))?;
    std::fs::write(&program, script).map_err(io("write", &program))?;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o555))
        .map_err(io("make executable", &program))?;
    Ok(())
}

/// The script behind `nix run .#IMAGE.COMMAND`. Store paths need no quoting
/// beyond single quotes: they hold none.
fn command_script(command: ImageCommand, gpubox: &Path, spec: &Path) -> String {
    format!(
        "#!/bin/sh\n# `nix run .#IMAGE.{command} -- ARGS`, made by gpubox's flake\nexec '{}' nix run {command} '{}' \"$@\"\n",
        gpubox.display(),
        spec.display()
    )
}

/// What an image command needs to know about this machine, found before the
/// command lines are made so that [`command_lines`] does no I/O.
#[derive(Debug, Default)]
pub struct Surroundings {
    /// The engine `copyToContainerRuntime` and `shell` use: podman when it
    /// answers, else Docker.
    pub engine: Option<Engine>,
    /// `USER:TOKEN` for `copyToGithub`.
    pub github_login: Option<String>,
    /// The folder `shell` mounts at /workspace.
    pub workspace: PathBuf,
    /// An empty folder to build into for `inspect` and `diff`.
    pub scratch: PathBuf,
}

/// What a command needs found out before its command lines are made.
#[derive(Debug, PartialEq, Eq)]
pub struct Needs {
    pub engine: bool,
    pub github_login: bool,
    pub scratch: bool,
}

/// What `command` with `args` needs from [`Surroundings`].
pub fn needs(command: ImageCommand, args: &[String]) -> Needs {
    let has_creds = args
        .iter()
        .any(|arg| arg == "--creds-stdin" || arg == "--creds" || arg.starts_with("--creds="));
    Needs {
        engine: matches!(
            command,
            ImageCommand::CopyToContainerRuntime | ImageCommand::Shell
        ),
        github_login: command == ImageCommand::CopyToGithub && !has_creds,
        scratch: matches!(command, ImageCommand::Inspect | ImageCommand::Diff),
    }
}

/// The gpubox command lines (without the program name) that `command` runs
/// for the image `spec` (read from `spec_file`), in order.
pub fn command_lines(
    command: ImageCommand,
    spec_file: &Path,
    spec: &Spec,
    args: &[String],
    around: &Surroundings,
) -> Result<Vec<Vec<String>>, CliError> {
    let spec_arg = spec_file.display().to_string();
    let build = |dest: String, extra: &[String]| -> Vec<String> {
        let mut line = vec!["build".to_owned(), spec_arg.clone(), "-o".to_owned(), dest];
        line.extend(extra.iter().cloned());
        line
    };
    let engine_ref = |engine: Engine| {
        let transport = match engine {
            Engine::Podman => "podman",
            Engine::Docker => "docker-daemon",
        };
        format!("{transport}:{}:{}", spec.name, spec.tag)
    };
    let engine = || around.engine.ok_or(NixFrontEndError::NoEngine { command });
    let registries = |also: &'static str| -> Result<Vec<String>, CliError> {
        if spec.registries.is_empty() {
            return Err(NixFrontEndError::NoRegistries { command, also }.into());
        }
        Ok(spec
            .registries
            .iter()
            .map(|item| with_default_tag(&item.value, &spec.tag))
            .collect())
    };
    let lines = match command {
        ImageCommand::CopyToDockerDaemon => vec![build(engine_ref(Engine::Docker), args)],
        ImageCommand::CopyToPodman => vec![build(engine_ref(Engine::Podman), args)],
        ImageCommand::CopyToContainerRuntime => vec![build(engine_ref(engine()?), args)],
        ImageCommand::CopyTo => {
            let (dest, rest) = args.split_first().ok_or(NixFrontEndError::NoDestination)?;
            vec![build(dest.clone(), rest)]
        }
        ImageCommand::CopyToRegistry => {
            let dest = match spec.registries.first() {
                Some(first) => with_default_tag(&first.value, &spec.tag),
                None if names_a_registry(&spec.name) => {
                    format!("docker://{}:{}", spec.name, spec.tag)
                }
                None => {
                    return Err(NixFrontEndError::NoRegistries {
                        command,
                        also: ", and the image name names no registry host",
                    }
                    .into())
                }
            };
            vec![build(dest, args)]
        }
        ImageCommand::CopyToGithub => {
            let mut extra = args.to_vec();
            if let Some(login) = &around.github_login {
                extra.extend(["--creds".to_owned(), login.clone()]);
            }
            registries("")?
                .into_iter()
                .map(|dest| build(dest, &extra))
                .collect()
        }
        ImageCommand::Shell | ImageCommand::PodmanShell | ImageCommand::DockerShell => {
            let engine = match command {
                ImageCommand::PodmanShell => Engine::Podman,
                ImageCommand::DockerShell => Engine::Docker,
                _ => engine()?,
            };
            let image = engine_ref(engine);
            let (run_args, program) = match args.iter().position(|arg| arg == "--") {
                Some(at) => (&args[..at], &args[at + 1..]),
                None => (args, &[][..]),
            };
            let mut run = vec![
                "run".to_owned(),
                image.clone(),
                "--volume".to_owned(),
                format!("{}:/workspace", around.workspace.display()),
                "--workdir".to_owned(),
                "/workspace".to_owned(),
            ];
            run.extend(run_args.iter().cloned());
            run.push("--".to_owned());
            if program.is_empty() {
                // bash where the image has it, as nix2gpu starts; else sh.
                run.extend(
                    [
                        "/bin/sh",
                        "-c",
                        "command -v bash >/dev/null 2>&1 && exec bash; exec sh",
                    ]
                    .map(str::to_owned),
                );
            } else {
                run.extend(program.iter().cloned());
            }
            vec![build(image, &["--quiet".to_owned()]), run]
        }
        ImageCommand::Inspect | ImageCommand::Diff => {
            let scratch = format!("oci:{}", around.scratch.display());
            let show = if command == ImageCommand::Inspect {
                vec!["inspect".to_owned(), scratch.clone()]
            } else {
                let first = registries(", so there is no image to compare with")?.remove(0);
                vec!["diff".to_owned(), first, scratch.clone()]
            };
            let mut show = show;
            show.extend(args.iter().cloned());
            vec![build(scratch, &["--quiet".to_owned()]), show]
        }
    };
    Ok(lines)
}

/// Whether an image name starts with a registry host (`ghcr.io/...`,
/// `localhost:5000/...`), as `docker://NAME` needs.
fn names_a_registry(name: &str) -> bool {
    match name.split_once('/') {
        Some((host, _)) => host.contains('.') || host.contains(':') || host == "localhost",
        None => false,
    }
}

/// The login `copyToGithub` pushes with: `$GITHUB_ACTOR`/`$GITHUB_TOKEN`, else
/// what the GitHub CLI is logged in as.
pub fn github_login(env: &BTreeMap<String, String>) -> Result<String, CliError> {
    let gh = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("gh").args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    let token = env
        .get("GITHUB_TOKEN")
        .filter(|token| !token.is_empty())
        .cloned()
        .or_else(|| gh(&["auth", "token"]))
        .ok_or_else(|| NixFrontEndError::NoGithubLogin {
            what: "token",
            help: "set GITHUB_TOKEN, or log in with `gh auth login --scopes write:packages`"
                .to_owned(),
        })?;
    let user = env
        .get("GITHUB_ACTOR")
        .filter(|user| !user.is_empty())
        .cloned()
        .or_else(|| gh(&["api", "user", "--jq", ".login"]))
        .ok_or_else(|| NixFrontEndError::NoGithubLogin {
            what: "user name",
            help: "set GITHUB_ACTOR to the account the token belongs to, or log in with `gh auth login`".to_owned(),
        })?;
    Ok(format!("{user}:{token}"))
}

/// A command line as it may be shown: the password of `--creds` hidden.
pub fn shown(line: &[String]) -> String {
    let mut words = Vec::with_capacity(line.len());
    let mut hide_next = false;
    for word in line {
        if hide_next {
            let user = word.split_once(':').map_or("", |(user, _)| user);
            words.push(format!("{user}:***"));
        } else {
            words.push(word.clone());
        }
        hide_next = word == "--creds";
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml: &str) -> Spec {
        gpubox_spec::parse(toml, Path::new("/specs/gpubox.toml")).unwrap()
    }

    fn lines(command: ImageCommand, toml: &str, args: &[&str]) -> Result<Vec<Vec<String>>, String> {
        let around = Surroundings {
            engine: Some(Engine::Docker),
            github_login: Some("octo:tok".to_owned()),
            workspace: PathBuf::from("/home/me/proj"),
            scratch: PathBuf::from("/cache/tmp/x"),
        };
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        command_lines(command, Path::new("/s.json"), &spec(toml), &args, &around)
            .map_err(|e| e.to_string())
    }

    fn joined(lines: Vec<Vec<String>>) -> Vec<String> {
        lines.iter().map(|line| line.join(" ")).collect()
    }

    const PLAIN: &str = "name = \"demo\"\ntag = \"v1\"\n";
    const WITH_REGISTRIES: &str = "name = \"demo\"\ntag = \"v1\"\nregistries = [\"docker://ghcr.io/org/demo:v1\", \"docker://127.0.0.1:5000/demo\"]\n";

    #[test]
    fn copies_go_through_gpubox_build_with_the_arguments_given() {
        let cases = [
            (
                ImageCommand::CopyToPodman,
                PLAIN,
                vec!["--sbom", "s.spdx"],
                "build /s.json -o podman:demo:v1 --sbom s.spdx",
            ),
            (
                ImageCommand::CopyToDockerDaemon,
                PLAIN,
                vec![],
                "build /s.json -o docker-daemon:demo:v1",
            ),
            (
                ImageCommand::CopyToContainerRuntime,
                PLAIN,
                vec![],
                "build /s.json -o docker-daemon:demo:v1",
            ),
            (
                ImageCommand::CopyTo,
                PLAIN,
                vec!["oci:out", "--tls-verify=false"],
                "build /s.json -o oci:out --tls-verify=false",
            ),
            (
                ImageCommand::CopyToRegistry,
                WITH_REGISTRIES,
                vec!["--tls-verify=false"],
                "build /s.json -o docker://ghcr.io/org/demo:v1 --tls-verify=false",
            ),
            (
                ImageCommand::CopyToRegistry,
                "name = \"ghcr.io/org/demo\"\n",
                vec![],
                "build /s.json -o docker://ghcr.io/org/demo:latest",
            ),
        ];
        for (command, toml, args, expected) in cases {
            assert_eq!(
                joined(lines(command, toml, &args).unwrap()),
                [expected],
                "{command}"
            );
        }
    }

    #[test]
    fn github_pushes_to_every_registry_with_the_login() {
        let got = joined(lines(ImageCommand::CopyToGithub, WITH_REGISTRIES, &[]).unwrap());
        assert_eq!(
            got,
            [
                "build /s.json -o docker://ghcr.io/org/demo:v1 --creds octo:tok",
                "build /s.json -o docker://127.0.0.1:5000/demo:v1 --creds octo:tok",
            ]
        );
        assert_eq!(
            shown(&lines(ImageCommand::CopyToGithub, WITH_REGISTRIES, &[]).unwrap()[0]),
            "build /s.json -o docker://ghcr.io/org/demo:v1 --creds octo:***"
        );
        assert!(needs(ImageCommand::CopyToGithub, &[]).github_login);
        assert!(!needs(ImageCommand::CopyToGithub, &["--creds=a:b".to_owned()]).github_login);
    }

    #[test]
    fn shells_load_the_image_then_run_it_with_the_workspace() {
        let got = joined(
            lines(
                ImageCommand::PodmanShell,
                PLAIN,
                &["--network", "none", "--", "/bin/id"],
            )
            .unwrap(),
        );
        assert_eq!(
            got,
            [
                "build /s.json -o podman:demo:v1 --quiet",
                "run podman:demo:v1 --volume /home/me/proj:/workspace --workdir /workspace --network none -- /bin/id",
            ]
        );
        let default = lines(ImageCommand::Shell, PLAIN, &[]).unwrap();
        assert_eq!(default[1][1], "docker-daemon:demo:v1");
        assert_eq!(
            default[1].last().unwrap(),
            "command -v bash >/dev/null 2>&1 && exec bash; exec sh"
        );
    }

    #[test]
    fn inspect_and_diff_build_into_the_scratch_folder() {
        assert_eq!(
            joined(lines(ImageCommand::Inspect, PLAIN, &["--json"]).unwrap()),
            [
                "build /s.json -o oci:/cache/tmp/x --quiet",
                "inspect oci:/cache/tmp/x --json"
            ]
        );
        assert_eq!(
            joined(lines(ImageCommand::Diff, WITH_REGISTRIES, &["--tls-verify=false"]).unwrap())[1],
            "diff docker://ghcr.io/org/demo:v1 oci:/cache/tmp/x --tls-verify=false"
        );
    }

    #[test]
    fn missing_pieces_are_named() {
        let cases = [
            (ImageCommand::CopyTo, PLAIN, "copyTo needs the destination"),
            (ImageCommand::CopyToRegistry, PLAIN, "copyToRegistry: the spec has no `registries`, and the image name names no registry host"),
            (ImageCommand::CopyToGithub, PLAIN, "copyToGithub: the spec has no `registries`"),
            (ImageCommand::Diff, PLAIN, "diff: the spec has no `registries`, so there is no image to compare with"),
        ];
        for (command, toml, says) in cases {
            let error = lines(command, toml, &[]).unwrap_err();
            assert!(error.contains(says), "{command}: {error}");
        }
        let around = Surroundings::default();
        let error = command_lines(
            ImageCommand::Shell,
            Path::new("/s.json"),
            &spec(PLAIN),
            &[],
            &around,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("neither podman nor a Docker engine"),
            "{error}"
        );
    }

    #[test]
    fn scripts_exec_gpubox_with_the_spec() {
        let script = command_script(
            ImageCommand::CopyToPodman,
            Path::new("/nix/store/g-gpubox/bin/gpubox"),
            Path::new("/nix/store/s-demo.json"),
        );
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.ends_with(
            "exec '/nix/store/g-gpubox/bin/gpubox' nix run copyToPodman '/nix/store/s-demo.json' \"$@\"\n"
        ));
    }
}
