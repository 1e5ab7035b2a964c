//! `gpubox-hostbin`: works out which files of the build machine an image needs so that a
//! binary built there (not with Nix) runs in it: the executable, its ELF interpreter and every
//! shared library glibc's dynamic loader would open, at the paths the loader opens them.
//!
//! This crate only computes the list ([`resolve`], [`resolve_all`], [`Resolver`]); it copies
//! nothing and writes nothing. Layer building and the rest of the image belong to other crates. Its ELF
//! reader is the workspace's only one; [`soname`] offers it to the crates that need a soname.
//!
//! The search follows glibc's `ld.so` (`elf/dl-load.c`), breadth-first over all loaded objects:
//! a name containing `/` is used as written; otherwise `DT_RPATH` of the requesting object and
//! of each object up the loading chain (skipped when the requester has `DT_RUNPATH`), then the
//! requester's `DT_RUNPATH`, then `/etc/ld.so.cache`, then the default folders. A file of
//! another ELF class or machine is passed over and the search goes on, as `ld.so` does.
//!
//! Deliberate differences from the loader running on the build machine:
//! - `LD_LIBRARY_PATH` and `LD_PRELOAD` are ignored: they are the build machine's environment,
//!   not part of the binary, and will not be set in the image.
//! - glibc-hwcaps variants (`glibc-hwcaps/x86-64-v3/...`, hwcap cache entries) are skipped: they
//!   depend on the build machine's CPU, not the one the image will run on.
//! - Relative `DT_RPATH`/`DT_RUNPATH` entries (and empty ones, meaning `.`) are skipped: they
//!   name the working directory at run time, which cannot be known here.
//! - Libraries opened with `dlopen` at run time (NSS modules, `libcuda`) are not seen.
//! - `$PLATFORM` expands to the architecture name (`x86_64`, `aarch64`, `i686`), not a
//!   CPU-specific platform string. `$LIB` expands to `lib/<multiarch triplet>` when the build
//!   machine has `/lib/<triplet>` (Debian and Ubuntu build glibc that way) and otherwise to
//!   `lib64` (64-bit) or `lib` (32-bit), as Fedora-style glibc does.
//!
//! `$ORIGIN` is expanded twice: against the object's folder on the build machine (to find the
//! file) and against its folder in the image (to know where the image's loader will look), so
//! an executable placed at another `image_path` brings its `$ORIGIN`-relative libraries along.
//! Image paths are normalised lexically ([`normalize`]: `bin/../lib` becomes `lib`).
//!
//! When a library is found through `/etc/ld.so.cache` in a folder the loader does not search
//! by default (such as `/usr/local/lib`), the cache file itself is part of the result: without
//! it the image's loader would not look there.
//!
//! A shared library named directly (no `PT_INTERP`, some `DT_NEEDED`) gets its libraries the
//! same way, as the loader would find them for a program without RPATH that maps it; the
//! program that loads it brings the loader. [`expand_pattern`] turns a `*`/`?`/`[...]`
//! pattern into the files it matches, each then named on its own at its own path.
//!
//! # What comes along from the packages
//!
//! A program needs more than its libraries: `/usr/bin/python3` alone dies with
//! `No module named 'encodings'`. Where the build machine's package database knows the file
//! (Debian's dpkg, read directly by [`dpkg`]), [`Resolver`] also brings the files of the
//! packages it runs with. The rule ([`dpkg::Database::runtime_of`]):
//!
//! 1. the package that lists the file (its links resolved first; on merged-usr either name);
//! 2. when that package is the `-minimal` or `-base` part of a split, the installed package of
//!    the stem's name from the same source package (`python3.11-minimal` -> `python3.11`,
//!    `perl-base` -> `perl`): the split exists so that the minimal part can be essential,
//!    and the full package is what users run;
//! 3. what those depend on (`Depends`, `Pre-Depends`), transitively, among the installed
//!    packages built from the same source package; other sources (libc6, libssl3) are other
//!    projects, whose libraries the ELF search finds where they are needed;
//! 4. leaving out development, documentation, debugging and tooling packages (`-dev`, `-doc`,
//!    `-dbg`, `-dbgsym`, `-venv`, `-examples`, `-tests`, `-testsuite`).
//!
//! For Debian 12's `/usr/bin/python3` (a link to `python3.11`, listed by
//! `python3.11-minimal`) that is `python3.11-minimal`, `python3.11`, `libpython3.11-minimal`
//! (`encodings`, `lib-dynload`'s `_ssl`) and `libpython3.11-stdlib` (`json`, `http`,
//! `sqlite3`, `ctypes`), and not `libpython3.11` (the embedding library, which the
//! interpreter does not load) or `python3.11-venv`.
//!
//! Of each package's list: regular files (with their modes) and links (as links, with the
//! target as written) at the listed paths; not folders (a listed path with listed paths under
//! it is a folder, even where this machine has a link there), not the package's other
//! programs on PATH (`bin`/`sbin` folders: name those too), not documentation, translations
//! or service-manager files (systemd units, init scripts), not files gone from this machine
//! (dpkg's `path-exclude`). The ELF files among them (`lib-dynload/*.so`, helpers in
//! `/usr/lib/openssh`) get their libraries resolved too; one whose library this machine lacks
//! is still copied, and reported. The named files win over brought ones at the same path, and
//! [`HostFile::brought_by`] lets the image's other sources win over them too.
//!
//! A file no package lists (built in the project, installed by hand, a machine without
//! dpkg) gets its loader and libraries only; [`Added`] says so, so the build can tell the
//! user what may be missing.

