//! The closure step: which store paths an image holds. The spec's packages
//! and `home` are realised with Nix (or, for a spec Nix wrote, taken from the
//! closure Nix exported), and the store is asked for the closure.
//!
//! With a substituter (`gpubox build --substituter URL`, a binary cache), store
//! paths the spec names that this store lacks are not realised: their closure
//! comes from the cache's metadata, what is inside them from its listings
//! ([`StoreFs`]), and only the paths a layer built here holds are unpacked, to a
//! temporary folder outside the store ([`StoreContents::unpack`]): the store would
//! need a path's whole closure, a layer needs only its files. What the build's
//! own layers copy whole (`copyToRoot` sources and `age` secrets in the store)
//! and, with `nix.enable`, the whole closure (the image's database registers it)
//! are copied into the store ([`StoreContents::copy_into_store`]).

use std::collections::BTreeSet;
use std::path::Path;

use gpubox_nix::{Closure, Installable, Nix, StoreFs, StorePath, UnpackedPaths};
use gpubox_spec::{PackageRef, Spec};

use crate::error::BuildError;
use crate::reporter::{Bytes, Count, Reporter};

/// What an image holds from the Nix store: its top-level packages (whose
/// programs get links), `home`, and the closure of every store path the spec
/// names.
///
/// A `copyToRoot` source inside the store is copied to its `dst`, not kept at
/// its store path: its dependencies join the closure, and the path itself only
/// when it refers to itself (nix2container's `copyToRoot`, minus the broken
/// self-links).
pub struct StoreContents {
    pub packages: Vec<StorePath>,
    pub home: Option<StorePath>,
    pub closure: Closure,
    /// Where what is inside the closure's paths is read, and the substituter
    /// the paths this store lacks come from.
    pub fs: StoreFs,
}

impl StoreContents {
    /// Builds what the spec names with Nix and asks the store for the closure;
    /// with a `substituter`, store paths this store lacks are left where they
    /// are (see the module doc).
    pub fn realise(
        spec: &Spec,
        nix: &Nix,
        substituter: Option<&str>,
        reporter: &dyn Reporter,
    ) -> Result<StoreContents, BuildError> {
        let packages = realise_packages(spec, nix, substituter.is_some(), reporter)?;
        let home = realise_home(spec, nix, reporter)?;
        let named = named_store_paths(spec)?;
        let copied = copied_store_paths(spec);
        let roots: Vec<StorePath> = packages
            .iter()
            .chain(&home)
            .chain(&named)
            .chain(&copied)
            .cloned()
            .collect();
        let (closure, elsewhere) = match substituter {
            _ if roots.is_empty() => (Closure::from_infos(Vec::new()), BTreeSet::new()),
            None => (nix.closure(&roots)?, BTreeSet::new()),
            Some(substituter) => nix.closure_from(&roots, substituter)?,
        };
        let mut store = StoreContents::select(packages, home, &named, &copied, &closure);
        let elsewhere: BTreeSet<StorePath> = elsewhere
            .into_iter()
            .filter(|path| store.closure.get(path).is_some())
            .collect();
        if let (Some(substituter), false) = (substituter, elsewhere.is_empty()) {
            reporter.step(&format!(
                "{} of the closure not on this machine: reading {} from {substituter}",
                Count(elsewhere.len(), "store path"),
                if elsewhere.len() == 1 {
                    "its listing"
                } else {
                    "their listings"
                }
            ));
            store.fs = StoreFs::with_substituter(nix, substituter, &elsewhere)?;
            // Files the build's own layers copy must be here to be read.
            let read_whole: Vec<StorePath> =
                copied.into_iter().chain(secret_store_paths(spec)).collect();
            store.copy_into_store(nix, &read_whole, reporter)?;
        }
        Ok(store)
    }

    /// Copies those of `paths` this store lacks (and their closure, as Nix
    /// must) from the substituter into the store; says how many.
    pub fn copy_into_store(
        &self,
        nix: &Nix,
        paths: &[StorePath],
        reporter: &dyn Reporter,
    ) -> Result<(), BuildError> {
        let Some((substituter, wanted)) = self.elsewhere_of(paths) else {
            return Ok(());
        };
        reporter.step(&format!(
            "copying {} ({}) and their closure from {substituter} into the Nix store",
            Count(wanted.len(), "store path"),
            Bytes(self.nar_size(&wanted))
        ));
        nix.fetch(&wanted, substituter)?;
        Ok(())
    }

