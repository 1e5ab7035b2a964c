//! `gpubox-rootfs` decides what goes into gpubox's own layers above the closure: the files gpubox
//! generates (base `/etc` files, runtime folders, `gpubox-init`, links into the
//! closure) and the user's own files (`copyToRoot`, `hostBinaries`).
//!
//! It returns a sorted list of [`Entry`] values, the [`Part`] (layer) each goes
//! to, and the environment variables the generated files imply (`SSL_CERT_FILE`,
//! `LOCALE_ARCHIVE`); it writes nothing.
//!
//! Precedence, so that the result never depends on the order sources are listed:
//! - the user's sources must agree with each other: two of them writing the same
//!   path differently, or one putting files under a path another made a file or a
//!   symlink, is an error naming both;
//! - generated files are defaults: a user source that writes the same path wins
//!   (a custom `/etc/passwd`, say), and a generated file whose folder a user source
//!   made a symlink is left out.
//!
//! Accounts (`accounts.rs`, the one place that makes them):
//! - gpubox needs `root` (0), `nobody`/`nogroup` (65534), every `users.<name>`
//!   (its uid, gid, primary group, home and shell as the spec gives them), the
//!   spec's `user` when it is a name (not a uid, not `NAME:GROUP`, not root or
//!   nobody) that no `users.<name>` lists, and with `ssh.enable` the `sshd`
//!   privilege-separation account (home `/var/empty`).
//! - The spec's `user` and `sshd` get the first id, from 1000 and from 74 up, that
//!   no account or group of the base and no `users.<name>` uses; their primary
//!   group is the group of their name where one exists, else a new one with the
//!   uid as gid. A supplementary group (`users.<name>.groups`) that no group has
//!   becomes one with the first free id from 1000, listing its members.
//! - Without a base, gpubox writes `/etc/passwd`, `/etc/group` and `/etc/shadow`
//!   with these. On a base image ([`assemble_over`]) the base's three files are
//!   kept line for line: gpubox appends only the accounts and groups whose name
//!   the file lacks, and a shadow entry for each account it appends to passwd
//!   (creating `/etc/shadow` when the base has none). The spec's `user` or `sshd`
//!   that the base has is the base's, and so is a group the base has (a member
//!   `users.<name>.groups` names for it is not added). A file missing nothing is
//!   not written, so the base's shows through untouched.
//! - Shadow entries have `*` as password: no password logs in, SSH keys still do
//!   (`!` would make sshd refuse the account).
//! - Each `users.<name>`, and the spec's `user` when gpubox adds it, gets a home
//!   folder it owns, which the start-up plan also lists.
//! - Owners and users the spec names (`age.secrets.*.owner`/`group`,
//!   `services.*.user`) must be in the passwd and group files the image ends up
//!   with: the top layer's, else the base's.
//!
//! Otherwise on a base image:
//! - a base's `/etc/nsswitch.conf` is never replaced.
//! - the base's files arrive with their links already followed inside the base
//!   (`gpubox-build` does it), so a NixOS-style `/etc/passwd -> static/passwd` is
//!   read where it leads, and a merged file replaces the link with a file.
//! - where the base has something gpubox cannot extend (a file that is not
//!   UTF-8 or over 1 MiB), it is left untouched (the build log says so).
//!
//! The machine keys (`machine.rs`): when the spec asks `gpubox-init` for anything
//! (accounts, SSH, secrets, tailscale, services, `home`, a start-up script), the
//! top layer gets the start-up plan at [`gpubox_initplan::PLAN_PATH`] and the files
//! it names, and [`Rootfs::user`] is root while the plan's main user is the spec's
//! `user`, so the init can do what needs root before dropping to it.

mod accounts;
mod base;
mod machine;
mod nixdb;
mod tree;

pub use accounts::home_of;
pub use base::BASE_ACCOUNT_FILES;

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

use gpubox_hostbin::HostFile;
use gpubox_initplan::InitPlan;
use gpubox_nix::{Closure, StoreFs, StorePath};
use gpubox_oci::entry::BadImagePath;
use gpubox_oci::source::LayerFile;
use gpubox_oci::tar::{walk, Modes, WalkError, WalkOptions};
use gpubox_oci::{Entry, EntryKind, FileSource, ImagePath};
use gpubox_spec::{CopyToRoot, MachineSpec};

use accounts::Accounts;
use base::ClosureSearch;
pub use machine::MachineError;
pub use nixdb::{nix_db, NixDb, NixDbError};
use tree::Tree;
pub use tree::{Origin, Part};

