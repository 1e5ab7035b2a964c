//! Debian's package database (`/var/lib/dpkg`), read directly: which installed package
//! owns a file, what it depends on, which source package built it, and the files it
//! installed. Nothing is spawned (no `dpkg-query`): the two formats involved are plain text.
//!
//! - `status` holds one paragraph per package (`Package:`, `Status:`, `Architecture:`,
//!   `Source:`, `Version:`, `Depends:`, `Pre-Depends:`; continuation lines start with a
//!   space). `Source:` may carry a version (`python3-defaults (3.11.2-1)`) and is absent
//!   when the source has the package's own name. Only packages whose files are on disk
//!   count (states `installed`, `unpacked`, `half-configured`, `triggers-awaited`,
//!   `triggers-pending`).
//! - `info/NAME:ARCH.list` (for `Multi-Arch: same` packages) or `info/NAME.list` lists
//!   every path the package installed, one a line, folders included.
//!
//! Diversions (`/var/lib/dpkg/diversions`) are ignored: a diverted path is read where the
//! package's list names it, which holds what the diverting package put there.
//!
//! Merged-usr systems (`/bin -> usr/bin`) reach one file by two names while the list
//! records only the one the package shipped, so [`Database::owner`] also tries the other.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};

/// Where dpkg keeps its database.
pub const DEFAULT_ROOT: &str = "/var/lib/dpkg";

/// Why the database cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DpkgError {
    #[error("cannot read the dpkg database file {path}: {source}; check that it is readable, or remove the unreadable file if no package uses it")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One installed package, from `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    /// `amd64`, `arm64`, ... or `all`.
    pub architecture: String,
    pub version: String,
    /// The source package it was built from (the package's own name when `Source:` is absent).
    pub source: String,
    /// `Depends:` then `Pre-Depends:`, each a list of alternatives (`a | b`).
    pub depends: Vec<Vec<Dependency>>,
    multi_arch_same: bool,
}

impl Package {
    /// `name:arch` for a `Multi-Arch: same` package, as dpkg names its files; else the name.
    pub fn qualified_name(&self) -> String {
        if self.multi_arch_same {
            format!("{}:{}", self.name, self.architecture)
        } else {
            self.name.clone()
        }
    }
}

/// One alternative of a dependency: a package name and the architecture it asks for
/// (`:any` and none leave it open; a version restriction is not kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    pub architecture: Option<String>,
}

/// An opened database: the installed packages, and (read on first use) who owns which path.
pub struct Database {
    root: PathBuf,
    packages: Vec<Package>,
    by_name: HashMap<String, Vec<usize>>,
    owners: Option<HashMap<PathBuf, usize>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("root", &self.root)
            .field("packages", &self.packages.len())
            .finish()
    }
}

/// States in which a package's files are on disk.
const FILES_PRESENT: [&str; 5] = [
    "installed",
    "unpacked",
    "half-configured",
    "triggers-awaited",
    "triggers-pending",
];