    /// Unpacks those of `paths` this store lacks from the substituter into
    /// `unpacked`, outside the store (in a folder in `tmp`, named as unfinished
    /// so an interrupt removes it), for the layers that hold them.
    pub fn unpack(
        &self,
        nix: &Nix,
        paths: &[StorePath],
        tmp: &Path,
        unpacked: &mut UnpackedPaths,
        reporter: &dyn Reporter,
    ) -> Result<(), BuildError> {
        let Some((substituter, wanted)) = self.elsewhere_of(paths) else {
            return Ok(());
        };
        reporter.step(&format!(
            "unpacking {} ({}) from {substituter} for the layers built here",
            Count(wanted.len(), "store path"),
            Bytes(self.nar_size(&wanted))
        ));
        for path in &wanted {
            let name = format!("{}unpacked-", gpubox_atomic::partial::prefix());
            unpacked.unpack(nix, path, substituter, tmp, &name)?;
        }
        Ok(())
    }

    /// The substituter and those of `paths` this store lacks, sorted; `None`
    /// when there are none.
    fn elsewhere_of(&self, paths: &[StorePath]) -> Option<(&str, Vec<StorePath>)> {
        let substituter = self.fs.substituter()?;
        let mut wanted: Vec<StorePath> = paths
            .iter()
            .filter(|path| self.fs.is_elsewhere(path))
            .cloned()
            .collect();
        wanted.sort();
        wanted.dedup();
        (!wanted.is_empty()).then_some((substituter, wanted))
    }

    fn nar_size(&self, paths: &[StorePath]) -> u64 {
        paths
            .iter()
            .filter_map(|path| self.closure.get(path))
            .map(|info| info.nar_size)
            .sum()
    }

    /// The same from a closure that already holds everything the spec names
    /// (the graph Nix exports to the spec's builder); every package must be a
    /// store path, as a spec written by Nix has them.
    pub fn from_closure(spec: &Spec, closure: &Closure) -> Result<StoreContents, BuildError> {
        let store_path = |item: &gpubox_spec::Item<PackageRef>, key: String| match &item.value {
            PackageRef::StorePath(path) => StorePath::parse(path)
                .map_err(|e| BuildError::from(e).in_spec(spec, item.span, key.clone())),
            _ => Err(BuildError::NotAStorePath { key }),
        };
        let mut packages = spec
            .system_packages
            .iter()
            .enumerate()
            .map(|(index, item)| store_path(item, format!("systemPackages[{index}]")))
            .collect::<Result<Vec<_>, _>>()?;
        packages.sort();
        packages.dedup();
        let home = spec
            .machine
            .home
            .as_ref()
            .map(|item| store_path(item, "home".to_owned()))
            .transpose()?;
        let named = named_store_paths(spec)?;
        let copied = copied_store_paths(spec);
        Ok(StoreContents::select(
            packages, home, &named, &copied, closure,
        ))
    }

    /// Keeps of `closure` what the image holds: what the packages, `home` and
    /// `storePaths` reach, and what the `copied` sources refer to.
    fn select(
        packages: Vec<StorePath>,
        home: Option<StorePath>,
        named: &[StorePath],
        copied: &[StorePath],
        closure: &Closure,
    ) -> StoreContents {
        let copied_needs = copied
            .iter()
            .filter_map(|path| closure.get(path))
            .flat_map(|info| info.references.iter());
        let roots = packages
            .iter()
            .chain(&home)
            .chain(named)
            .chain(copied_needs);
        let closure = closure.reachable_from(roots);
        StoreContents {
            packages,
            home,
            closure,
            fs: StoreFs::local(),
        }
    }
}

/// The spec's `storePaths`.
fn named_store_paths(spec: &Spec) -> Result<Vec<StorePath>, BuildError> {
    spec.store_paths
        .iter()
        .enumerate()
        .map(|(index, item)| {
            StorePath::parse(&item.value).map_err(|e| {
                BuildError::from(e).in_spec(spec, item.span, format!("storePaths[{index}]"))
            })
        })
        .collect()
}