mod bring;
pub mod dpkg;
mod elf;
mod glob;
mod launch;
pub mod ldcache;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

pub use crate::bring::{Added, PackageDatabase, Resolver};
pub use crate::elf::{machine as elf_machine, soname};
use crate::elf::{Abi, ElfObject};
pub use crate::glob::{expand as expand_pattern, is_pattern};
pub use crate::launch::{launcher, launcher_of, script_launcher, Launcher};

/// One file the image needs: put the bytes of `source` (a real file on the build machine,
/// symlinks already resolved) at `image_path` (absolute path in the image) with permission
/// bits `mode`; or, when `link` is set, a symbolic link to `link` (then `source` is the link
/// on the build machine and `mode` 0o777).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostFile {
    pub image_path: PathBuf,
    pub source: PathBuf,
    pub mode: u32,
    pub link: Option<PathBuf>,
    /// For the files [`Resolver`] brings along beside the named ones: the Debian package
    /// (`name` or `name:arch`) whose file list brought it (its own file, or a library one of
    /// its files needs). `None` for the named files and their loader and libraries. A brought
    /// file gives way to the user's own files at the same path.
    pub brought_by: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HostBinError {
    #[error(
        "{path} is not an ELF executable or shared library; copy scripts and data with copyToRoot"
    )]
    NotElf { path: PathBuf },
    #[error("{path} does not exist on this machine; check the path (hostBinaries copies files of the machine that builds), or give a bare command name to look it up on PATH")]
    NotFound { path: PathBuf },
    #[error("no file on this machine matches {pattern}; check the pattern (`*`, `?` and `[...]` match within one folder level)")]
    NoMatch { pattern: PathBuf },
    #[error("{pattern} is a pattern, and the files it matches keep their own paths in the image; leave out `dst`, or name one file")]
    PatternWithDestination { pattern: PathBuf },
    #[error(transparent)]
    Dpkg(#[from] dpkg::DpkgError),
    #[error("{path} is built for {found}, but {expected} is needed; rebuild it for {expected} or leave it out")]
    WrongArchitecture {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(
        "{library}, needed by {needed_by}, was not found in: {}; install it on the build machine or add its folder to the RUNPATH of {needed_by}",
        display_paths(searched)
    )]
    LibraryNotFound {
        library: String,
        needed_by: PathBuf,
        searched: Vec<PathBuf>,
    },
    #[error("cannot read {path}: {source}; check that it exists and is readable")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a usable ELF file: {detail}; the dynamic loader would refuse it too")]
    BadElf { path: PathBuf, detail: String },
    #[error("image path {path} for {binary} is not absolute; give a path starting with /")]
    RelativeImagePath { binary: PathBuf, path: PathBuf },
    #[error(
        "two different files would go to {image_path} in the image: {first} and {second}; give the binaries image paths that do not collide"
    )]
    ImagePathConflict {
        image_path: PathBuf,
        first: PathBuf,
        second: PathBuf,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(no folder: the binary disables the default search)".to_owned();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything needed to run `binary` from `image_path` (where the executable goes in the
/// image; the libraries go to the paths the loader opens on this machine). Result sorted by
/// image_path, no duplicates; includes the executable itself.
pub fn resolve(binary: &Path, image_path: &Path) -> Result<Vec<HostFile>, HostBinError> {
    let mut cache = SystemCache::default();
    let (_, files) = resolve_one(binary, image_path, &mut cache)?;
    merge(files)
}

/// The same for several `(binary, image_path)` pairs at once, merged and de-duplicated (two
/// binaries needing the same library list it once). All binaries must share one architecture.
pub fn resolve_all(binaries: &[(PathBuf, PathBuf)]) -> Result<Vec<HostFile>, HostBinError> {
    let mut cache = SystemCache::default();
    let mut first: Option<(Abi, &Path)> = None;
    let mut files = Vec::new();
    for (binary, image_path) in binaries {
        let (abi, binary_files) = resolve_one(binary, image_path, &mut cache)?;
        match first {
            None => first = Some((abi, binary)),
            Some((first_abi, first_binary)) if first_abi != abi => {
                return Err(HostBinError::WrongArchitecture {
                    path: binary.clone(),
                    found: abi.to_string(),
                    expected: format!("{first_abi} (like {})", first_binary.display()),
                });
            }
            Some(_) => {}
        }
        files.extend(binary_files);
    }
    merge(files)
}

/// Sorts by image path and drops repeats; two different sources for one path are an error.
fn merge(files: Vec<HostFile>) -> Result<Vec<HostFile>, HostBinError> {
    let mut by_path: BTreeMap<PathBuf, HostFile> = BTreeMap::new();
    merge_into(&mut by_path, files)?;
    Ok(by_path.into_values().collect())
}

/// Adds `files` to `by_path`, dropping repeats; two different sources for one path are an
/// error.
fn merge_into(
    by_path: &mut BTreeMap<PathBuf, HostFile>,
    files: Vec<HostFile>,
) -> Result<(), HostBinError> {
    for file in files {
        match by_path.get(&file.image_path) {
            Some(existing) if existing.source != file.source => {
                return Err(HostBinError::ImagePathConflict {
                    image_path: file.image_path,
                    first: existing.source.clone(),
                    second: file.source,
                });
            }
            Some(_) => {}
            None => {
                by_path.insert(file.image_path.clone(), file);
            }
        }
    }
    Ok(())
}

/// Per-architecture facts glibc compiles into `ld.so`.
struct Arch {
    triplet: &'static str,
    /// `ld.so.cache` flags of this ABI (glibc `_DL_CACHE_DEFAULT_ID`).
    cache_flags: i32,
    platform: &'static str,
}

const SUPPORTED: &str = "64-bit x86_64, 64-bit aarch64 or 32-bit i386 (all little-endian)";

fn arch_of(abi: Abi) -> Option<Arch> {
    if abi.big_endian {
        return None;
    }
    match (abi.class64, abi.machine) {
        (true, object::elf::EM_X86_64) => Some(Arch {
            triplet: "x86_64-linux-gnu",
            cache_flags: 0x0303,
            platform: "x86_64",
        }),
        (true, object::elf::EM_AARCH64) => Some(Arch {
            triplet: "aarch64-linux-gnu",
            cache_flags: 0x0a03,
            platform: "aarch64",
        }),
        (false, object::elf::EM_386) => Some(Arch {
            triplet: "i386-linux-gnu",
            cache_flags: 0x0003,
            platform: "i686",
        }),
        _ => None,
    }
}

/// `/etc/ld.so.cache`, read on first use and shared by all binaries of one call.
#[derive(Default)]
struct SystemCache {
    entries: Option<Vec<ldcache::CacheEntry>>,
}

impl SystemCache {
    fn entries(&mut self) -> &[ldcache::CacheEntry] {
        // glibc silently ignores a missing or malformed cache; so does the simulation of it.
        self.entries.get_or_insert_with(|| {
            std::fs::read(ldcache::SYSTEM_CACHE)
                .ok()
                .and_then(|data| ldcache::parse(&data).ok())
                .unwrap_or_default()
        })
    }
}

/// One object in the simulated link map.
struct Loaded {
    /// Path as opened on the build machine (its folder is `$ORIGIN` there).
    host_path: PathBuf,
    /// Path the image's loader opens (its folder is `$ORIGIN` there).
    image_path: PathBuf,
    elf: ElfObject,
    /// The object whose `DT_NEEDED` loaded this one (glibc `l_loader`), for RPATH inheritance.
    loader: Option<usize>,
    /// Names it was requested by or opened as (glibc `l_libname`/`l_name`).
    names: Vec<OsString>,
    file_id: FileId,
}

/// A file that exists where the search looked.
struct Candidate {
    host_path: PathBuf,
    image_path: PathBuf,
}

/// Device and inode: how ld.so tells that two paths are one file.
type FileId = (u64, u64);

/// A usable library and where it was found.
struct Found {
    candidate: Candidate,
    elf: ElfObject,
    file_id: FileId,
}

enum Probe {
    Missing,
    OtherAbi(Abi),
    Usable(ElfObject, FileId),
}

struct Session<'a> {
    abi: Abi,
    arch: Arch,
    lib_dir: String,
    default_dirs: Vec<PathBuf>,
    cache: &'a mut SystemCache,
    objects: Vec<Loaded>,
    files: Vec<HostFile>,
    needs_cache_file: bool,
}

