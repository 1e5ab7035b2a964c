//! nix2gpu's image commands (`nix run .#IMAGE.COMMAND`), each turned into the
//! gpubox command lines it stands for ([`command_lines`]), which a front end
//! then runs in order. ARGS reach the gpubox command as given.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use gpubox_engines::Engine;
use gpubox_spec::Spec;

use crate::error::{BuildError, ImageCommandError};
use crate::location::{with_default_tag, ImageLocation};

/// An image command, by nix2gpu's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageCommand {
    CopyToDockerDaemon,
    CopyToPodman,
    CopyToRegistry,
    CopyTo,
    CopyToContainerRuntime,
    CopyToGithub,
    Shell,
    PodmanShell,
    DockerShell,
    Inspect,
    Diff,
    Deploy,
}

impl ImageCommand {
    /// Every command with nix2gpu's name and what it does, in the order
    /// `--help` lists them.
    pub const ALL: [(ImageCommand, &'static str, &'static str); 12] = [
        (ImageCommand::CopyToDockerDaemon, "copyToDockerDaemon", "Build and load into the Docker engine as NAME:TAG."),
        (ImageCommand::CopyToPodman, "copyToPodman", "Build and load into podman as NAME:TAG."),
        (ImageCommand::CopyToRegistry, "copyToRegistry", "Build and push to the first `registries` entry, else docker://NAME:TAG."),
        (ImageCommand::CopyTo, "copyTo", "Build and write to DEST, the first argument (any `gpubox build -o`)."),
        (ImageCommand::CopyToContainerRuntime, "copyToContainerRuntime", "Build and load into podman when it runs here, else Docker."),
        (ImageCommand::CopyToGithub, "copyToGithub", "Build and push to every `registries` entry with a GitHub token."),
        (ImageCommand::Shell, "shell", "Load into podman (else Docker) and start a shell with the GPUs and the current folder at /workspace."),
        (ImageCommand::PodmanShell, "podmanShell", "`shell` in podman."),
        (ImageCommand::DockerShell, "dockerShell", "`shell` in Docker."),
        (ImageCommand::Inspect, "inspect", "Build and show the image (`gpubox inspect`)."),
        (ImageCommand::Diff, "diff", "Build and compare with the image now at the first `registries` entry."),
        (ImageCommand::Deploy, "deploy", "Write a deployment (kubernetes, vast or runpod: the first argument) of the image at the first `registries` entry, or at --image (`gpubox deploy`)."),
    ];

    /// nix2gpu's name, as the flake's attributes spell it.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(command, _, _)| *command == self)
            .map_or("", |(_, name, _)| name)
    }
}

impl fmt::Display for ImageCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ImageCommand {
    type Err = ImageCommandError;

    fn from_str(name: &str) -> Result<ImageCommand, ImageCommandError> {
        Self::ALL
            .iter()
            .find(|(_, known, _)| *known == name)
            .map(|(command, _, _)| *command)
            .ok_or_else(|| ImageCommandError::UnknownCommand {
                given: name.to_owned(),
                known: Self::ALL.map(|(_, known, _)| known).join(", "),
            })
    }
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
) -> Result<Vec<Vec<String>>, BuildError> {
    let spec_arg = spec_file.display().to_string();
    let build = |dest: String, extra: &[String]| -> Vec<String> {
        let mut line = vec!["build".to_owned(), spec_arg.clone(), "-o".to_owned(), dest];
        line.extend(extra.iter().cloned());
        line
    };
    let engine_ref = |engine: Engine| {
        ImageLocation::Engine {
            engine,
            reference: format!("{}:{}", spec.name, spec.tag),
        }
        .to_string()
    };
    let engine = || {
        around.engine.ok_or(ImageCommandError::NoEngine {
            command: command.name(),
        })
    };
    let registries = |also: &'static str| -> Result<Vec<String>, BuildError> {
        if spec.registries.is_empty() {
            return Err(ImageCommandError::NoRegistries {
                command: command.name(),
                also,
            }
            .into());
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
            let (dest, rest) = args.split_first().ok_or(ImageCommandError::NoDestination)?;
            vec![build(dest.clone(), rest)]
        }
        ImageCommand::CopyToRegistry => {
            let dest = match spec.registries.first() {
                Some(first) => with_default_tag(&first.value, &spec.tag),
                None if gpubox_registry::names_a_registry_host(&spec.name) => {
                    format!("docker://{}:{}", spec.name, spec.tag)
                }
                None => {
                    return Err(ImageCommandError::NoRegistries {
                        command: command.name(),
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
        ImageCommand::Deploy => {
            let (target, rest) = args.split_first().ok_or(ImageCommandError::NoTarget)?;
            let mut line = vec!["deploy".to_owned(), target.clone(), spec_arg.clone()];
            let names_image = rest
                .iter()
                .any(|arg| arg == "--image" || arg.starts_with("--image="));
            if !names_image {
                let pushed = registries(", and no --image names the pushed image")?.remove(0);
                line.extend(["--image".to_owned(), pushed]);
            }
            line.extend(rest.iter().cloned());
            vec![line]
        }
    };
    Ok(lines)
}

/// The login `copyToGithub` pushes with: `$GITHUB_ACTOR`/`$GITHUB_TOKEN`, else
/// what the GitHub CLI is logged in as.
pub fn github_login(env: &BTreeMap<String, String>) -> Result<String, BuildError> {
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
        .ok_or_else(|| ImageCommandError::NoGithubLogin {
            what: "token",
            help: "set GITHUB_TOKEN, or log in with `gh auth login --scopes write:packages`"
                .to_owned(),
        })?;
    let user = env
        .get("GITHUB_ACTOR")
        .filter(|user| !user.is_empty())
        .cloned()
        .or_else(|| gh(&["api", "user", "--jq", ".login"]))
        .ok_or_else(|| ImageCommandError::NoGithubLogin {
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
    fn deploy_names_the_pushed_image_unless_the_arguments_do() {
        assert_eq!(
            joined(
                lines(
                    ImageCommand::Deploy,
                    WITH_REGISTRIES,
                    &["k8s", "--gpus", "2"]
                )
                .unwrap()
            ),
            ["deploy k8s /s.json --image docker://ghcr.io/org/demo:v1 --gpus 2"]
        );
        assert_eq!(
            joined(
                lines(
                    ImageCommand::Deploy,
                    PLAIN,
                    &["vast", "--image", "r.io/d:v1"]
                )
                .unwrap()
            ),
            ["deploy vast /s.json --image r.io/d:v1"]
        );
        let no_image = lines(ImageCommand::Deploy, PLAIN, &["runpod"]).unwrap_err();
        assert!(
            no_image.contains("no --image names the pushed image"),
            "{no_image}"
        );
        let no_target = lines(ImageCommand::Deploy, WITH_REGISTRIES, &[]).unwrap_err();
        assert!(no_target.contains("deploy needs the target"), "{no_target}");
    }

    #[test]
    fn names_read_back_and_an_unknown_one_lists_them_all() {
        for (command, name, _) in ImageCommand::ALL {
            assert_eq!(name.parse::<ImageCommand>().unwrap(), command);
            assert_eq!(command.to_string(), name);
        }
        let Err(ImageCommandError::UnknownCommand { given, known }) =
            "copyto".parse::<ImageCommand>()
        else {
            panic!("copyto parsed");
        };
        assert_eq!(given, "copyto");
        assert!(
            known.starts_with("copyToDockerDaemon, copyToPodman, "),
            "{known}"
        );
        assert!(known.ends_with("inspect, diff, deploy"), "{known}");
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
}
