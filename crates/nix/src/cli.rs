use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::ErrorKind;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::closure::parse_path_info_json;
use crate::{Closure, NixError, PathInfo, StorePath, STORE_DIR};

/// Store paths per command line, well below any system's argument limit.
const PATHS_PER_COMMAND: usize = 500;
/// Lines of Nix's stderr kept in [`NixError::CommandFailed`]: Nix prints its
/// error last, and a failed build's log before it can be very long.
const STDERR_TAIL_LINES: usize = 60;

/// Something Nix can build or already has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Installable {
    /// An existing store path; a `.drv` path stands for its outputs.
    StorePath(StorePath),
    /// A flake reference such as `nixpkgs#hello` or `path:/src#app`.
    Flake(String),
    /// A Nix file, optionally with an attribute path, as `nix-build FILE -A ATTR`.
    File { file: PathBuf, attr: Option<String> },
}

impl fmt::Display for Installable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Installable::StorePath(path) => write!(f, "{path}"),
            Installable::Flake(reference) => f.write_str(reference),
            Installable::File { file, attr: None } => write!(f, "{}", file.display()),
            Installable::File {
                file,
                attr: Some(attr),
            } => write!(f, "{} -A {attr}", file.display()),
        }
    }
}

/// `nix store COMMAND` run against `store` (a binary cache) with `rest` after it.
fn in_store<'a>(command: &'a str, store: &'a str, rest: &[&'a OsStr]) -> Vec<&'a OsStr> {
    let mut args = [
        "store",
        command,
        "--extra-experimental-features",
        "nix-command",
        "--store",
        store,
    ]
    .map(OsStr::new)
    .to_vec();
    args.extend_from_slice(rest);
    args
}

/// Runs the Nix programs found on PATH when a method runs.
#[derive(Clone, Debug, Default)]
pub struct Nix {
    env: Vec<(OsString, OsString)>,
    /// The Nix system packages are built for, when not this machine's.
    system: Option<String>,
}

impl Nix {
    pub fn new() -> Nix {
        Nix::default()
    }

