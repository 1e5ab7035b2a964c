//! The secrets step, with agenix's meaning: a tmpfs at the plan's mount point, each
//! start decrypting every secret into a fresh numbered generation folder there (owner,
//! group and mode set before the file appears), each secret's `path` a link to its file
//! (or a copy), then older generations removed.
//!
//! Plaintext never reaches a disk. Where mounting is refused (a default Docker or
//! podman container has no CAP_SYS_ADMIN), the mount point is used as it is when it is
//! on a tmpfs or ramfs already; otherwise it becomes a link to a private folder on
//! `/dev/shm` ([`SHARED_MEMORY_FOLDER`], root's, mode 0751), the tmpfs Docker, podman
//! and Kubernetes give every container. When `/dev/shm` is not a tmpfs either, or that
//! folder is not one the init made (`/dev/shm` is world-writable: a link or someone
//! else's folder planted there is refused), the step fails instead.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use age::armor::ArmoredReader;
use gpubox_initplan::{SecretPlan, SecretsPlan};

use super::files;
use super::{root_path, PathError};
use crate::accounts::{self, AccountError};

/// An identity (`AGE-SECRET-KEY-1...`, an SSH private key) or the path of a file
/// holding one, tried before the plan's identity paths.
pub const IDENTITY_VARIABLE: &str = gpubox_initplan::variables::AGE_IDENTITY;
/// Where the plaintext goes when no tmpfs can be mounted: `/dev/shm`, checked to be a
/// tmpfs, and the init's own folder on it, which the mount point then links to.
const SHARED_MEMORY: &str = "/dev/shm";
const SHARED_MEMORY_FOLDER: &str = "/dev/shm/gpubox-secrets";
const TMPFS_MAGIC: libc::c_long = 0x0102_1994;
const RAMFS_MAGIC: libc::c_long = 0x8584_58f6;
/// The tmpfs's own mode: anyone may reach a secret they own, nobody but root lists them.
const MOUNT_MODE: u32 = 0o751;

type Identities = Vec<Box<dyn age::Identity + Send + Sync>>;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("cannot mount a tmpfs at {} for the decrypted secrets: {error}; {}", path.display(), memory_hint(mount_point))]
    Mount {
        path: PathBuf,
        mount_point: String,
        error: io::Error,
    },
    #[error("cannot mount a tmpfs at {} for the decrypted secrets ({error}) nor keep them in {SHARED_MEMORY_FOLDER} instead: {reason}; {}", path.display(), memory_hint(mount_point))]
    NoMemory {
        path: PathBuf,
        mount_point: String,
        error: io::Error,
        reason: SharedMemoryError,
    },
    #[error("{IDENTITY_VARIABLE} is neither an age identity (AGE-SECRET-KEY-1...), an SSH private key, nor a file holding one: {reason}")]
    IdentityVariable { reason: String },
    #[error("cannot decrypt secret `{name}` from {}: {reason}", file.display())]
    Decrypt {
        name: String,
        file: PathBuf,
        reason: String,
    },
    #[error("secret name `{name}` is not a plain relative path; rename it (no leading `/`, no `..`), since it names the file in the secrets tmpfs")]
    Name { name: String },
    #[error("cannot give secret `{name}` to its owner: {source}")]
    Owner { name: String, source: AccountError },
}

/// What to do when no tmpfs can be had for the image's `mount_point`.
fn memory_hint(mount_point: &str) -> String {
    format!("give the container CAP_SYS_ADMIN (`--cap-add SYS_ADMIN`) or a tmpfs at the mount point (`--tmpfs {mount_point}:mode=0751`): secrets are never decrypted to disk")
}