/// Everything the top layer is made from.
pub struct RootfsInput<'a> {
    /// The whole closure, searched for a shell, CA certificates, locales and
    /// `/etc/services`.
    pub closure: &'a Closure,
    /// Where what is inside the closure's paths is read: on disk, or a binary
    /// cache's listings for paths this machine lacks.
    pub store_fs: &'a StoreFs,
    /// The top-level packages: their `bin` and `sbin` programs get links in
    /// `/usr/local/bin` and `/usr/local/sbin`.
    pub packages: &'a [StorePath],
    pub copy_to_root: &'a [CopyToRoot],
    pub host_files: &'a [HostFile],
    /// The `gpubox-init` executable, placed at `/bin/gpubox-init`.
    pub init: Arc<[u8]>,
    pub user: &'a str,
    pub working_dir: &'a str,
    pub image_name: &'a str,
    pub image_tag: &'a str,
    /// Where the NVIDIA driver's libraries appear at run time, for
    /// `/etc/ld.so.conf.d`; empty when the image is not GPU-ready (`cuda.enable`
    /// false), which also leaves `/sbin/ldconfig` out.
    pub driver_library_dirs: &'a [&'a str],
    /// The spec's machine keys (accounts, SSH, secrets, services, ...); see
    /// `machine.rs` for the files and the start-up plan they give.
    pub machine: &'a MachineSpec,
    /// The realised `home` package, in the closure.
    pub home: Option<&'a StorePath>,
    /// The Nix database for `nix.enable`, from [`nix_db`].
    pub nix_db: Option<&'a NixDb>,
}

/// The top layer's entries, sorted, and the environment they imply.
#[derive(Debug)]
pub struct Rootfs {
    pub entries: Vec<Entry>,
    /// The layer each entry goes to: `parts[i]` is `entries[i]`'s.
    pub parts: Vec<Part>,
    pub env: BTreeMap<String, String>,
    /// The start-up plan written at [`gpubox_initplan::PLAN_PATH`], when the spec
    /// asks `gpubox-init` for anything.
    pub plan: Option<InitPlan>,
    /// The image config's `User`: root when the plan needs root before dropping
    /// to the spec's user (the plan's `mainUser`), else the `user` given.
    pub user: String,
}

/// Why the top layer could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    // Not a `source`: its message is in this one, shown once.
    #[error("{origin}: {error}")]
    Walk { origin: Origin, error: WalkError },
    #[error("{origin}: {source}")]
    BadPath {
        origin: Origin,
        source: BadImagePath,
    },
    #[error(
        "{path} is written twice, differently: by {first} and by {second}; \
         remove one of them or make them agree"
    )]
    Conflict {
        path: ImagePath,
        first: Box<Origin>,
        second: Box<Origin>,
    },
    #[error(
        "{second} puts {path} inside {blocker}, which {first} makes a {blocker_kind}; \
         change one of them"
    )]
    NotADirectory {
        path: ImagePath,
        blocker: ImagePath,
        blocker_kind: &'static str,
        first: Box<Origin>,
        second: Box<Origin>,
    },
    #[error("cannot read {path} ({origin}): {source}")]
    Unreadable {
        path: PathBuf,
        origin: Origin,
        source: std::io::Error,
    },
    #[error(
        "the programs {name} of {first} and {second} would both be linked at {link}; \
         keep one of the two packages in systemPackages"
    )]
    ProgramClash {
        name: String,
        link: ImagePath,
        first: StorePath,
        second: StorePath,
    },
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error(transparent)]
    NixDb(#[from] NixDbError),
}

impl RootfsError {
    /// The `copyToRoot` item the error is about (the later one of two that
    /// disagree), so the caller can point at it in the spec.
    pub fn copy_to_root_index(&self) -> Option<usize> {
        let origin = match self {
            RootfsError::Walk { origin, .. }
            | RootfsError::BadPath { origin, .. }
            | RootfsError::Unreadable { origin, .. } => origin,
            RootfsError::Conflict { second, .. } | RootfsError::NotADirectory { second, .. } => {
                second
            }
            RootfsError::ProgramClash { .. } | RootfsError::Machine(_) | RootfsError::NixDb(_) => {
                return None
            }
        };
        match origin {
            Origin::CopyToRoot { index, .. } => Some(*index),
            Origin::HostBinaries { .. } | Origin::Init | Origin::Generated => None,
        }
    }
}

/// Assembles the top layer of an image without a base.
pub fn assemble(input: &RootfsInput<'_>) -> Result<Rootfs, RootfsError> {
    assemble_over(input, &BTreeMap::new())
}

