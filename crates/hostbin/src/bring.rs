//! What a program needs besides its libraries: the files of the packages it came in.
//!
//! [`Resolver`] takes the named files one at a time (so a caller can tie each error to
//! the item that named it), resolves each one's loader and libraries, and, where a
//! package database knows the file, brings along the files of the packages the program
//! needs at run time (see the crate doc for the rule), with the libraries of the ELF
//! files among them.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::dpkg::{self, Database};
use crate::elf::{self, Abi};
use crate::{merge_into, normalize, resolve_one, HostBinError, HostFile, SystemCache};

/// Where [`Resolver`] learns which package owns a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackageDatabase {
    /// dpkg's database in this folder ([`dpkg::DEFAULT_ROOT`] on the build machine).
    Dpkg(PathBuf),
    /// None: only the named files and what the loader needs.
    Off,
}

/// What one [`Resolver::add`] brought, for the caller to report.
#[derive(Debug, Default)]
pub struct Added {
    /// The packages whose files came along (`name` or `name:arch`), sorted.
    pub packages: BTreeSet<String>,
    /// Files (and links) from them that this call added, with the libraries they need, and
    /// the bytes of those files; what an earlier call brought is not counted again.
    pub package_files: usize,
    pub package_bytes: u64,
    /// The named files no package lists, so nothing came along for them.
    pub unpackaged: Vec<PathBuf>,
    /// Set when there is no package database on this machine at all.
    pub no_database: bool,
    /// Files of the packages that will not load in the image as they are (a library they
    /// need is not on this machine): they are still copied.
    pub unloadable: Vec<HostBinError>,
    /// Files of the packages that cannot be read here, left out.
    pub unreadable: Vec<PathBuf>,
}

impl Added {
    /// Adds `other`'s facts to these (one item of a spec naming several files).
    pub fn absorb(&mut self, other: Added) {
        self.packages.extend(other.packages);
        self.package_files += other.package_files;
        self.package_bytes += other.package_bytes;
        self.unpackaged.extend(other.unpackaged);
        self.no_database |= other.no_database;
        self.unloadable.extend(other.unloadable);
        self.unreadable.extend(other.unreadable);
    }
}

enum Dpkg {
    Unopened(PathBuf),
    Open(Database),
    Absent,
}

/// Collects the files of several host programs and shared libraries for one image.
pub struct Resolver {
    cache: SystemCache,
    first: Option<(Abi, PathBuf)>,
    /// The named files, their loaders and libraries.
    named: BTreeMap<PathBuf, HostFile>,
    /// The packages' files and their libraries; the named ones win over these.
    brought: BTreeMap<PathBuf, HostFile>,
    dpkg: Dpkg,
    /// Packages whose files are already in `brought`.
    packages_done: BTreeSet<String>,
}

/// Folders of the programs on PATH: a package's other programs stay out (name them too).
const PROGRAM_DIRS: [&str; 7] = [
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/games",
    "/usr/local/bin",
    "/usr/local/sbin",
];

/// What no program needs to run: documentation and translations, and the files that
/// hook a package into the host's service managers and tools (systemd units, init
/// scripts, runit services, apport hooks, firewall profiles), which a container has none of.
const NOT_NEEDED: [&str; 16] = [
    "/usr/share/doc",
    "/usr/share/man",
    "/usr/share/info",
    "/usr/share/lintian",
    "/usr/share/locale",
    "/usr/share/bug",
    "/lib/systemd/system",
    "/lib/systemd/user",
    "/usr/lib/systemd/system",
    "/usr/lib/systemd/user",
    "/etc/init.d",
    "/etc/sv",
    "/etc/runit",
    "/usr/share/runit",
    "/usr/share/apport",
    "/etc/ufw",
];

impl Resolver {
    pub fn new(packages: PackageDatabase) -> Resolver {
        Resolver {
            cache: SystemCache::default(),
            first: None,
            named: BTreeMap::new(),
            brought: BTreeMap::new(),
            dpkg: match packages {
                PackageDatabase::Dpkg(root) => Dpkg::Unopened(root),
                PackageDatabase::Off => Dpkg::Absent,
            },
            packages_done: BTreeSet::new(),
        }
    }