/// Why the folder on `/dev/shm` cannot stand in for a tmpfs.
#[derive(Debug, thiserror::Error)]
pub enum SharedMemoryError {
    #[error("{} is not a tmpfs", path.display())]
    NotMemory { path: PathBuf },
    #[error("{} is a link or a file, or a folder the init's user does not own; something else put it in the world-writable /dev/shm: remove it", path.display())]
    Planted { path: PathBuf },
    #[error(transparent)]
    Path(#[from] PathError),
}

/// Runs the step.
pub fn run(plan: &SecretsPlan) -> Result<(), SecretsError> {
    let mount_point = root_path(&plan.mount_point);
    provide_memory(&mount_point, &plan.mount_point)?;
    let identities = identities(plan)?;
    let (generation, older) = next_generation(&mount_point)?;
    files::create_dir(&generation, MOUNT_MODE).map_err(PathError::new(
        "create the secrets generation folder",
        &generation,
    ))?;
    let generation_in_image =
        Path::new(&plan.mount_point).join(generation.file_name().unwrap_or_default());
    for secret in &plan.secrets {
        match decrypt(secret, &identities) {
            Ok(plaintext) => install(secret, &plaintext, &generation, &generation_in_image)?,
            Err(error) if secret.optional => {
                notice!("skipping optional secret: {error}");
            }
            Err(error) => return Err(error),
        }
    }
    for old in older {
        std::fs::remove_dir_all(&old)
            .map_err(PathError::new("remove an older secrets generation", &old))?;
    }
    Ok(())
}

/// Makes the mount point `path` (`mount_point` in the image) a folder in memory: a
/// tmpfs mounted there unless one already is (an earlier start, or `--tmpfs`); where
/// mounting is refused, the folder as it is when it is on a tmpfs already, else a link
/// to [`SHARED_MEMORY_FOLDER`].
fn provide_memory(path: &Path, mount_point: &str) -> Result<(), SecretsError> {
    // A link is what an earlier start that fell back to /dev/shm left; the choice is
    // made afresh, as the folder it names went with that start's /dev/shm.
    if std::fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_symlink()) {
        std::fs::remove_file(path).map_err(PathError::new(
            "remove the earlier link at the secrets mount point",
            path,
        ))?;
    }
    files::create_dir_all(path, MOUNT_MODE)
        .map_err(PathError::new("create the secrets mount point", path))?;
    if is_memory_filesystem(path) && is_mount_point(path) {
        return Ok(());
    }
    let error = match mount_tmpfs(path) {
        Ok(()) => return Ok(()),
        Err(error) => error,
    };
    if !matches!(error.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
        return Err(SecretsError::Mount {
            path: path.to_owned(),
            mount_point: mount_point.to_owned(),
            error,
        });
    }
    if is_memory_filesystem(path) {
        debug!(
            "not permitted to mount a tmpfs at {}; it is on one already",
            path.display()
        );
        return Ok(());
    }
    match link_to_shared_memory(path, mount_point) {
        Ok(()) => {
            debug!(
                "not permitted to mount a tmpfs at {} ({error}); it links to {SHARED_MEMORY_FOLDER}",
                path.display()
            );
            Ok(())
        }
        Err(reason) => Err(SecretsError::NoMemory {
            path: path.to_owned(),
            mount_point: mount_point.to_owned(),
            error,
            reason,
        }),
    }
}

/// Mounts a tmpfs with [`MOUNT_MODE`] at `path`.
fn mount_tmpfs(path: &Path) -> io::Result<()> {
    let target = CString::new(path.as_os_str().as_bytes())
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    let options = format!("mode={MOUNT_MODE:o}\0");
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let mounted = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options.as_ptr().cast(),
        )
    };
    if mounted == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Replaces the (empty) mount point `path` with a link to [`SHARED_MEMORY_FOLDER`],
/// made when missing, once `/dev/shm` is known to be a tmpfs and the folder the
/// init's own. The link is relative, like the secrets' links, so it resolves whatever
/// root the image is seen under.
fn link_to_shared_memory(path: &Path, mount_point: &str) -> Result<(), SharedMemoryError> {
    let shared_memory = root_path(SHARED_MEMORY);
    if !is_memory_filesystem(&shared_memory) {
        return Err(SharedMemoryError::NotMemory {
            path: shared_memory,
        });
    }
    let folder = root_path(SHARED_MEMORY_FOLDER);
    // Made with its mode or not at all: an existing entry is checked instead, without
    // following a link. /dev/shm is sticky, so once checked nobody else can replace it.
    match files::create_dir(&folder, MOUNT_MODE) {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        result => result.map_err(PathError::new("create the secrets folder", &folder))?,
    }
    let metadata = std::fs::symlink_metadata(&folder)
        .map_err(PathError::new("read the secrets folder", &folder))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let own_user = unsafe { libc::geteuid() };
    if !metadata.is_dir() || metadata.uid() != own_user {
        return Err(SharedMemoryError::Planted { path: folder });
    }
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(MOUNT_MODE))
        .map_err(PathError::new("make the secrets folder private", &folder))?;
    std::fs::remove_dir(path).map_err(PathError::new(
        "replace the secrets mount point (it must be empty) by a link to the secrets folder",
        path,
    ))?;
    let target = relative_to(
        Path::new(SHARED_MEMORY_FOLDER),
        Path::new(mount_point).parent().unwrap_or(Path::new("/")),
    );
    files::symlink_atomic(&target, path)
        .map_err(PathError::new("link the secrets mount point", path))?;
    Ok(())
}

/// Whether `path` is on a tmpfs or ramfs, whose files live in memory only.
fn is_memory_filesystem(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills the zeroed struct; the path is NUL-terminated.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stats) } != 0 {
        return false;
    }
    // The field's integer type differs between targets.
    let kind = stats.f_type as libc::c_long;
    kind == TMPFS_MAGIC || kind == RAMFS_MAGIC
}

