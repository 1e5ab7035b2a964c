//! `gpubox-engines` runs and probes the local container engines, podman and
//! Docker, through their own command-line programs: loading a docker-archive
//! into an engine's storage ([`load`]), saving an image from it as a
//! docker-archive ([`save`]), reading an image's `Env` from its config
//! ([`image_env`]), and asking an engine what it can do with NVIDIA GPUs
//! ([`probe`]: its version, CDI support, the legacy `nvidia` runtime).
//!
//! Images travel to and from engines as docker-archive streams through the
//! engines' CLIs, so whatever socket, context or storage settings the user
//! has configured apply unchanged; callers pass a function that writes the
//! archive into the stream. Failures come back as [`EngineError`], worded for
//! the user. It does not build, pull or push images, and it never prints:
//! what an engine writes is captured and returned.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;

/// A local container engine gpubox can load images into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Podman,
}

impl Engine {
    /// The engine's command-line program.
    pub fn program(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.program())
    }
}

/// Why an engine could not take or give an image.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("`{program}` was not found on PATH; install {program} or choose another output (oci:DIR, oci-archive:FILE, docker-archive:FILE)")]
    NotInstalled { program: &'static str },
    #[error("could not run `{command}`: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("`{command}` printed something gpubox cannot read: {detail}")]
    BadOutput { command: String, detail: String },
    #[error("streaming the image into `{command}` failed: {source}")]
    Stream {
        command: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// How many times `load` sends the archive again after podman's storage lost
/// a layer to another process loading or pulling the same layers at the same
/// moment (containers/storage answers "layer not known"; a second try finds the
/// layer the other process stored).
const LOAD_RETRIES: usize = 2;

/// Runs `ENGINE load`, with `write_archive` writing a docker-archive into its
/// standard input. Returns what the engine printed (the loaded image's name).
///
/// When podman's storage reports a layer it lost to a concurrent load or pull
/// ("layer not known"), the load is tried again, up to twice; `on_retry` is told
/// each time with the error, so the caller can say so.
pub fn load<E>(
    engine: Engine,
    write_archive: impl FnMut(&mut dyn Write) -> Result<(), E>,
    on_retry: impl FnMut(&EngineError),
) -> Result<String, EngineError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    load_with(engine.program(), engine, write_archive, on_retry)
}

fn load_with<E>(
    program: &str,
    engine: Engine,
    mut write_archive: impl FnMut(&mut dyn Write) -> Result<(), E>,
    mut on_retry: impl FnMut(&EngineError),
) -> Result<String, EngineError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let mut retries_left = LOAD_RETRIES;
    loop {
        match load_once(program, engine, &mut write_archive) {
            Err(error) if retries_left > 0 && lost_a_layer(&error) => {
                retries_left -= 1;
                on_retry(&error);
            }
            result => return result,
        }
    }
}

/// Whether `error` is containers/storage losing a layer to a concurrent writer.
fn lost_a_layer(error: &EngineError) -> bool {
    matches!(error, EngineError::Failed { stderr, .. } if stderr.contains("layer not known"))
}

fn load_once<E>(
    program: &str,
    engine: Engine,
    write_archive: &mut impl FnMut(&mut dyn Write) -> Result<(), E>,
) -> Result<String, EngineError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let command = format!("{engine} load");
    let mut child = Command::new(program)
        .arg("load")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| spawn_error(engine, &command, source))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(EngineError::Spawn {
            command,
            source: io::Error::other("the child's pipes were not set up"),
        });
    };
    let out_reader = thread::spawn(move || read_all(stdout));
    let err_reader = thread::spawn(move || read_all(stderr));
    let written = write_archive(&mut stdin);
    drop(stdin);
    let status = child.wait().map_err(|source| EngineError::Spawn {
        command: command.clone(),
        source,
    })?;
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        return Err(EngineError::Failed {
            command,
            status,
            stderr: stderr.trim().to_owned(),
        });
    }
    written.map_err(|e| EngineError::Stream {
        command,
        source: Box::new(e),
    })?;
    Ok(stdout.trim().to_owned())
}