impl Database {
    /// Reads `ROOT/status`; `Ok(None)` when there is none (the machine is not Debian-based).
    pub fn open(root: &Path) -> Result<Option<Database>, DpkgError> {
        let path = root.join("status");
        let text = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(DpkgError::Io { path, source }),
        };
        let packages = parse_status(&text);
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, package) in packages.iter().enumerate() {
            by_name.entry(package.name.clone()).or_default().push(index);
        }
        Ok(Some(Database {
            root: root.to_owned(),
            packages,
            by_name,
            owners: None,
        }))
    }

    /// The installed packages, in `status` order.
    pub fn packages(&self) -> &[Package] {
        &self.packages
    }

    /// The installed packages called `name` (one per architecture).
    pub fn named(&self, name: &str) -> impl Iterator<Item = &Package> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|&index| &self.packages[index])
    }

    /// The package whose list has `path` (as given, or its merged-usr twin); `None` when no
    /// installed package lists it. Reads every list on first use.
    pub fn owner(&mut self, path: &Path) -> Result<Option<&Package>, DpkgError> {
        if self.owners.is_none() {
            let mut owners = HashMap::new();
            for (index, package) in self.packages.iter().enumerate() {
                for listed in self.list(package)? {
                    owners.entry(listed).or_insert(index);
                }
            }
            self.owners = Some(owners);
        }
        let Some(owners) = &self.owners else {
            return Ok(None);
        };
        let found = std::iter::once(path.to_owned())
            .chain(merged_usr_twin(path))
            .find_map(|candidate| owners.get(&candidate).copied());
        Ok(found.map(|index| &self.packages[index]))
    }

    /// Every path `package`'s list names, in list order; empty when it has no list.
    pub fn list(&self, package: &Package) -> Result<Vec<PathBuf>, DpkgError> {
        let info = self.root.join("info");
        let candidates = [
            info.join(format!("{}:{}.list", package.name, package.architecture)),
            info.join(format!("{}.list", package.name)),
        ];
        for path in candidates {
            match std::fs::read(&path) {
                Ok(bytes) => {
                    return Ok(bytes
                        .split(|&b| b == b'\n')
                        .filter(|line| line.first() == Some(&b'/'))
                        .map(|line| {
                            use std::os::unix::ffi::OsStrExt;
                            PathBuf::from(std::ffi::OsStr::from_bytes(line))
                        })
                        .collect())
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(DpkgError::Io { path, source }),
            }
        }
        Ok(Vec::new())
    }

    /// The installed package that satisfies `dependency` of `from`: the same architecture
    /// first, then `all`, then any (a `Multi-Arch: foreign` package of another).
    fn satisfying(&self, dependency: &Dependency, from: &Package) -> Option<usize> {
        let candidates = self.by_name.get(&dependency.name)?;
        let arch = |index: &usize| self.packages[*index].architecture.as_str();
        if let Some(wanted) = &dependency.architecture {
            return candidates.iter().find(|i| arch(i) == wanted).copied();
        }
        candidates
            .iter()
            .find(|i| arch(i) == from.architecture)
            .or_else(|| candidates.iter().find(|i| arch(i) == "all"))
            .or_else(|| candidates.first())
            .copied()
    }

    /// The packages a program owned by `owner` needs at run time, by gpubox's rule (see the
    /// crate doc): `owner`; when it is the `-minimal` or `-base` part of a package split
    /// (`python3.11-minimal`, `perl-base`), the installed package of the stem's name from
    /// the same source (`python3.11`, `perl`); and what these depend on, transitively, among
    /// the installed packages built from the same source, leaving out development,
    /// documentation, debugging and tooling packages ([`is_tooling`]). Sorted by name.
    pub fn runtime_of(&self, owner: &Package) -> Vec<&Package> {
        let Some(start) = self
            .by_name
            .get(&owner.name)
            .and_then(|list| list.iter().find(|&&i| self.packages[i] == *owner))
            .copied()
        else {
            return Vec::new();
        };
        let mut queue = vec![start];
        for suffix in ["-minimal", "-base"] {
            if let Some(stem) = owner.name.strip_suffix(suffix) {
                let full = Dependency {
                    name: stem.to_owned(),
                    architecture: None,
                };
                if let Some(index) = self.satisfying(&full, owner) {
                    if self.packages[index].source == owner.source
                        && !is_tooling(&self.packages[index].name)
                    {
                        queue.push(index);
                    }
                }
            }
        }
        let mut seen: BTreeSet<usize> = queue.iter().copied().collect();
        while let Some(index) = queue.pop() {
            let package = &self.packages[index];
            for alternatives in &package.depends {
                // The first installed alternative, as the package manager chose.
                let Some(next) = alternatives
                    .iter()
                    .find_map(|dependency| self.satisfying(dependency, package))
                else {
                    continue;
                };
                let candidate = &self.packages[next];
                if candidate.source == owner.source
                    && !is_tooling(&candidate.name)
                    && seen.insert(next)
                {
                    queue.push(next);
                }
            }
        }
        let mut found: Vec<&Package> = seen.into_iter().map(|i| &self.packages[i]).collect();
        found.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then(a.architecture.cmp(&b.architecture))
        });
        found
    }
}