    /// Sets an environment variable for every Nix program this runs, such as
    /// `NIX_CONF_DIR` or `NIX_PATH`.
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Nix {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Builds packages for Nix `system` (`aarch64-linux`): a Nix file gets
    /// `--argstr system SYSTEM` (its function's `system` argument, where it has
    /// one), a flake installable `--option system SYSTEM` (so `nixpkgs#hello`
    /// means that system's package) with this machine's system added to
    /// `extra-platforms`. Building for a system other than this machine's
    /// needs it in Nix's `extra-platforms`, or a remote builder.
    pub fn for_system(&self, system: &str) -> Nix {
        Nix {
            system: Some(system.to_owned()),
            ..self.clone()
        }
    }

    /// Builds (or checks) what `what` names and returns its output paths in
    /// Nix's order.
    pub fn realise(&self, what: &Installable) -> Result<Vec<StorePath>, NixError> {
        match what {
            Installable::StorePath(path) => {
                self.ensure_valid(std::slice::from_ref(path))?;
                if path.name().ends_with(".drv") {
                    let args = ["--realise", path.as_str()].map(OsStr::new);
                    let out = self.run("nix-store", &args)?;
                    parse_path_lines(&out)
                } else {
                    Ok(vec![path.clone()])
                }
            }
            Installable::Flake(reference) => {
                let mut args = [
                    "build",
                    "--no-link",
                    "--json",
                    "--extra-experimental-features",
                    "nix-command flakes",
                ]
                .map(OsStr::new)
                .to_vec();
                // The other system's packages may still need this machine's
                // derivations (sources, data): `extra-extra-platforms` adds its
                // system to those Nix builds here, keeping the user's.
                let native = format!("{}-linux", std::env::consts::ARCH);
                if let Some(system) = &self.system {
                    args.extend(["--option", "system", system].map(OsStr::new));
                    args.extend(["--option", "extra-extra-platforms", &native].map(OsStr::new));
                }
                args.push(OsStr::new(reference));
                let out = self.run("nix", &args)?;
                parse_build_json(&out.stdout).map_err(|detail| out.bad(detail))
            }
            Installable::File { file, attr } => {
                let mut args = vec![file.as_os_str()];
                if let Some(attr) = attr {
                    args.extend([OsStr::new("-A"), OsStr::new(attr)]);
                }
                if let Some(system) = &self.system {
                    args.extend(["--argstr", "system", system].map(OsStr::new));
                }
                args.push(OsStr::new("--no-out-link"));
                let out = self.run("nix-build", &args)?;
                parse_path_lines(&out)
            }
        }
    }

    /// The closure of `roots`: every path they reference, transitively, with
    /// its NAR size and references.
    pub fn closure(&self, roots: &[StorePath]) -> Result<Closure, NixError> {
        self.closure_in(roots, None)
    }

    /// The closure of `roots`, where the roots this store lacks are asked of
    /// `substituter` (a binary cache: `file://`, `https://`, `s3://`), metadata
    /// only: nothing is copied. Returns the closure and its paths this store
    /// lacks.
    pub fn closure_from(
        &self,
        roots: &[StorePath],
        substituter: &str,
    ) -> Result<(Closure, BTreeSet<StorePath>), NixError> {
        let missing = self.invalid(roots)?;
        let (elsewhere, here): (Vec<StorePath>, Vec<StorePath>) = roots
            .iter()
            .cloned()
            .partition(|root| missing.contains(root));
        let mut infos: BTreeMap<StorePath, PathInfo> = BTreeMap::new();
        if !here.is_empty() {
            infos.extend(
                self.closure(&here)?
                    .paths()
                    .map(|i| (i.path.clone(), i.clone())),
            );
        }
        if elsewhere.is_empty() {
            return Ok((
                Closure::from_infos(infos.into_values().collect()),
                BTreeSet::new(),
            ));
        }
        let remote = self.closure_in(&elsewhere, Some(substituter))?;
        let candidates: Vec<StorePath> = remote
            .paths()
            .map(|info| info.path.clone())
            .filter(|path| !infos.contains_key(path))
            .collect();
        let not_here = self.invalid(&candidates)?;
        for info in remote.paths() {
            infos
                .entry(info.path.clone())
                .or_insert_with(|| info.clone());
        }
        Ok((
            Closure::from_infos(infos.into_values().collect()),
            not_here.into_iter().collect(),
        ))
    }

    /// Copies `paths` from `substituter` into this store (`nix copy --from`),
    /// with Nix's own signature checks (`require-sigs`, `trusted-public-keys`).
    pub fn fetch(&self, paths: &[StorePath], substituter: &str) -> Result<(), NixError> {
        for chunk in paths.chunks(PATHS_PER_COMMAND) {
            let mut args = [
                "copy",
                "--extra-experimental-features",
                "nix-command",
                "--from",
                substituter,
            ]
            .map(OsStr::new)
            .to_vec();
            args.extend(chunk.iter().map(|p| OsStr::new(p.as_str())));
            self.run("nix", &args)?;
        }
        Ok(())
    }

    /// Unpacks `path` as `substituter` has it into the folder `into` (which must
    /// not exist yet): `nix store dump-path` into `nix-store --restore`. The files
    /// land outside the store, which learns nothing of them and needs none of
    /// their references. Its modes are the unpacking user's, not the store's: a
    /// layer made from it takes the store's (`gpubox_oci::tar::Modes::Store`).
    pub fn unpack(&self, path: &StorePath, substituter: &str, into: &Path) -> Result<(), NixError> {
        let dump_args = in_store("dump-path", substituter, &[OsStr::new(path.as_str())]);
        let restore_args = [OsStr::new("--restore"), into.as_os_str()];
        let dump_line = command_line("nix", &dump_args);
        let restore_line = command_line("nix-store", &restore_args);
        let mut dump = Command::new("nix")
            .args(dump_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| not_started("nix", &dump_line, e))?;
        let (Some(nar), Some(mut dump_errors)) = (dump.stdout.take(), dump.stderr.take()) else {
            let _ = dump.kill();
            let _ = dump.wait();
            return Err(NixError::Io {
                action: format!("reading the output of `{dump_line}`"),
                source: std::io::Error::other("no pipe"),
            });
        };
        // Read beside the NAR, so a chatty dump never blocks on a full pipe.
        let dump_errors = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = std::io::Read::read_to_end(&mut dump_errors, &mut text);
            text
        });
        let restore = Command::new("nix-store")
            .args(restore_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(nar)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let restore = match restore {
            Ok(restore) => restore,
            Err(e) => {
                let _ = dump.kill();
                let _ = dump.wait();
                return Err(not_started("nix-store", &restore_line, e));
            }
        };
        let restored = restore.wait_with_output().map_err(|source| NixError::Io {
            action: format!("waiting for `{restore_line}`"),
            source,
        })?;
        let dumped = dump.wait().map_err(|source| NixError::Io {
            action: format!("waiting for `{dump_line}`"),
            source,
        })?;
        let dump_errors = dump_errors.join().unwrap_or_default();
        for (status, stderr, line) in [
            (dumped, dump_errors, dump_line),
            (restored.status, restored.stderr, restore_line),
        ] {
            if !status.success() {
                return Err(NixError::CommandFailed {
                    command: line,
                    status,
                    stderr: stderr_tail(&String::from_utf8_lossy(&stderr)),
                });
            }
        }
        Ok(())
    }

