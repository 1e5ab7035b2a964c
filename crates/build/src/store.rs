//! The closure step: which store paths an image holds. The spec's packages
//! and `home` are realised with Nix (or, for a spec Nix wrote, taken from the
//! closure Nix exported), and the store is asked for the closure.

use gpubox_nix::{Closure, Installable, Nix, StorePath};
use gpubox_spec::{PackageRef, Spec};

use crate::error::BuildError;
use crate::reporter::Reporter;

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
}

impl StoreContents {
    /// Builds what the spec names with Nix and asks the store for the closure.
    pub fn realise(
        spec: &Spec,
        nix: &Nix,
        reporter: &dyn Reporter,
    ) -> Result<StoreContents, BuildError> {
        let packages = realise_packages(spec, nix, reporter)?;
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
        let closure = if roots.is_empty() {
            Closure::from_infos(Vec::new())
        } else {
            nix.closure(&roots)?
        };
        Ok(StoreContents::select(
            packages, home, &named, &copied, &closure,
        ))
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
        PackageRef::NixFile { file, attr } => Ok(Installable::File {
            file: file.clone(),
            attr: attr.clone(),
        }),
    }
}

fn realise_packages(
    spec: &Spec,
    nix: &Nix,
    reporter: &dyn Reporter,
) -> Result<Vec<StorePath>, BuildError> {
    let mut roots = Vec::new();
    for (index, item) in spec.system_packages.iter().enumerate() {
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
