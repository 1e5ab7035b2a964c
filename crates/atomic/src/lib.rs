//! `gpubox-atomic` owns how gpubox replaces a file: the one atomic-write helper
//! of the workspace ([`PendingFile`], [`write()`], [`write_bytes`]) and the names
//! of files that are still being written ([`partial`]).
//!
//! A file is written under a pending name in the folder it goes to (or a folder
//! on the same file system), given its mode and owner, synced, and renamed over
//! the destination; the folder is synced after the rename. Readers see the old
//! file or the new one, never half of one, and a write that fails or is dropped
//! removes its pending file. What it must not do: choose where files go, or know
//! what is in them; callers map its [`Error`] to their own errors.
//!
//! It is our own code rather than the `tempfile` crate for two reasons. It is
//! linked into `gpubox-init`, the static PID 1, which should carry std and little
//! else. And pending names are deterministic (`.gpubox-partial-<pid>-<n>`, see
//! [`partial`]), not random: after an interrupt the CLI removes exactly its own
//! unfinished files by that prefix, a layer cache collection recognises anyone's,
//! and an init started again as PID 1 finds what its last start left.
//!
//! ```
//! use std::io::Write;
//! use gpubox_atomic::{write, write_bytes, Options, PendingFile};
//!
//! # fn main() -> Result<(), gpubox_atomic::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let folder = dir.path();
//! // Bytes known up front, with an exact mode:
//! write_bytes(&folder.join("motd"), &Options::new().mode(0o644), b"hello\n")?;
//!
//! // Written through a closure; its error type only needs `From<Error>`:
//! write(&folder.join("list"), &Options::new(), |file| {
//!     writeln!(file, "one")?;
//!     writeln!(file, "two")
//! })
//! .map_err(std::io::Error::from)
//! .unwrap();
//!
//! // Streamed first and named once its content is known (a blob by digest):
//! let mut pending = PendingFile::new_in(folder, &Options::new().sync(false))?;
//! pending.file_mut().write_all(b"blob").map_err(|e| pending.error("write", e))?;
//! pending.commit_to(&folder.join("digest-of-blob"))?;
//! # assert_eq!(std::fs::read(folder.join("motd")).unwrap(), b"hello\n");
//! # assert_eq!(std::fs::read(folder.join("digest-of-blob")).unwrap(), b"blob");
//! # assert_eq!(std::fs::read_dir(folder).unwrap().count(), 3);
//! # Ok(())
//! # }
//! ```

pub mod partial;

use std::fmt;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of a pending file while it is written, when the final mode is chosen:
/// private until [`PendingFile::commit`] gives it its mode and owner.
const PRIVATE_MODE: u32 = 0o600;

/// Mode a file is created with when none is chosen; the umask applies.
const DEFAULT_MODE: u32 = 0o644;

/// How a file is written: its mode, its owner, and whether it is synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    mode: Option<u32>,
    owner: Option<(u32, u32)>,
    sync: bool,
}

impl Options {
    /// Mode 0644 less the umask (as a new file gets), the writer's owner, synced.
    pub const fn new() -> Options {
        Options {
            mode: None,
            owner: None,
            sync: true,
        }
    }

    /// Exactly `mode`, whatever the umask. The file is private (0600) until it
    /// is committed, then gets `mode` after its owner.
    pub const fn mode(self, mode: u32) -> Options {
        Options {
            mode: Some(mode),
            ..self
        }
    }

    /// The `(uid, gid)` the file is given before it is renamed into place;
    /// `None` keeps the writer's own.
    pub const fn owner(self, owner: Option<(u32, u32)>) -> Options {
        Options { owner, ..self }
    }

    /// Whether the file and then its folder are synced (`fsync`) when committed
    /// (the default). Without, the rename is still atomic for readers, but a
    /// machine crash may leave an empty or missing file: for stores that check
    /// their content on every use, where the cost matters more.
    pub const fn sync(self, sync: bool) -> Options {
        Options { sync, ..self }
    }
}

impl Default for Options {
    fn default() -> Options {
        Options::new()
    }
}

/// Why a file could not be written: what was being done, to which path.
#[derive(Debug)]
pub struct Error {
    action: &'static str,
    path: PathBuf,
    source: io::Error,
}