fn resolve_one(
    binary: &Path,
    image_path: &Path,
    cache: &mut SystemCache,
) -> Result<(Abi, Vec<HostFile>), HostBinError> {
    if !image_path.is_absolute() {
        return Err(HostBinError::RelativeImagePath {
            binary: binary.to_owned(),
            path: image_path.to_owned(),
        });
    }
    let image_path = normalize(image_path);
    // glibc takes the executable's $ORIGIN from /proc/self/exe, i.e. with symlinks resolved.
    let host_path = std::fs::canonicalize(binary).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            HostBinError::NotFound {
                path: binary.to_owned(),
            }
        } else {
            HostBinError::Io {
                path: binary.to_owned(),
                source,
            }
        }
    })?;
    let exe = elf::read(&host_path)?.ok_or_else(|| HostBinError::NotElf {
        path: binary.to_owned(),
    })?;
    if !exe.is_loadable() {
        return Err(HostBinError::BadElf {
            path: binary.to_owned(),
            detail: format!(
                "ELF type {} is neither an executable nor a shared object",
                exe.elf_type
            ),
        });
    }
    let abi = exe.abi;
    let exe_file = host_file(image_path.clone(), &host_path)?;
    let interpreter = exe.interpreter.clone();
    if interpreter.is_none() && exe.needed.is_empty() {
        // Static: the kernel runs it directly and nothing else is loaded.
        return Ok((abi, vec![exe_file]));
    }
    // Without `PT_INTERP` but with `DT_NEEDED`: a shared library, whose libraries are found
    // as for any object the loader maps; the program that loads it brings the loader.
    let arch = arch_of(abi).ok_or_else(|| HostBinError::WrongArchitecture {
        path: binary.to_owned(),
        found: abi.to_string(),
        expected: SUPPORTED.to_owned(),
    })?;

    let lib_dir = if Path::new("/lib").join(arch.triplet).is_dir() {
        format!("lib/{}", arch.triplet)
    } else if abi.class64 {
        "lib64".to_owned()
    } else {
        "lib".to_owned()
    };
    let mut default_dirs = vec![
        PathBuf::from("/lib").join(arch.triplet),
        PathBuf::from("/usr/lib").join(arch.triplet),
    ];
    if abi.class64 {
        default_dirs.extend([PathBuf::from("/lib64"), PathBuf::from("/usr/lib64")]);
    }
    default_dirs.extend([PathBuf::from("/lib"), PathBuf::from("/usr/lib")]);

    let mut session = Session {
        abi,
        arch,
        lib_dir,
        default_dirs,
        cache,
        objects: Vec::new(),
        files: vec![exe_file],
        needs_cache_file: false,
    };
    if let Some(interpreter) = &interpreter {
        session.load_interpreter(interpreter, binary)?;
    }
    session.load_all(exe, host_path, image_path)?;
    if session.needs_cache_file {
        let cache_path = PathBuf::from(ldcache::SYSTEM_CACHE);
        session
            .files
            .push(host_file(cache_path.clone(), &cache_path)?);
    }
    Ok((abi, session.files))
}