    /// Adds the ELF executable or shared library `binary`, to be at `image_path`, with its
    /// loader, its libraries and the files of its packages.
    pub fn add(&mut self, binary: &Path, image_path: &Path) -> Result<Added, HostBinError> {
        let (abi, files) = resolve_one(binary, image_path, &mut self.cache)?;
        match &self.first {
            None => self.first = Some((abi, binary.to_owned())),
            Some((first_abi, first_binary)) if *first_abi != abi => {
                return Err(HostBinError::WrongArchitecture {
                    path: binary.to_owned(),
                    found: abi.to_string(),
                    expected: format!("{first_abi} (like {})", first_binary.display()),
                });
            }
            Some(_) => {}
        }
        merge_into(&mut self.named, files)?;

        let mut added = Added::default();
        if matches!(self.dpkg, Dpkg::Unopened(_)) {
            let Dpkg::Unopened(root) = std::mem::replace(&mut self.dpkg, Dpkg::Absent) else {
                unreachable!("checked just above");
            };
            if let Some(db) = Database::open(&root)? {
                self.dpkg = Dpkg::Open(db);
            }
        }
        let Dpkg::Open(db) = &mut self.dpkg else {
            added.no_database = true;
            added.unpackaged.push(binary.to_owned());
            return Ok(added);
        };
        // The package of the file itself, else of the name it was given by (a link the
        // package manager does not know, such as one made by hand).
        let canonical = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_owned());
        let mut owner = db.owner(&canonical)?.cloned();
        if owner.is_none() {
            owner = db.owner(binary)?.cloned();
        }
        let Some(owner) = owner else {
            added.unpackaged.push(binary.to_owned());
            return Ok(added);
        };
        let packages: Vec<dpkg::Package> = db.runtime_of(&owner).into_iter().cloned().collect();
        let mut lists = Vec::new();
        for package in packages {
            let name = package.qualified_name();
            added.packages.insert(name.clone());
            if self.packages_done.insert(name.clone()) {
                lists.push((name, db.list(&package)?));
            }
        }
        for (name, list) in lists {
            self.bring(&name, &list, abi, &mut added);
        }
        Ok(added)
    }

    /// The files gathered so far, sorted by image path: the named ones and, where the
    /// named ones leave a path free, the packages' ones.
    pub fn finish(self) -> Vec<HostFile> {
        let mut all = self.named;
        for (path, file) in self.brought {
            all.entry(path).or_insert(file);
        }
        all.into_values().collect()
    }

    /// Adds the files of `package` (its file list `list`) to `brought`: regular files and
    /// links, not folders, other programs or what [`NOT_NEEDED`] lists; then the libraries
    /// of the ELF files among them. Nothing here fails the build: what cannot be used is noted.
    fn bring(&mut self, package: &str, list: &[PathBuf], abi: Abi, added: &mut Added) {
        // A path with listed paths under it is a folder of the package, even where this
        // machine has a link there (merged-usr's `/lib -> usr/lib`).
        let folders: HashSet<&Path> = list.iter().filter_map(|p| p.parent()).collect();
        let mut elf_files = Vec::new();
        for listed in list {
            let image_path = normalize(listed);
            let is_program = image_path
                .parent()
                .is_some_and(|dir| PROGRAM_DIRS.iter().any(|d| dir == Path::new(d)));
            let not_needed = NOT_NEEDED.iter().any(|d| image_path.starts_with(d));
            if is_program || not_needed || folders.contains(listed.as_path()) {
                continue;
            }
            // Gone (dpkg's path-exclude, removed by hand) or unreadable: left out.
            let Ok(metadata) = std::fs::symlink_metadata(listed) else {
                continue;
            };
            let file = if metadata.file_type().is_symlink() {
                let Ok(target) = std::fs::read_link(listed) else {
                    added.unreadable.push(listed.clone());
                    continue;
                };
                HostFile {
                    image_path,
                    source: listed.clone(),
                    mode: 0o777,
                    link: Some(target),
                    brought_by: Some(package.to_owned()),
                }
            } else if metadata.is_file() {
                let (Ok(source), Ok(mut opened)) =
                    (std::fs::canonicalize(listed), std::fs::File::open(listed))
                else {
                    added.unreadable.push(listed.clone());
                    continue;
                };
                let mut magic = [0u8; 4];
                if opened.read_exact(&mut magic).is_ok() && magic == *b"\x7fELF" {
                    elf_files.push((listed.clone(), image_path.clone()));
                }
                HostFile {
                    image_path,
                    source,
                    mode: metadata.permissions().mode() & 0o7777,
                    link: None,
                    brought_by: Some(package.to_owned()),
                }
            } else {
                continue;
            };
            self.keep(file, added);
        }
        for (host_path, image_path) in elf_files {
            // Objects files, other architectures' helpers: copied, not loaded.
            let loadable = matches!(
                elf::read(&host_path),
                Ok(Some(object)) if object.is_loadable() && object.abi == abi
            );
            if !loadable {
                continue;
            }
            match resolve_one(&host_path, &image_path, &mut self.cache) {
                Ok((_, files)) => {
                    for mut file in files {
                        file.brought_by = Some(package.to_owned());
                        self.keep(file, added);
                    }
                }
                Err(error) => added.unloadable.push(error),
            }
        }
    }

    /// Puts a brought file in, unless a named or earlier brought one holds its path.
    fn keep(&mut self, file: HostFile, added: &mut Added) {
        if self.named.contains_key(&file.image_path) || self.brought.contains_key(&file.image_path)
        {
            return;
        }
        added.package_files += 1;
        if file.link.is_none() {
            added.package_bytes += std::fs::metadata(&file.source).map_or(0, |m| m.len());
        }
        self.brought.insert(file.image_path.clone(), file);
    }
}