impl Error {
    /// An error of `action` (e.g. `"write"`) on `path`.
    pub fn new(action: &'static str, path: &Path, source: io::Error) -> Error {
        Error {
            action,
            path: path.to_owned(),
            source,
        }
    }

    /// The error the system gave.
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }

    /// The action, the path and the system's error, for callers that keep
    /// them in their own error type.
    pub fn into_parts(self) -> (&'static str, PathBuf, io::Error) {
        (self.action, self.path, self.source)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.action,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The system's error as it was (its `raw_os_error` kept), for callers that
/// name the path in their own message; the action and path are dropped.
impl From<Error> for io::Error {
    fn from(error: Error) -> io::Error {
        error.source
    }
}

/// A file being written under a pending name ([`partial::unique_name`]), to be
/// renamed into place by [`commit`](PendingFile::commit) or
/// [`commit_to`](PendingFile::commit_to). Dropped without either, it is removed.
#[derive(Debug)]
pub struct PendingFile {
    file: File,
    path: PathBuf,
    destination: Option<PathBuf>,
    options: Options,
    committed: bool,
}

impl PendingFile {
    /// A pending file in the folder of `destination`, which [`commit`]
    /// replaces. A missing folder is an error that names it.
    ///
    /// [`commit`]: PendingFile::commit
    pub fn new(destination: &Path, options: &Options) -> Result<PendingFile, Error> {
        let mut pending =
            PendingFile::create(folder_of(destination), options).map_err(|e| {
                match e.source.kind() {
                    io::ErrorKind::NotFound => Error::new("write", destination, e.source),
                    _ => e,
                }
            })?;
        pending.destination = Some(destination.to_owned());
        Ok(pending)
    }

    /// A pending file in `folder`, for content whose name is known only once it
    /// is written; [`commit_to`](PendingFile::commit_to) names it. `folder`
    /// must be on the destination's file system.
    pub fn new_in(folder: &Path, options: &Options) -> Result<PendingFile, Error> {
        PendingFile::create(folder, options)
    }

    fn create(folder: &Path, options: &Options) -> Result<PendingFile, Error> {
        let mode = match options.mode {
            Some(_) => PRIVATE_MODE,
            None => DEFAULT_MODE,
        };
        let created = partial::create_unique(folder, "", |path| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(path)
        });
        match created {
            Ok((path, file)) => Ok(PendingFile {
                file,
                path,
                destination: None,
                options: *options,
                committed: false,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !folder.is_dir() => {
                let missing = io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "the folder {} does not exist; create it first",
                        folder.display()
                    ),
                );
                Err(Error::new("create a file in", folder, missing))
            }
            Err(e) => Err(Error::new("create a file in", folder, e)),
        }
    }

    /// Where the content is being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn file_mut(&mut self) -> &mut File {
        &mut self.file
    }

    /// An [`Error`] of `action` on this pending file, for failures while
    /// writing it.
    pub fn error(&self, action: &'static str, source: io::Error) -> Error {
        Error::new(action, &self.path, source)
    }

    /// Renames the file over the destination given to [`PendingFile::new`];
    /// see [`commit_to`](PendingFile::commit_to).
    pub fn commit(self) -> Result<(), Error> {
        match self.destination.clone() {
            Some(destination) => self.commit_to(&destination),
            None => Err(self.error(
                "commit",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "it was made without a destination; commit it with commit_to",
                ),
            )),
        }
    }

    /// Gives the file its owner and mode, syncs it, renames it to
    /// `destination` (replacing what is there) and syncs the destination's
    /// folder. On an error before the rename, the pending file is removed and
    /// `destination` is left as it was.
    pub fn commit_to(mut self, destination: &Path) -> Result<(), Error> {
        if let Some((uid, gid)) = self.options.owner {
            std::os::unix::fs::fchown(&self.file, Some(uid), Some(gid))
                .map_err(|e| self.error("give its owner to", e))?;
        }
        if let Some(mode) = self.options.mode {
            // After the owner: chown clears set-user-ID and set-group-ID bits.
            self.file
                .set_permissions(Permissions::from_mode(mode))
                .map_err(|e| self.error("set the permissions of", e))?;
        }
        if self.options.sync {
            self.file.sync_all().map_err(|e| self.error("sync", e))?;
        }
        std::fs::rename(&self.path, destination)
            .map_err(|e| Error::new("move the finished file to", destination, e))?;
        self.committed = true;
        if self.options.sync {
            sync_folder(folder_of(destination))?;
        }
        Ok(())
    }
}