/// Whether a file system is mounted at `path` (its device differs from its parent's).
fn is_mount_point(path: &Path) -> bool {
    match (std::fs::metadata(path), std::fs::metadata(path.join(".."))) {
        (Ok(here), Ok(parent)) => here.dev() != parent.dev(),
        _ => false,
    }
}

/// The next generation folder (one above the highest there) and the older ones.
fn next_generation(mount_point: &Path) -> Result<(PathBuf, Vec<PathBuf>), SecretsError> {
    let entries = std::fs::read_dir(mount_point)
        .map_err(PathError::new("read the secrets mount point", mount_point))?;
    let older: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let number = entry.file_name().to_str()?.parse().ok()?;
            Some((number, entry.path()))
        })
        .collect();
    let next = older
        .iter()
        .map(|(number, _)| number + 1)
        .max()
        .unwrap_or(1);
    Ok((
        mount_point.join(next.to_string()),
        older.into_iter().map(|(_, path)| path).collect(),
    ))
}

/// `AGE_IDENTITY` first, then the plan's identity paths that exist.
fn identities(plan: &SecretsPlan) -> Result<Identities, SecretsError> {
    let mut identities = Identities::new();
    if let Some(value) = std::env::var(IDENTITY_VARIABLE)
        .ok()
        .filter(|value| !value.trim().is_empty())
    {
        let (text, source) = if looks_like_identity(&value) {
            // Environments that hold one line per variable (vast.ai's template `env`)
            // carry line breaks as a literal `\n`, which no identity contains.
            (value.replace("\\n", "\n"), IDENTITY_VARIABLE.to_owned())
        } else {
            let path = root_path(value.trim());
            let text =
                std::fs::read_to_string(&path).map_err(|error| SecretsError::IdentityVariable {
                    reason: format!("cannot read {}: {error}", path.display()),
                })?;
            (text, path.display().to_string())
        };
        identities.extend(
            parse_identity(&text, &source)
                .map_err(|reason| SecretsError::IdentityVariable { reason })?,
        );
    }
    for identity_path in &plan.identity_paths {
        let path = root_path(identity_path);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                debug!("no identity file {}", path.display());
                continue;
            }
            Err(error) => {
                notice!("cannot read identity file {}: {error}", path.display());
                continue;
            }
        };
        match parse_identity(&text, &path.display().to_string()) {
            Ok(found) => identities.extend(found),
            Err(reason) => notice!("not using identity file {}: {reason}", path.display()),
        }
    }
    Ok(identities)
}

fn looks_like_identity(text: &str) -> bool {
    text.contains("AGE-SECRET-KEY-") || text.contains("-----BEGIN")
}

/// The identities in an age identity file or an SSH private key; `source` names it.
fn parse_identity(text: &str, source: &str) -> Result<Identities, String> {
    if text.contains("AGE-SECRET-KEY-") {
        return age::IdentityFile::from_buffer(text.as_bytes())
            .and_then(|file| {
                file.into_identities()
                    .map_err(|error| io::Error::other(error.to_string()))
            })
            .map_err(|error| format!("not a valid age identity file: {error}"));
    }
    match age::ssh::Identity::from_buffer(text.as_bytes(), Some(source.to_owned())) {
        Ok(age::ssh::Identity::Unencrypted(key)) => {
            Ok(vec![Box::new(age::ssh::Identity::Unencrypted(key))])
        }
        Ok(age::ssh::Identity::Encrypted(_)) => {
            Err("it is a passphrase-protected SSH key, which the init cannot unlock".to_owned())
        }
        Ok(age::ssh::Identity::Unsupported(_)) => {
            Err("it is an SSH key of a type age cannot use (use ed25519 or rsa)".to_owned())
        }
        Err(_) => Err("neither an age identity nor an SSH private key".to_owned()),
    }
}

fn decrypt(secret: &SecretPlan, identities: &Identities) -> Result<Vec<u8>, SecretsError> {
    let file = root_path(&secret.file);
    let fail = |reason: String| SecretsError::Decrypt {
        name: secret.name.clone(),
        file: file.clone(),
        reason,
    };
    if identities.is_empty() {
        return Err(fail(format!(
            "no identity to decrypt with: set {IDENTITY_VARIABLE} or provide one of `age.identityPaths` (by default the SSH host keys)"
        )));
    }
    let ciphertext = std::fs::read(&file).map_err(|error| fail(error.to_string()))?;
    let decryptor = age::Decryptor::new_buffered(ArmoredReader::new(ciphertext.as_slice()))
        .map_err(|error| fail(error.to_string()))?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|identity| identity.as_ref() as _))
        .map_err(|error| {
            fail(format!(
                "{error} (is it encrypted to this machine's host key or {IDENTITY_VARIABLE}?)"
            ))
        })?;
    let mut plaintext = Vec::new();
    reader
        .read_to_end(&mut plaintext)
        .map_err(|error| fail(error.to_string()))?;
    Ok(plaintext)
}