/// Runs `ENGINE save IMAGE` into `dest` as a docker-archive.
pub fn save(engine: Engine, image: &str, dest: &Path) -> Result<(), EngineError> {
    let mut args = vec!["save"];
    if engine == Engine::Podman {
        args.extend(["--format", "docker-archive"]);
    }
    let dest = dest.to_string_lossy();
    args.extend(["-o", &dest, image]);
    run_engine(engine, &args, &format!("{engine} save {image}")).map(drop)
}

/// The `Env` of an image in `engine`'s storage, read from its config with
/// `ENGINE image inspect`: no export of the image's layers.
pub fn image_env(engine: Engine, image: &str) -> Result<Vec<String>, EngineError> {
    let command = format!("{engine} image inspect {image}");
    let out = run_engine(
        engine,
        &[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Env}}",
            image,
        ],
        &command,
    )?;
    let env: Option<Vec<String>> =
        serde_json::from_slice(&out).map_err(|e| EngineError::BadOutput {
            command,
            detail: e.to_string(),
        })?;
    Ok(env.unwrap_or_default())
}

/// The ID `engine` gives `image` (`ENGINE image inspect --format {{.Id}}`, no
/// export), as `sha256:HEX`: the digest of its config as the engine stores it, for
/// podman and for Docker's own image store (Docker's containerd store answers with a
/// manifest digest instead).
pub fn image_id(engine: Engine, image: &str) -> Result<String, EngineError> {
    let out = run_engine(
        engine,
        &["image", "inspect", "--format", "{{.Id}}", image],
        &format!("{engine} image inspect {image}"),
    )?;
    let said = String::from_utf8_lossy(&out).trim().to_owned();
    // podman prints the bare hex, Docker `sha256:HEX`.
    Ok(if said.contains(':') {
        said
    } else {
        format!("sha256:{said}")
    })
}