    /// `nix store ls --json --recursive` of `path` in `substituter`: its NAR
    /// listing, from the cache's `.ls` file where it has one, else read from
    /// its NAR; nothing is copied into this store.
    pub fn listing(&self, path: &StorePath, substituter: &str) -> Result<Value, NixError> {
        let args = in_store(
            "ls",
            substituter,
            &["--json", "--recursive", path.as_str()].map(OsStr::new),
        );
        let out = self.run("nix", &args)?;
        serde_json::from_str(&out.stdout).map_err(|e| out.bad(format!("invalid JSON: {e}")))
    }

    /// The bytes of the file `path` (inside a store path) in `substituter`
    /// (`nix store cat`), without copying its store path here.
    pub fn cat(&self, path: &Path, substituter: &str) -> Result<Vec<u8>, NixError> {
        let args = in_store("cat", substituter, &[path.as_os_str()]);
        self.run_bytes("nix", &args)
    }

    fn closure_in(&self, roots: &[StorePath], store: Option<&str>) -> Result<Closure, NixError> {
        let mut infos = BTreeMap::new();
        for chunk in roots.chunks(PATHS_PER_COMMAND) {
            let mut args = [
                "path-info",
                "--json",
                "--recursive",
                "--extra-experimental-features",
                "nix-command",
            ]
            .map(OsStr::new)
            .to_vec();
            if let Some(store) = store {
                args.extend([OsStr::new("--store"), OsStr::new(store)]);
            }
            args.extend(chunk.iter().map(|p| OsStr::new(p.as_str())));
            let out = match self.run("nix", &args) {
                Ok(out) => out,
                Err(failed @ NixError::CommandFailed { .. }) if store.is_none() => {
                    // Nix before 2.19 fails on an invalid path; say which one.
                    self.ensure_valid(chunk)?;
                    return Err(failed);
                }
                Err(other) => return Err(other),
            };
            let entries = parse_path_info_json(&out.stdout).map_err(|detail| out.bad(detail))?;
            for (path, info) in entries {
                let info = info.ok_or_else(|| NixError::PathMissing { path: path.clone() })?;
                infos.insert(path, info);
            }
            check_complete(&infos, chunk).map_err(|detail| out.bad(detail))?;
        }
        Ok(Closure::from_infos(infos.into_values().collect()))
    }

