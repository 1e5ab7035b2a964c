//! What the kernel needs, besides the file itself, to start a program: a script's `#!`
//! interpreter or an ELF file's loader (`PT_INTERP`). `execve` fails with `ENOENT` when
//! either is missing, the same error as for a missing program, so both the build's check
//! of what an image runs and `gpubox-init`'s message on a failed start ask this.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::HostBinError;

/// How many bytes of a `#!` line Linux reads (`BINPRM_BUF_SIZE`, 256 since 5.1).
const SHEBANG_LIMIT: usize = 256;

/// How the kernel starts a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// A `#!` script: the kernel runs `interpreter [argument] FILE`.
    Script {
        interpreter: PathBuf,
        /// The rest of the `#!` line, one argument as Linux passes it.
        argument: Option<String>,
    },
    /// An ELF file; `loader` is its `PT_INTERP` (none when statically linked).
    Elf { loader: Option<PathBuf> },
    /// Neither: `execve` refuses it (`ENOEXEC`), or a shell would run it as a script.
    Unknown,
}

/// How the kernel would start the file at `path` on this machine.
pub fn launcher(path: &Path) -> Result<Launcher, HostBinError> {
    let io = |source| HostBinError::Io {
        path: path.to_owned(),
        source,
    };
    let mut head = Vec::with_capacity(SHEBANG_LIMIT);
    std::fs::File::open(path)
        .map_err(io)?
        .take(SHEBANG_LIMIT as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    if head.starts_with(b"#!") {
        return Ok(script_launcher(&head));
    }
    Ok(elf_launcher(crate::elf::read(path)?))
}

/// [`launcher`] of a file whose bytes are in memory (read from a binary cache, say);
/// `path` names it in errors.
pub fn launcher_of(bytes: &[u8], path: &Path) -> Result<Launcher, HostBinError> {
    if bytes.starts_with(b"#!") {
        return Ok(script_launcher(bytes));
    }
    Ok(elf_launcher(crate::elf::read_bytes(bytes, path)?))
}

/// An ELF file's launcher (its loader), or [`Launcher::Unknown`] for a file that is
/// not ELF.
fn elf_launcher(object: Option<crate::elf::ElfObject>) -> Launcher {
    match object {
        Some(object) => Launcher::Elf {
            loader: object.interpreter,
        },
        None => Launcher::Unknown,
    }
}

/// The launcher of a file starting with `head` (its first bytes): a script's
/// interpreter, or [`Launcher::Unknown`] for anything else, ELF included (its loader
/// needs the whole file: see [`launcher`]).
pub fn script_launcher(head: &[u8]) -> Launcher {
    let Some(line) = head.strip_prefix(b"#!") else {
        return Launcher::Unknown;
    };
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let trimmed = |bytes: &[u8]| -> Vec<u8> {
        let start = bytes.iter().position(|b| !matches!(b, b' ' | b'\t'));
        let end = bytes
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r'));
        match (start, end) {
            (Some(start), Some(end)) => bytes[start..=end].to_vec(),
            _ => Vec::new(),
        }
    };
    let line = trimmed(line);
    let split = line.iter().position(|b| matches!(b, b' ' | b'\t'));
    let (interpreter, argument) = match split {
        Some(at) => (&line[..at], Some(trimmed(&line[at..]))),
        None => (&line[..], None),
    };
    if interpreter.is_empty() {
        return Launcher::Unknown;
    }
    Launcher::Script {
        interpreter: PathBuf::from(OsStr::from_bytes(interpreter)),
        argument: argument
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(&a).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shebang_line_gives_the_interpreter_and_one_argument() {
        assert_eq!(
            script_launcher(b"#! /usr/bin/env  python3 -u \r\nprint(1)\n"),
            Launcher::Script {
                interpreter: "/usr/bin/env".into(),
                argument: Some("python3 -u".to_owned()),
            }
        );
        assert_eq!(
            script_launcher(b"#!/bin/sh\n"),
            Launcher::Script {
                interpreter: "/bin/sh".into(),
                argument: None,
            }
        );
        assert_eq!(script_launcher(b"#!   \n"), Launcher::Unknown);
        assert_eq!(script_launcher(b"echo hi\n"), Launcher::Unknown);
    }

    #[test]
    fn this_machines_programs_have_their_launchers() {
        let Launcher::Elf {
            loader: Some(loader),
        } = launcher(Path::new("/bin/ls")).unwrap()
        else {
            panic!("/bin/ls is a dynamically linked ELF program here");
        };
        assert!(loader.to_string_lossy().contains("ld-linux"), "{loader:?}");
        let script = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(script.path(), "#!/bin/sh -e\nexit 0\n").unwrap();
        assert_eq!(
            launcher(script.path()).unwrap(),
            Launcher::Script {
                interpreter: "/bin/sh".into(),
                argument: Some("-e".to_owned()),
            }
        );
    }
}
