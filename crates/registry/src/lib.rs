//! `gpubox-registry` moves images between gpubox and the places images live
//! outside files: the Docker engine and podman's local storage (`docker load`,
//! `podman load`, `docker save`, `podman save`).
//!
//! Images travel as docker-archive streams through the engines' own CLIs, so
//! whatever socket, context or storage settings the user has configured apply
//! unchanged. It writes no image bytes itself: callers pass a function that writes
//! the archive into the stream.

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
    #[error("streaming the image into `{command}` failed: {source}")]
    Stream {
        command: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Runs `ENGINE load`, with `write_archive` writing a docker-archive into its
/// standard input. Returns what the engine printed (the loaded image's name).
pub fn load<E>(
    engine: Engine,
    write_archive: impl FnOnce(&mut dyn Write) -> Result<(), E>,
) -> Result<String, EngineError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let command = format!("{engine} load");
    let mut child = Command::new(engine.program())
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
    let mut command = Command::new(engine.program());
    command.arg("save");
    if engine == Engine::Podman {
        command.args(["--format", "docker-archive"]);
    }
    command.arg("-o").arg(dest).arg(image);
    let shown = format!("{engine} save {image}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| spawn_error(engine, &shown, source))?;
    if !output.status.success() {
        return Err(EngineError::Failed {
            command: shown,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
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