    /// Those of `paths` that the store database does not list as valid or that
    /// are absent on disk, in the order given.
    fn invalid(&self, paths: &[StorePath]) -> Result<Vec<StorePath>, NixError> {
        let mut invalid = Vec::new();
        for chunk in paths.chunks(PATHS_PER_COMMAND) {
            let mut args = ["--check-validity", "--print-invalid"]
                .map(OsStr::new)
                .to_vec();
            args.extend(chunk.iter().map(|p| OsStr::new(p.as_str())));
            let out = self.run("nix-store", &args)?;
            let listed: BTreeSet<&str> = out.stdout.lines().map(str::trim).collect();
            for path in chunk {
                if listed.contains(path.as_str()) {
                    invalid.push(path.clone());
                    continue;
                }
                match std::fs::symlink_metadata(path) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => invalid.push(path.clone()),
                    Err(source) => {
                        return Err(NixError::Io {
                            action: format!("checking that {path} exists"),
                            source,
                        })
                    }
                }
            }
        }
        Ok(invalid)
    }

    /// Fails with [`NixError::PathMissing`] for the first path that the store
    /// database does not list as valid or that is absent on disk.
    fn ensure_valid(&self, paths: &[StorePath]) -> Result<(), NixError> {
        match self.invalid(paths)?.into_iter().next() {
            Some(path) => Err(NixError::PathMissing { path }),
            None => Ok(()),
        }
    }

    /// Nix's registration data for `paths` (`nix-store --dump-db`): each path's
    /// hash, size, deriver and references, the text [`Nix::load_registration`]
    /// reads. The paths are dumped in the order given.
    pub fn registration(&self, paths: &[StorePath]) -> Result<String, NixError> {
        let mut text = String::new();
        for chunk in paths.chunks(PATHS_PER_COMMAND) {
            let mut args = vec![OsStr::new("--dump-db")];
            args.extend(chunk.iter().map(|p| OsStr::new(p.as_str())));
            text.push_str(&self.run("nix-store", &args)?.stdout);
        }
        Ok(text)
    }

    /// Registers `registration` (from [`Nix::registration`]) in a new Nix
    /// database under `root` (`root/nix/var/nix/db/db.sqlite`), as for a store
    /// whose files are copied under `root`. The files themselves are not needed.
    pub fn load_registration(&self, root: &Path, registration: &str) -> Result<(), NixError> {
        let store = format!("local?root={}", root.display());
        let args = ["--store", store.as_str(), "--load-db"].map(OsStr::new);
        self.run_with_input("nix-store", &args, Some(registration.as_bytes()))
            .map(drop)
    }

    fn run(&self, program: &str, args: &[&OsStr]) -> Result<Output, NixError> {
        self.run_with_input(program, args, None)
    }

    /// Runs `program`, giving it `input` on stdin (nothing when `None`).
    fn run_with_input(
        &self,
        program: &str,
        args: &[&OsStr],
        input: Option<&[u8]>,
    ) -> Result<Output, NixError> {
        let (command, stdout) = self.run_raw(program, args, input)?;
        match String::from_utf8(stdout) {
            Ok(stdout) => Ok(Output { command, stdout }),
            Err(_) => Err(NixError::BadOutput {
                command,
                detail: "its output is not UTF-8".to_owned(),
            }),
        }
    }

    /// Runs `program` for its standard output as bytes.
    fn run_bytes(&self, program: &str, args: &[&OsStr]) -> Result<Vec<u8>, NixError> {
        Ok(self.run_raw(program, args, None)?.1)
    }

    /// Runs `program`, giving it `input` on stdin; returns the command line (for
    /// errors) and its standard output.
    fn run_raw(
        &self,
        program: &str,
        args: &[&OsStr],
        input: Option<&[u8]>,
    ) -> Result<(String, Vec<u8>), NixError> {
        let command = command_line(program, args);
        let mut child = Command::new(program)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| not_started(program, &command, e))?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // `--load-db` prints next to nothing, so writing all of the input
            // before reading its output cannot block.
            stdin.write_all(input).map_err(|source| NixError::Io {
                action: format!("giving `{command}` its input"),
                source,
            })?;
        }
        let output = child.wait_with_output().map_err(|source| NixError::Io {
            action: format!("waiting for `{command}`"),
            source,
        })?;
        if !output.status.success() {
            return Err(NixError::CommandFailed {
                command,
                status: output.status,
                stderr: stderr_tail(&String::from_utf8_lossy(&output.stderr)),
            });
        }
        Ok((command, output.stdout))
    }
}

/// Why `program` (run as the command line `line`) did not start: not installed,
/// or what the system said.
fn not_started(program: &str, line: &str, source: std::io::Error) -> NixError {
    match source.kind() {
        ErrorKind::NotFound => NixError::NotInstalled {
            program: program.to_owned(),
        },
        _ => NixError::Io {
            action: format!("starting `{line}`"),
            source,
        },
    }
}

/// Checks that `--recursive` output holds the roots and everything referenced.
fn check_complete(
    infos: &BTreeMap<StorePath, PathInfo>,
    roots: &[StorePath],
) -> Result<(), String> {
    if let Some(root) = roots.iter().find(|root| !infos.contains_key(*root)) {
        return Err(format!("the root {root} is not in the result"));
    }
    for info in infos.values() {
        if let Some(r) = info.references.iter().find(|r| !infos.contains_key(*r)) {
            return Err(format!(
                "{} references {r}, which is not in the result",
                info.path
            ));
        }
    }
    Ok(())
}

/// A successful command's standard output, with the command line for errors.
struct Output {
    command: String,
    stdout: String,
}

impl Output {
    fn bad(&self, detail: String) -> NixError {
        NixError::BadOutput {
            command: self.command.clone(),
            detail,
        }
    }
}