/// Writes the plaintext into the generation folder with its owner and mode, then puts
/// a link to it (or a copy) at the secret's path.
fn install(
    secret: &SecretPlan,
    plaintext: &[u8],
    generation: &Path,
    generation_in_image: &Path,
) -> Result<(), SecretsError> {
    // An absolute name or `..` would put the plaintext outside the tmpfs.
    let name = Path::new(&secret.name);
    if secret.name.is_empty() || !name.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(SecretsError::Name {
            name: secret.name.clone(),
        });
    }
    let account =
        accounts::resolve(&format!("{}:{}", secret.owner, secret.group)).map_err(|source| {
            SecretsError::Owner {
                name: secret.name.clone(),
                source,
            }
        })?;
    let owner = Some((account.uid, account.gid));
    let decrypted = generation.join(name);
    if let Some(parent) = decrypted.parent() {
        files::create_dir_all(parent, MOUNT_MODE)
            .map_err(PathError::new("create a secrets folder", parent))?;
    }
    files::write_atomic(&decrypted, plaintext, secret.mode, owner)
        .map_err(PathError::new("write decrypted secret", &decrypted))?;
    let path = root_path(&secret.path);
    if let Some(parent) = path.parent() {
        files::create_dir_all(parent, 0o755)
            .map_err(PathError::new("create the folder", parent))?;
    }
    if secret.symlink {
        let target = relative_to(
            &generation_in_image.join(&secret.name),
            Path::new(&secret.path).parent().unwrap_or(Path::new("/")),
        );
        files::symlink_atomic(&target, &path).map_err(PathError::new("link secret", &path))?;
    } else {
        files::write_atomic(&path, plaintext, secret.mode, owner)
            .map_err(PathError::new("write secret", &path))?;
    }
    Ok(())
}

/// `target` as seen from the folder `from` (both absolute paths in the image), so the
/// link resolves whatever root the image is seen under.
fn relative_to(target: &Path, from: &Path) -> PathBuf {
    let target: Vec<Component> = target.components().collect();
    let from: Vec<Component> = from.components().collect();
    let common = target.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut relative = PathBuf::new();
    for _ in common..from.len() {
        relative.push("..");
    }
    for component in &target[common..] {
        relative.push(component);
    }
    relative
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative_to_the_folder_they_are_in() {
        assert_eq!(
            relative_to(Path::new("/run/agenix.d/3/db"), Path::new("/run/agenix")),
            Path::new("../agenix.d/3/db")
        );
        assert_eq!(
            relative_to(Path::new("/run/agenix.d/3/db"), Path::new("/")),
            Path::new("run/agenix.d/3/db")
        );
        assert_eq!(
            relative_to(Path::new("/run/s/1/x"), Path::new("/etc/app/conf")),
            Path::new("../../../run/s/1/x")
        );
    }

    #[test]
    fn a_name_that_leaves_the_generation_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["../escape", "/etc/passwd", "", "sub/../../escape"] {
            let secret = SecretPlan {
                name: name.to_owned(),
                file: "/secrets/x.age".to_owned(),
                path: "/run/agenix/x".to_owned(),
                mode: 0o400,
                owner: "root".to_owned(),
                group: "root".to_owned(),
                symlink: true,
                optional: false,
            };
            let error = install(
                &secret,
                b"plaintext",
                dir.path(),
                Path::new("/run/agenix.d/1"),
            );
            assert!(matches!(error, Err(SecretsError::Name { .. })), "{name:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn generations_count_up_from_the_highest() {
        let dir = tempfile::tempdir().unwrap();
        let (first, older) = next_generation(dir.path()).unwrap();
        assert_eq!(first, dir.path().join("1"));
        assert!(older.is_empty());
        for name in ["1", "7", "not-a-generation"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        let (next, mut older) = next_generation(dir.path()).unwrap();
        older.sort();
        assert_eq!(next, dir.path().join("8"));
        assert_eq!(older, [dir.path().join("1"), dir.path().join("7")]);
    }

    #[test]
    fn an_identity_that_is_neither_age_nor_ssh_is_refused() {
        let error = parse_identity("hello", "AGE_IDENTITY").err().unwrap();
        assert!(error.contains("neither"), "{error}");
        let age_key = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX";
        assert_eq!(parse_identity(age_key, "test").unwrap().len(), 1);
    }
}