/// Runs the engine's CLI and returns its standard output.
fn run_engine(engine: Engine, args: &[&str], shown: &str) -> Result<Vec<u8>, EngineError> {
    let output = Command::new(engine.program())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| spawn_error(engine, shown, source))?;
    if !output.status.success() {
        return Err(EngineError::Failed {
            command: shown.to_owned(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output.stdout)
}

fn spawn_error(engine: Engine, command: &str, source: io::Error) -> EngineError {
    if source.kind() == io::ErrorKind::NotFound {
        EngineError::NotInstalled {
            program: engine.program(),
        }
    } else {
        EngineError::Spawn {
            command: command.to_owned(),
            source,
        }
    }
}

fn read_all(mut r: impl Read) -> String {
    let mut bytes = Vec::new();
    // A read error only shortens the message shown to the user.
    let _ = r.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What an engine on this host is and can do with NVIDIA GPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineInfo {
    /// The server's version (Docker) or podman's own.
    pub version: String,
    /// Whether `--device nvidia.com/gpu=...` (CDI) works: podman 4.1 or newer;
    /// Docker when its daemon reports CDI spec folders (25+ with the `cdi`
    /// feature, on by default from 28.2).
    pub cdi: bool,
    /// Whether the legacy `nvidia` runtime is registered (Docker's `--gpus`).
    pub nvidia_runtime: bool,
}

/// Asks `engine` about itself; `None` when it is not installed or its daemon
/// does not answer.
pub fn probe(engine: Engine) -> Option<EngineInfo> {
    let run = |args: &[&str]| -> Option<String> {
        let out = Command::new(engine.program())
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    match engine {
        Engine::Docker => {
            let info: serde_json::Value =
                serde_json::from_str(&run(&["info", "--format", "{{json .}}"])?).ok()?;
            let version = info["ServerVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let cdi = info["CDISpecDirs"]
                .as_array()
                .is_some_and(|dirs| !dirs.is_empty());
            let nvidia_runtime = info["Runtimes"].get("nvidia").is_some();
            Some(EngineInfo {
                version,
                cdi,
                nvidia_runtime,
            })
        }
        Engine::Podman => {
            let version = run(&["version", "--format", "{{.Client.Version}}"])?;
            Some(EngineInfo {
                cdi: version_at_least(&version, &[4, 1]),
                version,
                nvidia_runtime: false,
            })
        }
    }
}

/// Whether a dotted version is at least `minimum`, number by number.
fn version_at_least(version: &str, minimum: &[u64]) -> bool {
    let numbers: Vec<u64> = version
        .split(['.', '-', '+'])
        .map_while(|part| part.parse().ok())
        .collect();
    numbers.as_slice() >= minimum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held by the tests that start programs. A test that writes a stand-in
    /// program and runs it must not overlap one that forks: a child forked while
    /// the stand-in is open for writing keeps it open until its exec, and running
    /// the stand-in then fails with ETXTBSY ("Text file busy").
    static STARTS_PROGRAMS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn versions_compare_number_by_number() {
        assert!(version_at_least("4.3.1", &[4, 1]));
        assert!(version_at_least("10.0", &[4, 1]));
        assert!(!version_at_least("3.4.4", &[4, 1]));
        assert!(!version_at_least("4.0.2", &[4, 1]));
        assert!(version_at_least("4.1.0-dev", &[4, 1]));
    }

    #[test]
    fn a_load_that_lost_a_layer_to_another_process_is_tried_again() {
        let _alone = STARTS_PROGRAMS.lock().unwrap_or_else(|e| e.into_inner());
        // The race in containers/storage cannot be caused on demand, so a
        // stand-in for podman answers the way podman 4.3 did in CI: the first
        // load fails with "layer not known", the next takes the archive.
        let dir = tempfile::tempdir().expect("temp dir");
        let tries = dir.path().join("tries");
        let program = dir.path().join("podman");
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\ncat > /dev/null\necho x >> {tries}\n\
                 [ \"$(wc -l < {tries})\" -ge 2 ] && {{ echo 'Loaded image: it'; exit 0; }}\n\
                 echo 'writing blob: locating layer for blob \"sha256:11\": layer not known' >&2\nexit 125\n",
                tries = tries.display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(
            &program,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let program = program.to_string_lossy().into_owned();
        let mut writes = 0;
        let mut told = Vec::new();
        let said = load_with(
            &program,
            Engine::Podman,
            |w| {
                writes += 1;
                w.write_all(b"archive")
            },
            |e| told.push(e.to_string()),
        )
        .expect("second try loads");
        assert_eq!(said, "Loaded image: it");
        assert_eq!(writes, 2, "the archive is written again for the retry");
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(told[0].contains("layer not known"), "{told:?}");

        // Any other failure is not retried.
        std::fs::write(
            &program,
            "#!/bin/sh\ncat > /dev/null\necho 'no space left' >&2\nexit 125\n",
        )
        .expect("script");
        let mut writes = 0;
        let error = load_with(
            &program,
            Engine::Podman,
            |w| {
                writes += 1;
                w.write_all(b"archive")
            },
            |_| panic!("not a retry"),
        )
        .expect_err("fails");
        assert_eq!(writes, 1);
        assert!(error.to_string().contains("no space left"), "{error}");
    }

    #[test]
    fn probes_the_engines_installed_here() {
        let _alone = STARTS_PROGRAMS.lock().unwrap_or_else(|e| e.into_inner());
        // Real engines: whatever answers must report a version.
        for engine in [Engine::Docker, Engine::Podman] {
            let info = probe(engine);
            if !gpubox_testkit::found(&engine.to_string(), info.is_some()) {
                continue;
            }
            if let Some(info) = info {
                assert!(!info.version.is_empty(), "{info:?}");
                if engine == Engine::Podman {
                    assert_eq!(info.cdi, version_at_least(&info.version, &[4, 1]));
                }
            }
        }
    }
}