/// Reads one store path per line, as `nix-build` and `nix-store --realise` print.
fn parse_path_lines(out: &Output) -> Result<Vec<StorePath>, NixError> {
    let paths = out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| StorePath::parse(line).map_err(|e| out.bad(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if paths.is_empty() {
        return Err(out.bad("it printed no store path".to_owned()));
    }
    Ok(paths)
}

/// Reads `nix build --json`: `[{"drvPath": .., "outputs": {"out": PATH, ..}}]`,
/// or `[{"path": PATH}]` for an installable that is already a store path.
/// `--print-out-paths` would be simpler but needs Nix 2.9.
fn parse_build_json(text: &str) -> Result<Vec<StorePath>, String> {
    let json: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let items = json
        .as_array()
        .ok_or_else(|| format!("expected an array, got {json}"))?;
    let mut paths = Vec::new();
    for item in items {
        if let Some(outputs) = item.get("outputs").and_then(Value::as_object) {
            paths.extend(outputs.values().map(Value::as_str));
        } else {
            paths.push(item.get("path").and_then(Value::as_str));
        }
    }
    let paths = paths
        .into_iter()
        .map(|path| {
            let path = path.ok_or_else(|| format!("an output in {json} is not a path string"))?;
            StorePath::parse(path).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    if paths.is_empty() {
        return Err(format!("no output path in {json}"));
    }
    Ok(paths)
}

/// The command as a user could paste it into a shell (arguments quoted where a
/// shell would split or expand them); every command gpubox shows is written so.
pub fn command_line(program: &str, args: &[&OsStr]) -> String {
    let mut line = program.to_owned();
    for arg in args {
        let arg = arg.to_string_lossy();
        line.push(' ');
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.+=:#@,".contains(c));
        if plain {
            line.push_str(&arg);
        } else {
            line.push('\'');
            line.push_str(&arg.replace('\'', r"'\''"));
            line.push('\'');
        }
    }
    line
}

fn stderr_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.trim().lines().collect();
    if lines.len() <= STDERR_TAIL_LINES {
        return lines.join("\n");
    }
    let omitted = lines.len() - STDERR_TAIL_LINES;
    format!(
        "({omitted} earlier lines omitted)\n{}",
        lines[omitted..].join("\n")
    )
}

impl std::str::FromStr for Installable {
    type Err = NixError;

    /// A string under the store directory is a store path (and must be a valid
    /// one); anything else is a flake reference.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with(STORE_DIR) {
            StorePath::parse(s).map(Installable::StorePath)
        } else {
            Ok(Installable::Flake(s.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app-1.0";
    const DEV: &str = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-app-1.0-dev";

    #[test]
    fn reads_nix_build_json() {
        let built = format!(
            r#"[{{"drvPath":"/nix/store/cccccccccccccccccccccccccccccccc-app.drv","outputs":{{"out":"{APP}","dev":"{DEV}"}}}}]"#
        );
        let paths: Vec<String> = parse_build_json(&built)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(paths, [DEV, APP]);
        let existing = format!(r#"[{{"path":"{APP}"}}]"#);
        assert_eq!(parse_build_json(&existing).unwrap()[0].as_str(), APP);
        assert!(parse_build_json("[]")
            .unwrap_err()
            .contains("no output path"));
        assert!(parse_build_json(r#"[{"outputs":{"out":null}}]"#)
            .unwrap_err()
            .contains("not a path string"));
    }

    #[test]
    fn quotes_command_lines_for_a_shell() {
        let args = ["build", "nix-command flakes", "it's", ""].map(OsStr::new);
        assert_eq!(
            command_line("nix", &args),
            r#"nix build 'nix-command flakes' 'it'\''s' ''"#
        );
    }

    #[test]
    fn keeps_the_end_of_long_stderr() {
        let long: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let tail = stderr_tail(&long);
        assert!(
            tail.starts_with("(40 earlier lines omitted)\nline 41\n"),
            "{tail}"
        );
        assert!(tail.ends_with("line 100"));
        assert_eq!(stderr_tail("  error: x\n\n"), "error: x");
    }

    #[test]
    fn parses_installables() {
        assert_eq!(
            "nixpkgs#hello".parse::<Installable>().unwrap(),
            Installable::Flake("nixpkgs#hello".to_owned())
        );
        assert!(matches!(
            APP.parse::<Installable>().unwrap(),
            Installable::StorePath(p) if p.as_str() == APP
        ));
        assert!(matches!(
            "/nix/store/bad".parse::<Installable>(),
            Err(NixError::InvalidStorePath { .. })
        ));
    }

    #[test]
    fn missing_program_is_not_installed() {
        let err = Nix::new()
            .with_env("PATH", "/nonexistent-gpubox-test-dir")
            .realise(&Installable::Flake("nixpkgs#hello".to_owned()))
            .unwrap_err();
        // On Unix, Command searches the PATH given to the child.
        assert!(
            matches!(&err, NixError::NotInstalled { program } if program == "nix"),
            "{err:?}"
        );
    }
}