impl Write for PendingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the error that led here is the one to report.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes `path` through a [`PendingFile`]: `fill` writes the content, then it
/// is committed. When `fill` fails, the pending file is removed, `path` is left
/// as it was and `fill`'s error is returned.
pub fn write<T, E: From<Error>>(
    path: &Path,
    options: &Options,
    fill: impl FnOnce(&mut File) -> Result<T, E>,
) -> Result<T, E> {
    let mut pending = PendingFile::new(path, options)?;
    let value = fill(pending.file_mut())?;
    pending.commit()?;
    Ok(value)
}

/// Writes `bytes` to `path` through a [`PendingFile`].
pub fn write_bytes(path: &Path, options: &Options, bytes: &[u8]) -> Result<(), Error> {
    let mut pending = PendingFile::new(path, options)?;
    pending
        .file_mut()
        .write_all(bytes)
        .map_err(|e| pending.error("write", e))?;
    pending.commit()
}

/// Makes renames inside `folder` durable.
pub fn sync_folder(folder: &Path) -> Result<(), Error> {
    File::open(folder)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::new("sync the folder", folder, e))
}

/// The folder `path` is in; `.` for a bare name.
pub fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failed_fill_leaves_nothing_and_the_old_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        fs::write(&target, "old").unwrap();
        let result: Result<(), io::Error> = write(&target, &Options::new(), |file| {
            file.write_all(b"partial")?;
            Err(io::Error::other("stopped"))
        });
        assert_eq!(result.unwrap_err().to_string(), "stopped");
        assert_eq!(names(dir.path()), ["out"]);
        assert_eq!(fs::read(&target).unwrap(), b"old");

        write_bytes(&target, &Options::new(), b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["out"]);
    }

    #[test]
    fn a_missing_folder_is_named_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/out.tar");
        let error = write_bytes(&missing, &Options::new(), b"x").unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains(&dir.path().join("no/such").display().to_string())
                && text.contains("create it first")
                && text.contains("out.tar"),
            "{text}"
        );
        assert_eq!(error.io_error().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn the_mode_is_exact_and_applied_only_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("key");
        let pending = PendingFile::new(&target, &Options::new().mode(0o640)).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(pending.path()), 0o600);
        pending.commit().unwrap();
        assert_eq!(mode(&target), 0o640);

        // The writer's own owner is always allowed.
        let (uid, gid) = {
            let meta = fs::metadata(&target).unwrap();
            (meta.uid(), meta.gid())
        };
        let options = Options::new().mode(0o4755).owner(Some((uid, gid)));
        write_bytes(&target, &options, b"x").unwrap();
        assert_eq!(mode(&target), 0o4755);
    }

    #[test]
    fn a_pending_file_is_named_as_partial_and_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let pending = PendingFile::new_in(dir.path(), &Options::new()).unwrap();
        let name = pending.path().file_name().unwrap().to_string_lossy();
        assert!(name.starts_with(&partial::prefix()), "{name}");
        drop(pending);
        assert!(names(dir.path()).is_empty());

        let pending = PendingFile::new_in(dir.path(), &Options::new()).unwrap();
        let error = pending.commit().unwrap_err();
        assert_eq!(error.io_error().kind(), io::ErrorKind::InvalidInput);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn streamed_content_is_named_when_done() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("tmp");
        let blobs = dir.path().join("blobs");
        fs::create_dir_all(&staging).unwrap();
        fs::create_dir_all(&blobs).unwrap();
        let mut pending = PendingFile::new_in(&staging, &Options::new().sync(false)).unwrap();
        pending.write_all(b"content").unwrap();
        pending.commit_to(&blobs.join("abc")).unwrap();
        assert_eq!(fs::read(blobs.join("abc")).unwrap(), b"content");
        assert!(names(&staging).is_empty());
    }

    /// EROFS on Linux, without a libc dependency.
    const EROFS: i32 = 30;

    #[test]
    fn io_errors_keep_the_system_error() {
        let error = Error::new(
            "write",
            Path::new("/x"),
            io::Error::from_raw_os_error(EROFS),
        );
        assert_eq!(error.to_string().split(':').next(), Some("cannot write /x"));
        assert_eq!(io::Error::from(error).raw_os_error(), Some(EROFS));
    }
}