/// Assembles the top layer of an image on a base image, whose files at
/// [`BASE_ACCOUNT_FILES`] (as its layers leave them, by path without the
/// leading `/`) are `base_files`; see the crate doc for what is kept.
pub fn assemble_over(
    input: &RootfsInput<'_>,
    base_files: &BTreeMap<String, LayerFile>,
) -> Result<Rootfs, RootfsError> {
    let mut tree = Tree::default();
    for (index, item) in input.copy_to_root.iter().enumerate() {
        let origin = Origin::CopyToRoot {
            index,
            src: item.src.clone(),
        };
        add_copy(&mut tree, item, &origin)?;
    }
    // The named programs and their libraries first; then the files their packages
    // brought along, which give way to any user file at their path.
    let (named, brought): (Vec<&HostFile>, Vec<&HostFile>) = input
        .host_files
        .iter()
        .partition(|file| file.brought_by.is_none());
    for file in named {
        let (entry, origin) = host_entry(file)?;
        tree.insert(entry, origin)?;
    }
    for file in brought {
        let (entry, origin) = host_entry(file)?;
        tree.insert_unless_taken(entry, origin);
    }
    let accounts = Accounts::generate(input.user, input.machine, base_files);
    accounts.add_to(&mut tree)?;
    // One search order serves the generated links and the machine's programs.
    let search = ClosureSearch::new(input);
    let env = base::add_generated(&mut tree, input, &search, base_files)?;
    let plan = machine::add_machine(&mut tree, input, &search, base_files, &accounts.homes)?;
    let (entries, parts) = tree.into_entries();
    Ok(Rootfs {
        entries,
        parts,
        env,
        plan,
        user: machine::config_user(input.machine, input.user).0,
    })
}

/// The entry a `hostBinaries` file makes: its bytes, or a link where it is one.
fn host_entry(file: &HostFile) -> Result<(Entry, Origin), RootfsError> {
    let origin = Origin::HostBinaries {
        src: file.source.clone(),
    };
    let path = image_path(&file.image_path.to_string_lossy(), &origin)?;
    if let Some(target) = &file.link {
        return Ok((Entry::symlink(path, target.as_os_str().as_bytes()), origin));
    }
    let size = std::fs::metadata(&file.source)
        .map_err(|source| RootfsError::Unreadable {
            path: file.source.clone(),
            origin: origin.clone(),
            source,
        })?
        .len();
    let entry = Entry {
        path,
        kind: EntryKind::File {
            source: FileSource::Path(file.source.clone()),
            size,
        },
        mode: file.mode & 0o7777,
        uid: 0,
        gid: 0,
    };
    Ok((entry, origin))
}

fn image_path(raw: &str, origin: &Origin) -> Result<ImagePath, RootfsError> {
    ImagePath::new(raw).map_err(|source| RootfsError::BadPath {
        origin: origin.clone(),
        source,
    })
}

fn add_copy(tree: &mut Tree, item: &CopyToRoot, origin: &Origin) -> Result<(), RootfsError> {
    let options = WalkOptions {
        modes: Modes::all_or_on_disk(item.mode),
        uid: item.uid.unwrap_or(0),
        gid: item.gid.unwrap_or(0),
        hard_links: true,
    };
    if item.dst.trim_end_matches(['/', '.']).is_empty() {
        // A folder merged at `/` (nix2container's copyToRoot of a package):
        // each of its entries at the top of the image, in name order.
        let unreadable = |source| RootfsError::Unreadable {
            path: item.src.clone(),
            origin: origin.clone(),
            source,
        };
        let mut names = std::fs::read_dir(&item.src)
            .and_then(|entries| {
                entries
                    .map(|entry| entry.map(|entry| entry.file_name()))
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(unreadable)?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let dst = ImagePath::new(name.as_bytes()).map_err(|source| RootfsError::BadPath {
                origin: origin.clone(),
                source,
            })?;
            add_walk(tree, &item.src.join(&name), dst, &options, origin)?;
        }
        return Ok(());
    }
    add_walk(
        tree,
        &item.src,
        image_path(&item.dst, origin)?,
        &options,
        origin,
    )
}

/// Adds `src` and everything under it at `dst`.
fn add_walk(
    tree: &mut Tree,
    src: &std::path::Path,
    dst: ImagePath,
    options: &WalkOptions,
    origin: &Origin,
) -> Result<(), RootfsError> {
    for entry in walk(src, dst, options) {
        let entry = entry.map_err(|error| RootfsError::Walk {
            origin: origin.clone(),
            error,
        })?;
        // Checked now so an unreadable file stops the build before any layer is
        // written, with the user's item named.
        if let EntryKind::File {
            source: FileSource::Path(file),
            ..
        } = &entry.kind
        {
            std::fs::File::open(file).map_err(|source| RootfsError::Unreadable {
                path: file.clone(),
                origin: origin.clone(),
                source,
            })?;
        }
        tree.insert(entry, origin.clone())?;
    }
    Ok(())
}