/// Packages that a program never needs to run: headers and static libraries (`-dev`),
/// documentation (`-doc`), debugging symbols (`-dbg`, `-dbgsym`), examples and test
/// suites, and Python's `-venv` (tooling to make virtual environments).
pub fn is_tooling(name: &str) -> bool {
    const SUFFIXES: [&str; 8] = [
        "-dev",
        "-doc",
        "-dbg",
        "-dbgsym",
        "-venv",
        "-examples",
        "-tests",
        "-testsuite",
    ];
    SUFFIXES.iter().any(|suffix| name.ends_with(suffix)) || name.contains("-dev-")
}

/// The paragraphs of `status` whose files are on disk.
fn parse_status(text: &str) -> Vec<Package> {
    let mut packages = Vec::new();
    for paragraph in text.split("\n\n") {
        let fields = fields(paragraph);
        let get = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
        };
        let (Some(name), Some(status)) = (get("Package"), get("Status")) else {
            continue;
        };
        let state = status.split_whitespace().nth(2).unwrap_or_default();
        if !FILES_PRESENT.contains(&state) {
            continue;
        }
        let source = get("Source")
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or(name);
        let mut depends = parse_depends(get("Depends").unwrap_or_default());
        depends.extend(parse_depends(get("Pre-Depends").unwrap_or_default()));
        packages.push(Package {
            name: name.to_owned(),
            architecture: get("Architecture").unwrap_or("all").to_owned(),
            version: get("Version").unwrap_or_default().to_owned(),
            source: source.to_owned(),
            depends,
            multi_arch_same: get("Multi-Arch") == Some("same"),
        });
    }
    packages
}

/// `Key: value` fields, continuation lines joined with a newline.
fn fields(paragraph: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in paragraph.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    fields
}

/// `a (>= 1), b:any | c [amd64]` as alternatives of names and architectures.
fn parse_depends(text: &str) -> Vec<Vec<Dependency>> {
    text.split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(|alternative| {
                    let word = alternative
                        .split(|c: char| c.is_whitespace() || c == '(' || c == '[' || c == '<')
                        .find(|w| !w.is_empty())?;
                    let (name, architecture) = match word.split_once(':') {
                        Some((name, "any")) => (name, None),
                        Some((name, arch)) => (name, Some(arch.to_owned())),
                        None => (word, None),
                    };
                    Some(Dependency {
                        name: name.to_owned(),
                        architecture,
                    })
                })
                .collect::<Vec<_>>()
        })
        .filter(|group| !group.is_empty())
        .collect()
}