impl Session<'_> {
    /// The `PT_INTERP` file, at exactly that path; its soname then satisfies `DT_NEEDED`
    /// entries such as libc's `ld-linux-x86-64.so.2` without a search.
    fn load_interpreter(&mut self, interpreter: &Path, binary: &Path) -> Result<(), HostBinError> {
        if !interpreter.is_absolute() {
            return Err(HostBinError::BadElf {
                path: binary.to_owned(),
                detail: format!(
                    "its interpreter {} is a relative path, resolved against the working directory at run time",
                    interpreter.display()
                ),
            });
        }
        let not_found = || HostBinError::LibraryNotFound {
            library: interpreter.display().to_string(),
            needed_by: binary.to_owned(),
            searched: vec![interpreter.to_owned()],
        };
        match self.probe(interpreter)? {
            Probe::Missing => Err(not_found()),
            Probe::OtherAbi(found) => Err(HostBinError::WrongArchitecture {
                path: interpreter.to_owned(),
                found: found.to_string(),
                expected: self.abi.to_string(),
            }),
            Probe::Usable(elf, file_id) => {
                self.files
                    .push(host_file(interpreter.to_owned(), interpreter)?);
                self.objects.push(Loaded {
                    host_path: interpreter.to_owned(),
                    image_path: normalize(interpreter),
                    elf,
                    loader: None,
                    names: vec![interpreter.as_os_str().to_owned()],
                    file_id,
                });
                Ok(())
            }
        }
    }

    /// Breadth-first over the executable and everything it pulls in, like `_dl_map_object_deps`.
    fn load_all(
        &mut self,
        exe: ElfObject,
        host_path: PathBuf,
        image_path: PathBuf,
    ) -> Result<(), HostBinError> {
        let file_id = file_id(&host_path)?;
        self.objects.push(Loaded {
            host_path,
            image_path,
            elf: exe,
            loader: None,
            // glibc names the main map "", so only its soname can match a request.
            names: Vec::new(),
            file_id,
        });
        let mut queue = std::collections::VecDeque::from([self.objects.len() - 1]);
        while let Some(requester) = queue.pop_front() {
            for name in self.objects[requester].elf.needed.clone() {
                if self.is_loaded(&name) {
                    continue;
                }
                let Found {
                    candidate,
                    elf,
                    file_id,
                } = self.search(&name, requester)?;
                self.files.push(host_file(
                    candidate.image_path.clone(),
                    &candidate.host_path,
                )?);
                // The same file under another path is the same object to ld.so (it compares
                // device and inode); only the new path is needed.
                if let Some(existing) = self.objects.iter_mut().find(|o| o.file_id == file_id) {
                    existing.names.push(name);
                    continue;
                }
                self.objects.push(Loaded {
                    names: vec![name, candidate.host_path.clone().into_os_string()],
                    host_path: candidate.host_path,
                    image_path: candidate.image_path,
                    elf,
                    loader: Some(requester),
                    file_id,
                });
                queue.push_back(self.objects.len() - 1);
            }
        }
        Ok(())
    }

    fn is_loaded(&self, name: &OsStr) -> bool {
        self.objects
            .iter()
            .any(|o| o.names.iter().any(|n| n == name) || o.elf.soname.as_deref() == Some(name))
    }

    /// Where ld.so finds `name` for `self.objects[requester]` (glibc `_dl_map_object`).
    fn search(&mut self, name: &OsStr, requester: usize) -> Result<Found, HostBinError> {
        let needed_by = self.objects[requester].host_path.clone();
        let not_found = |searched: Vec<PathBuf>| HostBinError::LibraryNotFound {
            library: name.to_string_lossy().into_owned(),
            needed_by: needed_by.clone(),
            searched,
        };

        if name.as_bytes().contains(&b'/') {
            let Some(candidate) = self.expand(name, requester) else {
                return Err(HostBinError::BadElf {
                    path: needed_by.clone(),
                    detail: format!(
                        "DT_NEEDED {} is a relative path, resolved against the working directory at run time; relink with an absolute path or $ORIGIN",
                        name.to_string_lossy()
                    ),
                });
            };
            return match self.probe(&candidate.host_path)? {
                Probe::Missing => Err(not_found(vec![candidate.host_path])),
                Probe::OtherAbi(found) => Err(HostBinError::WrongArchitecture {
                    path: candidate.host_path,
                    found: found.to_string(),
                    expected: self.abi.to_string(),
                }),
                Probe::Usable(elf, file_id) => Ok(Found {
                    candidate,
                    elf,
                    file_id,
                }),
            };
        }

        let mut searched: Vec<PathBuf> = Vec::new();
        let requester_object = &self.objects[requester];
        let mut path_lists: Vec<(OsString, usize)> = Vec::new();
        if requester_object.elf.runpath.is_none() {
            let mut owner = Some(requester);
            while let Some(index) = owner {
                if let Some(rpath) = &self.objects[index].elf.rpath {
                    path_lists.push((rpath.clone(), index));
                }
                owner = self.objects[index].loader;
            }
        }
        if let Some(runpath) = &requester_object.elf.runpath {
            path_lists.push((runpath.clone(), requester));
        }
        for (list, owner) in path_lists {
            for entry in list.as_bytes().split(|&b| b == b':') {
                let Some(dir) = self.expand(OsStr::from_bytes(entry), owner) else {
                    continue;
                };
                if let Some(found) = self.try_dir(&dir, name, &mut searched)? {
                    return Ok(found);
                }
            }
        }

        if !self.objects[requester].elf.nodeflib {
            searched.push(PathBuf::from(ldcache::SYSTEM_CACHE));
            let cached = ldcache::lookup(self.cache.entries(), name, self.arch.cache_flags)
                .map(Path::to_owned);
            if let Some(path) = cached {
                if let Probe::Usable(elf, file_id) = self.probe(&path)? {
                    let in_default_dir = path
                        .parent()
                        .is_some_and(|dir| self.default_dirs.iter().any(|d| d == dir));
                    self.needs_cache_file |= !in_default_dir;
                    let candidate = Candidate {
                        image_path: normalize(&path),
                        host_path: path,
                    };
                    return Ok(Found {
                        candidate,
                        elf,
                        file_id,
                    });
                }
            }
            for dir in self.default_dirs.clone() {
                let dir = Candidate {
                    image_path: dir.clone(),
                    host_path: dir,
                };
                if let Some(found) = self.try_dir(&dir, name, &mut searched)? {
                    return Ok(found);
                }
            }
        }
        Err(not_found(searched))
    }

    fn try_dir(
        &self,
        dir: &Candidate,
        name: &OsStr,
        searched: &mut Vec<PathBuf>,
    ) -> Result<Option<Found>, HostBinError> {
        if !searched.contains(&dir.host_path) {
            searched.push(dir.host_path.clone());
        }
        let candidate = Candidate {
            host_path: dir.host_path.join(name),
            image_path: normalize(&dir.image_path.join(name)),
        };
        Ok(match self.probe(&candidate.host_path)? {
            Probe::Usable(elf, file_id) => Some(Found {
                candidate,
                elf,
                file_id,
            }),
            Probe::Missing | Probe::OtherAbi(_) => None,
        })
    }

    /// Opens `path` the way ld.so's `open_verify` does: absent or unreadable files and files of
    /// another class or machine are passed over; a non-ELF or unloadable file stops the load.
    fn probe(&self, path: &Path) -> Result<Probe, HostBinError> {
        match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_file() => {}
            Ok(_) => return Ok(Probe::Missing),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::NotADirectory
                        | io::ErrorKind::PermissionDenied
                ) =>
            {
                return Ok(Probe::Missing);
            }
            Err(source) => {
                return Err(HostBinError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        }
        let elf = match elf::read(path) {
            Ok(Some(elf)) => elf,
            Ok(None) => {
                return Err(HostBinError::BadElf {
                    path: path.to_owned(),
                    detail: "invalid ELF header".to_owned(),
                })
            }
            // ld.so passes over files it may not open (EACCES) and keeps searching.
            Err(HostBinError::Io { source, .. })
                if source.kind() == io::ErrorKind::PermissionDenied =>
            {
                return Ok(Probe::Missing)
            }
            Err(error) => return Err(error),
        };
        if elf.abi != self.abi {
            return Ok(Probe::OtherAbi(elf.abi));
        }
        if !elf.is_loadable() {
            return Err(HostBinError::BadElf {
                path: path.to_owned(),
                detail: "only ET_DYN and ET_EXEC can be loaded".to_owned(),
            });
        }
        Ok(Probe::Usable(elf, file_id(path)?))
    }

    /// Expands `$ORIGIN`, `$LIB` and `$PLATFORM` (also `${...}`) in a search folder or needed
    /// path of `self.objects[owner]`; `None` when the result is relative.
    fn expand(&self, entry: &OsStr, owner: usize) -> Option<Candidate> {
        let object = &self.objects[owner];
        let host_origin = object.host_path.parent().unwrap_or(Path::new("/"));
        let image_origin = object.image_path.parent().unwrap_or(Path::new("/"));
        let mut host = Vec::new();
        let mut image = Vec::new();
        let bytes = entry.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                host.push(bytes[i]);
                image.push(bytes[i]);
                i += 1;
                continue;
            }
            let (token, end) = if bytes.get(i + 1) == Some(&b'{') {
                match bytes[i + 2..].iter().position(|&b| b == b'}') {
                    Some(len) => (&bytes[i + 2..i + 2 + len], i + 3 + len),
                    None => (&bytes[i + 1..i + 1], i + 1),
                }
            } else {
                let len = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                    .count();
                (&bytes[i + 1..i + 1 + len], i + 1 + len)
            };
            let (host_value, image_value) = match token {
                b"ORIGIN" => (
                    host_origin.as_os_str().as_bytes(),
                    image_origin.as_os_str().as_bytes(),
                ),
                b"LIB" => (self.lib_dir.as_bytes(), self.lib_dir.as_bytes()),
                b"PLATFORM" => (self.arch.platform.as_bytes(), self.arch.platform.as_bytes()),
                // Unknown tokens stay as written, as in glibc.
                _ => (&bytes[i..end], &bytes[i..end]),
            };
            host.extend_from_slice(host_value);
            image.extend_from_slice(image_value);
            i = end;
        }
        let host_path = PathBuf::from(OsString::from_vec(host));
        let image_path = PathBuf::from(OsString::from_vec(image));
        (host_path.is_absolute() && image_path.is_absolute()).then(|| Candidate {
            host_path,
            image_path: normalize(&image_path),
        })
    }
}

/// Resolves `.` and `..` without touching the file system, as every image path this crate
/// returns is resolved: the image's folders are new, so no symlink in them can be followed.
pub fn normalize(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(part) => normalized.push(part),
            Component::ParentDir => {
                normalized.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    normalized
}

fn canonicalize(path: &Path) -> Result<PathBuf, HostBinError> {
    std::fs::canonicalize(path).map_err(|source| HostBinError::Io {
        path: path.to_owned(),
        source,
    })
}

fn file_id(path: &Path) -> Result<FileId, HostBinError> {
    let metadata = std::fs::metadata(path).map_err(|source| HostBinError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok((metadata.dev(), metadata.ino()))
}

fn host_file(image_path: PathBuf, opened: &Path) -> Result<HostFile, HostBinError> {
    let source = canonicalize(opened)?;
    let metadata = std::fs::metadata(&source).map_err(|source_error| HostBinError::Io {
        path: source.clone(),
        source: source_error,
    })?;
    Ok(HostFile {
        image_path,
        source,
        mode: metadata.permissions().mode() & 0o7777,
        link: None,
        brought_by: None,
    })
}