/// The store paths `copyToRoot` copies from.
fn copied_store_paths(spec: &Spec) -> Vec<StorePath> {
    let mut paths: Vec<StorePath> = spec
        .copy_to_root
        .iter()
        .filter_map(|item| StorePath::containing(&item.value.src).map(|(path, _)| path))
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// How many files [`store_path_machine`] looks at before it gives up: enough
/// for any package's programs, few enough that a path of data costs little
/// (every build runs this for every store path its spec names).
const MACHINE_PROBE_FILES: usize = 1_000;

/// The CPU the programs and libraries of the store path `path` are built for
/// (`x86_64`, `aarch64`) and the file that says so: the first ELF file for one
/// of gpubox's platforms in its `bin/`, `sbin/`, `lib/` and `libexec/` (where
/// Nix packages keep programs and libraries), or the path itself when it is a
/// file. `None` for a path with no such file (data, scripts: a path every
/// platform may share), or one not in this store (a substituter's: its files
/// are not read for this).
pub fn store_path_machine(path: &str) -> Option<(gpubox_spec::Platform, std::path::PathBuf)> {
    let root = Path::new(path);
    // Popped from the end: `bin/` first.
    let mut queue: Vec<std::path::PathBuf> = ["libexec", "lib", "sbin", "bin"]
        .map(|dir| root.join(dir))
        .into_iter()
        .chain(root.is_file().then(|| root.to_owned()))
        .collect();
    let mut looked = 0;
    // Links are not followed, and the four folders are apart: nothing is seen twice.
    while let Some(next) = queue.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&next) else {
            continue;
        };
        if meta.is_dir() {
            let Ok(read) = std::fs::read_dir(&next) else {
                continue;
            };
            let mut children: Vec<std::path::PathBuf> =
                read.filter_map(|e| e.ok().map(|e| e.path())).collect();
            // Popped from the end: sorted backwards, so the walk goes in name order.
            children.sort_by(|a, b| b.cmp(a));
            queue.extend(children);
            continue;
        }
        if !meta.is_file() || meta.len() < 64 {
            continue;
        }
        looked += 1;
        if looked > MACHINE_PROBE_FILES {
            return None;
        }
        if let Ok(Some(machine)) = gpubox_hostbin::elf_machine(&next) {
            if let Some(platform) = gpubox_spec::Platform::of_machine(&machine) {
                return Some((platform, next));
            }
        }
    }
    None
}

/// The `home` package, realised so it joins the closure (without program links).
fn realise_home(
    spec: &Spec,
    nix: &Nix,
    reporter: &dyn Reporter,
) -> Result<Option<StorePath>, BuildError> {
    let Some(item) = &spec.machine.home else {
        return Ok(None);
    };
    reporter.step("realising home");
    let realised = installable(&item.value).and_then(|what| nix.realise(&what));
    match realised {
        Ok(paths) => Ok(paths.into_iter().next()),
        Err(e) => Err(BuildError::from(e).in_spec(
            spec,
            item.span,
            "home could not be realised".to_owned(),
        )),
    }
}

/// What Nix builds for a `systemPackages` entry or `home`.
fn installable(package: &PackageRef) -> Result<Installable, gpubox_nix::NixError> {
    match package {
        PackageRef::StorePath(path) => StorePath::parse(path).map(Installable::StorePath),
        PackageRef::Installable(installable) => Ok(Installable::Flake(installable.clone())),
        PackageRef::NixFile { file, attr, .. } => Ok(Installable::File {
            file: file.clone(),
            attr: attr.clone(),
        }),
    }
}

/// The store paths holding `age` secret files the spec names from the store.
fn secret_store_paths(spec: &Spec) -> impl Iterator<Item = StorePath> + '_ {
    spec.machine
        .age
        .secrets
        .iter()
        .filter_map(|secret| StorePath::containing(&secret.value.file.value).map(|(path, _)| path))
}

/// Realises the `systemPackages`; with `leave_store_paths`, a store path is
/// taken as it is, wherever it is (its closure says whether it is here).
fn realise_packages(
    spec: &Spec,
    nix: &Nix,
    leave_store_paths: bool,
    reporter: &dyn Reporter,
) -> Result<Vec<StorePath>, BuildError> {
    let mut roots = Vec::new();
    for (index, item) in spec.system_packages.iter().enumerate() {
        if let (true, PackageRef::StorePath(path)) = (leave_store_paths, &item.value) {
            if !path.ends_with(".drv") {
                roots.push(StorePath::parse(path).map_err(|e| {
                    BuildError::from(e).in_spec(spec, item.span, format!("systemPackages[{index}]"))
                })?);
                continue;
            }
        }
        let realised = installable(&item.value).and_then(|what| {
            reporter.step(&format!("realising systemPackages[{index}]"));
            nix.realise(&what)
        });
        match realised {
            Ok(paths) => roots.extend(paths),
            Err(e) => {
                return Err(BuildError::from(e).in_spec(
                    spec,
                    item.span,
                    format!("systemPackages[{index}] could not be realised"),
                ))
            }
        }
    }
    roots.sort();
    roots.dedup();
    Ok(roots)
}