/// The same file's path on the other side of merged-usr, if it has one.
pub fn merged_usr_twin(path: &Path) -> Option<PathBuf> {
    const TWINS: [(&str, &str); 4] = [
        ("/bin", "/usr/bin"),
        ("/sbin", "/usr/sbin"),
        ("/lib", "/usr/lib"),
        ("/lib64", "/usr/lib64"),
    ];
    TWINS.iter().find_map(|(root, usr)| {
        if let Ok(rest) = path.strip_prefix(usr) {
            Some(Path::new(root).join(rest))
        } else {
            path.strip_prefix(root)
                .ok()
                .map(|rest| Path::new(usr).join(rest))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: tool-minimal
Status: install ok installed
Architecture: amd64
Multi-Arch: allowed
Source: tool
Version: 1.0-1
Depends: libtool-minimal (= 1.0-1), libc6 (>= 2.35)

Package: libtool-minimal
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: tool (1.0-1)
Version: 1.0-1+b1
Depends: libc6:any,
 libssl3 (>= 3)

Package: tool
Status: install ok installed
Architecture: amd64
Version: 1.0-1
Depends: tool-minimal (= 1.0-1), libtool-stdlib | libtool-other, mime-support

Package: libtool-stdlib
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: tool
Version: 1.0-1
Depends: libtool-minimal (= 1.0-1), libtool-dev

Package: libtool-dev
Status: install ok installed
Architecture: amd64
Source: tool
Version: 1.0-1

Package: tool-doc
Status: install ok installed
Architecture: all
Source: tool
Version: 1.0-1
Depends: tool

Package: libtool-old
Status: deinstall ok config-files
Architecture: amd64
Source: tool
Version: 0.9

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9
";

    fn database(status: &str, lists: &[(&str, &str)]) -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("status"), status).unwrap();
        std::fs::create_dir(dir.path().join("info")).unwrap();
        for (name, text) in lists {
            std::fs::write(dir.path().join("info").join(name), text).unwrap();
        }
        let db = Database::open(dir.path()).unwrap().expect("a status file");
        (dir, db)
    }

    #[test]
    fn status_paragraphs_give_sources_versions_and_dependencies() {
        let (_dir, db) = database(STATUS, &[]);
        let names: Vec<&str> = db.packages().iter().map(|p| p.name.as_str()).collect();
        // The config-files-only package has no files on disk: left out.
        assert_eq!(
            names,
            [
                "tool-minimal",
                "libtool-minimal",
                "tool",
                "libtool-stdlib",
                "libtool-dev",
                "tool-doc",
                "libc6"
            ]
        );
        let lib = db.named("libtool-minimal").next().unwrap();
        assert_eq!(
            lib.source, "tool",
            "the version after the source is dropped"
        );
        assert_eq!(lib.version, "1.0-1+b1");
        assert_eq!(lib.qualified_name(), "libtool-minimal:amd64");
        assert_eq!(
            lib.depends,
            [
                vec![Dependency {
                    name: "libc6".into(),
                    architecture: None
                }],
                vec![Dependency {
                    name: "libssl3".into(),
                    architecture: None
                }],
            ]
        );
        let tool = db.named("tool").next().unwrap();
        assert_eq!(tool.source, "tool", "no Source: the package's own name");
        assert_eq!(tool.qualified_name(), "tool");
        assert_eq!(tool.depends[1].len(), 2, "{:?}", tool.depends);
    }

    #[test]
    fn the_runtime_of_a_minimal_program_is_its_full_package_and_same_source_dependencies() {
        let (_dir, db) = database(STATUS, &[]);
        let owner = db.named("tool-minimal").next().unwrap().clone();
        let names: Vec<&str> = db
            .runtime_of(&owner)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        // libc6 is another source (its files come by the ELF search); -dev and -doc are tooling.
        assert_eq!(
            names,
            ["libtool-minimal", "libtool-stdlib", "tool", "tool-minimal"]
        );
    }

    #[test]
    fn owners_are_found_by_either_merged_usr_name_and_arch_qualified_lists() {
        let (_dir, mut db) = database(
            STATUS,
            &[
                ("tool-minimal.list", "/.\n/usr\n/usr/bin\n/usr/bin/tool\n"),
                (
                    "libtool-minimal:amd64.list",
                    "/lib/x86_64-linux-gnu/libtool.so.1\n",
                ),
            ],
        );
        let owner = |db: &mut Database, path: &str| {
            db.owner(Path::new(path)).unwrap().map(|p| p.name.clone())
        };
        assert_eq!(
            owner(&mut db, "/usr/bin/tool").as_deref(),
            Some("tool-minimal")
        );
        assert_eq!(owner(&mut db, "/bin/tool").as_deref(), Some("tool-minimal"));
        assert_eq!(
            owner(&mut db, "/usr/lib/x86_64-linux-gnu/libtool.so.1").as_deref(),
            Some("libtool-minimal")
        );
        assert_eq!(owner(&mut db, "/usr/bin/other"), None);
    }

    #[test]
    fn no_status_file_is_no_database() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Database::open(dir.path()).unwrap().is_none());
    }

    #[test]
    fn tooling_names() {
        for name in [
            "libpython3.11-dev",
            "python3.11-venv",
            "libc-dev-bin",
            "perl-doc",
            "libssl3-dbgsym",
        ] {
            assert!(is_tooling(name), "{name}");
        }
        for name in [
            "python3.11-minimal",
            "libpython3.11-stdlib",
            "libdevmapper1.02.1",
            "perl-base",
        ] {
            assert!(!is_tooling(name), "{name}");
        }
    }
}
