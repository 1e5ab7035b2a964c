//! gpubox's own top layer and what goes with it: the GPU settings (NVIDIA
//! variables and labels) from the closure's CUDA, and the host programs
//! `hostBinaries` copies in with their libraries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gpubox_oci::{Entry, EntryKind, ImagePath};
use gpubox_rootfs::{Part, RootfsInput};
use gpubox_spec::{CopyToRoot, HostBinarySrc, Platform, Spec};

use crate::base::Base;
use crate::error::BuildError;
use crate::reporter::{Bytes, Count, Reporter};
use crate::store::StoreContents;

/// What the top layer holds that depends on the platform: its `gpubox-init`,
/// its driver folders, and the image's Nix database where `nix.enable` asks.
pub struct TopInputs<'a> {
    /// The static `gpubox-init` for the platform ([`crate::init_binary`]).
    pub init: &'static [u8],
    pub platform: Platform,
    pub nix_db: Option<&'a gpubox_rootfs::NixDb>,
}

/// The top layer, with a failure pointed at the spec item it comes from, written
/// through the base's folder links ([`through_base_links`]; each link used is
/// reported).
pub fn top_layer(
    spec: &Spec,
    store: &StoreContents,
    host_files: &[gpubox_hostbin::HostFile],
    base: &Base,
    inputs: TopInputs<'_>,
    reporter: &dyn Reporter,
) -> Result<gpubox_rootfs::Rootfs, BuildError> {
    let mut rootfs = assemble(spec, store, host_files, base, inputs)?;
    let placed = std::mem::take(&mut rootfs.entries)
        .into_iter()
        .zip(std::mem::take(&mut rootfs.parts))
        .collect();
    let (placed, used) = through_base_links(placed, base.folder_links());
    (rootfs.entries, rootfs.parts) = placed.into_iter().unzip();
    for (folder, target) in used {
        reporter.step(&format!(
            "the base's {folder} is a link to {target}: gpubox's files for {folder} are \
             written to {target}, and the link stays"
        ));
    }
    Ok(rootfs)
}

/// `entries` as a process in the container would write them, through the base's
/// folder `links` (folder -> where it leads): `bin/gpubox-init` goes to
/// `usr/bin/gpubox-init` when the base's `/bin` is a link to `/usr/bin`. A folder
/// entry where the base has the link is left out: the runtime would replace the link
/// with the folder and hide what the base keeps behind it. Where a moved entry meets
/// one written at its new path, the one written there wins. Each entry keeps what
/// goes with it (its [`Part`]). Returns the entries, sorted, and the links used.
pub fn through_base_links<T>(
    entries: Vec<(Entry, T)>,
    links: &BTreeMap<String, String>,
) -> (Vec<(Entry, T)>, BTreeMap<ImagePath, ImagePath>) {
    let links: Vec<(ImagePath, ImagePath)> = links
        .iter()
        .filter_map(|(folder, target)| {
            Some((ImagePath::new(folder).ok()?, ImagePath::new(target).ok()?))
        })
        .collect();
    let mut used = BTreeMap::new();
    let mut direct = BTreeMap::new();
    let mut moved = Vec::new();
    for (mut entry, with) in entries {
        let link = links
            .iter()
            .filter(|(folder, _)| entry.path.starts_with(folder))
            .max_by_key(|(folder, _)| folder.as_bytes().len());
        match link {
            None => {
                direct.insert(entry.path.clone(), (entry, with));
            }
            // The folder itself: left out, so the base's link stays.
            Some((folder, target))
                if entry.path == *folder && entry.kind == EntryKind::Directory =>
            {
                used.insert(folder.clone(), target.clone());
            }
            // Something else where the base has the link replaces it, as written.
            Some((folder, _)) if entry.path == *folder => {
                direct.insert(entry.path.clone(), (entry, with));
            }
            Some((folder, target)) => {
                let rest = &entry.path.as_bytes()[folder.as_bytes().len() + 1..];
                if let Ok(path) = target.join(rest) {
                    used.insert(folder.clone(), target.clone());
                    entry.path = path;
                    moved.push((entry, with));
                }
            }
        }
    }
    for (entry, with) in moved {
        direct.entry(entry.path.clone()).or_insert((entry, with));
    }
    (direct.into_values().collect(), used)
}

/// One of gpubox's own layers above the closure: the entries of one or more
/// [`Part`]s, with the folders above them.
#[derive(Debug)]
pub struct TopLayer {
    pub parts: Vec<Part>,
    pub entries: Vec<Entry>,
}

impl TopLayer {
    /// The image history's `created_by` for this layer.
    pub fn describe(&self, spec: &Spec) -> String {
        let names: Vec<String> = self
            .parts
            .iter()
            .map(|part| match part {
                // No index: the order the spec lists items in changes nothing.
                Part::CopyToRoot(index) => match spec.copy_to_root.get(*index) {
                    Some(item) => format!("copyToRoot to {}", item.value.dst),
                    None => "copyToRoot".to_owned(),
                },
                Part::HostBinaries => "hostBinaries".to_owned(),
                Part::Init => "gpubox-init".to_owned(),
                Part::Generated => {
                    "generated files (accounts, /etc, links, start-up plan)".to_owned()
                }
            })
            .collect();
        format!("gpubox: {}", names.join(", "))
    }
}

/// Splits the top of the image (`entries` sorted by path, `parts[i]` the part of
/// `entries[i]`) into at most `room` layers, one per part: the `copyToRoot` items
/// first, ordered by the paths their layers hold (so the order the spec lists
/// them in changes nothing), then `hostBinaries`, `gpubox-init`, and last the
/// generated files, which change with the tag and the labels. With more parts
/// than room, the last content parts share one layer; with room for one,
/// everything does. Each layer also holds the folders above its entries as the
/// whole top has them, so no layer changes another's folders.
pub fn split_top(entries: &[Entry], parts: &[Part], room: usize) -> Vec<TopLayer> {
    // Each part's entries and the folders above them, by index into `entries`.
    let mut members: BTreeMap<Part, BTreeSet<usize>> = BTreeMap::new();
    for (index, (entry, part)) in entries.iter().zip(parts).enumerate() {
        let indexes = members.entry(*part).or_default();
        indexes.insert(index);
        for folder in entry.path.ancestors() {
            if let Ok(found) = entries.binary_search_by(|e| e.path.cmp(&folder)) {
                indexes.insert(found);
            }
        }
    }
    let paths_of = |indexes: &BTreeSet<usize>| -> Vec<&ImagePath> {
        indexes.iter().map(|&i| &entries[i].path).collect()
    };
    let mut ordered: Vec<(Part, BTreeSet<usize>)> = members.into_iter().collect();
    ordered.sort_by(|(a, a_members), (b, b_members)| match (a, b) {
        (Part::CopyToRoot(_), Part::CopyToRoot(_)) => {
            paths_of(a_members).cmp(&paths_of(b_members)).then(a.cmp(b))
        }
        _ => a.cmp(b),
    });
    let groups: Vec<Vec<(Part, BTreeSet<usize>)>> = if ordered.len() <= room {
        ordered.into_iter().map(|part| vec![part]).collect()
    } else if room <= 1 {
        vec![ordered]
    } else {
        let last = ordered.split_off(ordered.len() - 1);
        let shared = ordered.split_off(room - 2);
        let mut groups: Vec<_> = ordered.into_iter().map(|part| vec![part]).collect();
        groups.push(shared);
        groups.push(last);
        groups
    };
    groups
        .into_iter()
        .map(|group| {
            let parts = group.iter().map(|(part, _)| *part).collect();
            let indexes: BTreeSet<usize> = group.into_iter().flat_map(|(_, m)| m).collect();
            TopLayer {
                parts,
                entries: indexes.into_iter().map(|i| entries[i].clone()).collect(),
            }
        })
        .collect()
}

fn assemble(
    spec: &Spec,
    store: &StoreContents,
    host_files: &[gpubox_hostbin::HostFile],
    base: &Base,
    inputs: TopInputs<'_>,
) -> Result<gpubox_rootfs::Rootfs, BuildError> {
    let copy_to_root: Vec<CopyToRoot> = spec
        .copy_to_root
        .iter()
        .map(|item| item.value.clone())
        .collect();
    gpubox_rootfs::assemble_over(
        &RootfsInput {
            closure: &store.closure,
            store_fs: &store.fs,
            packages: &store.packages,
            copy_to_root: &copy_to_root,
            host_files,
            init: Arc::from(inputs.init),
            user: &base.user(spec),
            working_dir: &base.working_dir(spec),
            image_name: &spec.name,
            image_tag: &spec.tag,
            driver_library_dirs: if spec.cuda.enable {
                gpubox_cuda::driver_library_dirs(inputs.platform.architecture())
            } else {
                &[]
            },
            machine: &spec.machine,
            home: store.home.as_ref(),
            nix_db: inputs.nix_db,
        },
        base.account_files(),
    )
    .map_err(|e| {
        if let gpubox_rootfs::RootfsError::Machine(machine) = &e {
            let (span, what) = (
                machine.span(),
                format!("`{}` cannot be used", machine.key()),
            );
            return BuildError::from(e).in_spec(spec, span, what);
        }
        let item = e.copy_to_root_index();
        let span = item
            .and_then(|i| spec.copy_to_root.get(i))
            .and_then(|item| item.span);
        let what = match item {
            Some(i) => format!("copyToRoot[{i}] cannot be placed in the image"),
            None => "the top layer cannot be assembled".to_owned(),
        };
        BuildError::from(e).in_spec(spec, span, what)
    })
}

/// The NVIDIA variables and labels of a GPU-ready image (none when
/// `cuda.enable` is false); also the image's whole environment and labels, once
/// the GPU ones are laid into them.
pub struct GpuSettings {
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

pub fn gpu_settings(
    spec: &Spec,
    store: &StoreContents,
    platform: Platform,
) -> Result<GpuSettings, BuildError> {
    if !spec.cuda.enable {
        return Ok(GpuSettings {
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
        });
    }
    let declared = spec
        .cuda
        .version
        .as_deref()
        .map(str::parse::<gpubox_cuda::CudaVersion>)
        .transpose()?;
    let paths: Vec<&Path> = store
        .closure
        .paths()
        .map(|info| Path::new(info.path.as_str()))
        .collect();
    let packages = gpubox_cuda::detect(&paths, &|dir| store.fs.read_dir(dir));
    let version =
        gpubox_cuda::resolve_version(&packages, spec.cuda.allow_mixed_versions, declared)?;
    Ok(GpuSettings {
        env: gpubox_cuda::image_env(version, &spec.cuda.capabilities, platform.architecture()),
        labels: gpubox_cuda::image_labels(version),
    })
}

/// The host programs and shared libraries `hostBinaries` names (a pattern names every
/// file it matches), with the libraries they load and the files of the packages they
/// come from (see `gpubox_hostbin`'s crate doc). Says what came along, and where no
/// package database knows a file, what may be missing. A failure points at its item.
///
/// A program for another CPU than `platform`'s is refused: on a foreign
/// platform, name the files Debian's `:arm64` (or `:amd64`) packages install,
/// whose libraries come from that CPU's multiarch folder (`/usr/lib/aarch64-linux-gnu`).
pub fn resolve_host_binaries(
    spec: &Spec,
    platform: Platform,
    reporter: &dyn Reporter,
) -> Result<Vec<gpubox_hostbin::HostFile>, BuildError> {
    if spec.host_binaries.is_empty() {
        return Ok(Vec::new());
    }
    let mut resolver = gpubox_hostbin::Resolver::new(gpubox_hostbin::PackageDatabase::Dpkg(
        PathBuf::from(gpubox_hostbin::dpkg::DEFAULT_ROOT),
    ));
    for (index, item) in spec.host_binaries.iter().enumerate() {
        let in_spec = |error: BuildError| {
            error.in_spec(
                spec,
                item.span,
                format!("hostBinaries[{index}] cannot be copied into the image"),
            )
        };
        let (label, targets) = host_binary_targets(spec, &item.value).map_err(in_spec)?;
        let mut added = gpubox_hostbin::Added::default();
        for (src, dst) in targets {
            // The resolver first: it names a missing or unreadable file best.
            let one = resolver
                .add(&src, &dst)
                .map_err(|e| in_spec(BuildError::from(e)))?;
            check_machine(&src, platform).map_err(in_spec)?;
            added.absorb(one);
        }
        report_added(reporter, &label, &added);
    }
    Ok(resolver.finish())
}

/// Refuses an ELF file built for another CPU than `platform`'s.
fn check_machine(file: &Path, platform: Platform) -> Result<(), BuildError> {
    match gpubox_hostbin::elf_machine(file)? {
        Some(machine) if machine != platform.machine() => Err(BuildError::WrongArchitecture {
            what: file.display().to_string(),
            platform,
            help: format!(
                "copy a {cpu} build of it: on Debian, `dpkg --add-architecture {arch}` and \
                 install the package as `NAME:{arch}`; its libraries are found in \
                 /usr/lib/{cpu}-linux-gnu. Or list it under platform.\"{other}\".hostBinaries",
                cpu = platform.machine(),
                arch = platform.architecture(),
                other = Platform::of_machine(&machine).map_or("…", |p| p.as_str()),
            ),
            machine,
        }),
        _ => Ok(()),
    }
}

/// How an item is shown in the log, and the `(file, image path)` pairs it names.
fn host_binary_targets(
    spec: &Spec,
    item: &gpubox_spec::HostBinary,
) -> Result<(String, Vec<(PathBuf, PathBuf)>), BuildError> {
    let dst = item.dst.as_ref().map(PathBuf::from);
    match &item.src {
        HostBinarySrc::Path(path) if gpubox_hostbin::is_pattern(path) => {
            if dst.is_some() {
                return Err(gpubox_hostbin::HostBinError::PatternWithDestination {
                    pattern: path.clone(),
                }
                .into());
            }
            // Matches keep their own paths, as libraries do.
            let matches = gpubox_hostbin::expand_pattern(path)?;
            let label = format!("{} ({})", path.display(), Count(matches.len(), "file"));
            Ok((label, matches.into_iter().map(|m| (m.clone(), m)).collect()))
        }
        HostBinarySrc::Path(path) => {
            // A program from the project folder goes on PATH; one from the
            // system keeps its path, as its libraries do.
            let default_dst = if path.starts_with(&spec.dir) {
                Path::new("/usr/local/bin").join(path.file_name().unwrap_or_default())
            } else {
                path.clone()
            };
            let label = path.display().to_string();
            Ok((label, vec![(path.clone(), dst.unwrap_or(default_dst))]))
        }
        HostBinarySrc::Command(name) => {
            let found =
                find_on_path(name).ok_or_else(|| BuildError::CommandNotFound(name.clone()))?;
            let label = format!("{name} ({})", found.display());
            Ok((label, vec![(found.clone(), dst.unwrap_or(found))]))
        }
    }
}

/// The log lines for what one `hostBinaries` item brought along.
fn report_added(reporter: &dyn Reporter, label: &str, added: &gpubox_hostbin::Added) {
    if !added.packages.is_empty() {
        // `name:arch` is how dpkg files a multi-arch package; people know it by name.
        let names: Vec<&str> = added
            .packages
            .iter()
            .map(|p| p.split(':').next().unwrap_or(p))
            .collect();
        if added.package_files == 0 {
            reporter.step(&format!(
                "hostBinaries {label}: the files of {} came with an earlier item",
                names.join(", ")
            ));
        } else {
            reporter.step(&format!(
                "hostBinaries {label}: bringing {} ({}, {}) from the dpkg database",
                names.join(", "),
                Count(added.package_files, "file"),
                Bytes(added.package_bytes)
            ));
        }
    }
    if let Some(first) = added.unpackaged.first() {
        let which = match added.unpackaged.len() {
            1 => first.display().to_string(),
            n => format!("{} and {} more", first.display(), n - 1),
        };
        let why = if added.no_database {
            format!(
                "this machine has no dpkg database ({}), so nothing tells which files {which} needs",
                gpubox_hostbin::dpkg::DEFAULT_ROOT
            )
        } else {
            format!("no installed package lists {which}")
        };
        reporter.step(&format!(
            "hostBinaries {label}: {why}; only its loader and libraries come with it. Files \
             it opens at run time (data, plugins, an interpreter's modules) must be added \
             with copyToRoot, e.g. {{ src = \"/usr/lib/tool\", dst = \"/usr/lib/tool\" }}"
        ));
    }
    if !added.unloadable.is_empty() {
        let shown: Vec<String> = added
            .unloadable
            .iter()
            .take(3)
            .map(ToString::to_string)
            .collect();
        let more = match added.unloadable.len() {
            n if n > 3 => format!(" (and {} more)", n - 3),
            _ => String::new(),
        };
        reporter.step(&format!(
            "hostBinaries {label}: {} of its packages are copied but will not load in the \
             image: {}{more}",
            Count(added.unloadable.len(), "file"),
            shown.join("; ")
        ));
    }
    if let Some(first) = added.unreadable.first() {
        reporter.step(&format!(
            "hostBinaries {label}: {} of its packages cannot be read here and are left out, \
             e.g. {}; build as a user who may read them, or add them with copyToRoot",
            Count(added.unreadable.len(), "file"),
            first.display()
        ));
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reporter::Silent;

    /// The spec line (1-based) an error from `hostBinaries` points at, and its cause.
    fn spec_line_of(spec: &Spec, error: BuildError) -> (usize, String) {
        match error {
            BuildError::InSpec { span, cause, .. } => (spec.location(span).line, cause.to_string()),
            other => panic!("not pointed at the spec: {other:?}"),
        }
    }

    fn spec_of(text: &str) -> Spec {
        gpubox_spec::parse(text, Path::new("/specs/gpubox.toml")).expect("a valid spec")
    }

    #[test]
    fn a_missing_host_binary_is_shown_at_its_spec_line() {
        let spec =
            spec_of("name = \"x\"\nhostBinaries = [\n  \"/bin/sh\",\n  \"/no/such/tool\",\n]\n");
        let error =
            resolve_host_binaries(&spec, Platform::Amd64, &Silent).expect_err("no such file");
        let (line, cause) = spec_line_of(&spec, error);
        assert_eq!(line, 4, "{cause}");
        assert!(
            cause.contains("/no/such/tool") && cause.contains("does not exist"),
            "{cause}"
        );
    }

    #[test]
    fn a_pattern_matching_nothing_or_given_a_destination_is_shown_at_its_spec_line() {
        let spec = spec_of("name = \"x\"\nhostBinaries = [\"/no/such/dir/*.so\"]\n");
        let error = resolve_host_binaries(&spec, Platform::Amd64, &Silent).expect_err("no match");
        let (line, cause) = spec_line_of(&spec, error);
        assert_eq!(line, 2);
        assert!(cause.contains("/no/such/dir/*.so"), "{cause}");

        let spec = spec_of(
            "name = \"x\"\n\n[[hostBinaries]]\nsrc = \"/usr/lib/*/libc.so.6\"\ndst = \"/lib/libc.so.6\"\n",
        );
        let error =
            resolve_host_binaries(&spec, Platform::Amd64, &Silent).expect_err("a pattern with dst");
        let (line, cause) = spec_line_of(&spec, error);
        assert!((3..=5).contains(&line), "{line}: {cause}");
        assert!(cause.contains("leave out `dst`"), "{cause}");
    }

    fn path(text: &str) -> ImagePath {
        ImagePath::new(text).unwrap()
    }

    #[test]
    fn the_top_splits_into_a_layer_per_part_each_with_its_folders() {
        let placed = [
            (Entry::directory(path("app"), 0o700), Part::CopyToRoot(0)),
            (
                Entry::bytes(path("app/run.sh"), 0o755, &b"run"[..]),
                Part::CopyToRoot(0),
            ),
            (Entry::directory(path("bin"), 0o755), Part::Generated),
            (
                Entry::bytes(path("bin/gpubox-init"), 0o755, &b"init"[..]),
                Part::Init,
            ),
            (Entry::directory(path("data"), 0o755), Part::CopyToRoot(1)),
            (
                Entry::bytes(path("data/x"), 0o644, &b"x"[..]),
                Part::CopyToRoot(1),
            ),
            (Entry::directory(path("etc"), 0o755), Part::Generated),
            (
                Entry::bytes(path("etc/os-release"), 0o644, &b"ID=gpubox\n"[..]),
                Part::Generated,
            ),
            (Entry::directory(path("usr"), 0o755), Part::HostBinaries),
            (Entry::directory(path("usr/lib"), 0o755), Part::HostBinaries),
            (
                Entry::bytes(path("usr/lib/libz.so.1"), 0o644, &b"z"[..]),
                Part::HostBinaries,
            ),
        ];
        let (entries, parts): (Vec<Entry>, Vec<Part>) = placed.into_iter().unzip();
        let shown = |layers: &[TopLayer]| -> Vec<(Vec<Part>, Vec<String>)> {
            layers
                .iter()
                .map(|l| {
                    (
                        l.parts.clone(),
                        l.entries.iter().map(|e| e.path.to_string()).collect(),
                    )
                })
                .collect()
        };
        let all = split_top(&entries, &parts, 10);
        assert_eq!(
            shown(&all),
            [
                (
                    vec![Part::CopyToRoot(0)],
                    vec!["/app".to_owned(), "/app/run.sh".to_owned()]
                ),
                (
                    vec![Part::CopyToRoot(1)],
                    vec!["/data".to_owned(), "/data/x".to_owned()]
                ),
                (
                    vec![Part::HostBinaries],
                    vec![
                        "/usr".to_owned(),
                        "/usr/lib".to_owned(),
                        "/usr/lib/libz.so.1".to_owned()
                    ]
                ),
                // The folder `bin` is the generated files', and comes along.
                (
                    vec![Part::Init],
                    vec!["/bin".to_owned(), "/bin/gpubox-init".to_owned()]
                ),
                (
                    vec![Part::Generated],
                    vec![
                        "/bin".to_owned(),
                        "/etc".to_owned(),
                        "/etc/os-release".to_owned()
                    ]
                ),
            ]
        );
        // Listed the other way round, the copyToRoot layers come in the same
        // order: by what they hold.
        let swapped: Vec<Part> = parts
            .iter()
            .map(|part| match part {
                Part::CopyToRoot(i) => Part::CopyToRoot(1 - i),
                other => *other,
            })
            .collect();
        let entries_of = |layers: &[TopLayer]| -> Vec<Vec<Entry>> {
            layers.iter().map(|l| l.entries.clone()).collect()
        };
        assert_eq!(
            entries_of(&split_top(&entries, &swapped, 10)),
            entries_of(&all)
        );
        // Short of room, the last content parts share a layer and the generated
        // files stay alone; with room for one, everything is together.
        let three = split_top(&entries, &parts, 3);
        let groups: Vec<Vec<Part>> = three.iter().map(|l| l.parts.clone()).collect();
        assert_eq!(
            groups,
            [
                vec![Part::CopyToRoot(0)],
                vec![Part::CopyToRoot(1), Part::HostBinaries, Part::Init],
                vec![Part::Generated],
            ]
        );
        assert_eq!(three[1].entries.len(), 7);
        let one = split_top(&entries, &parts, 1);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].entries, entries);
    }

    #[test]
    fn the_top_layer_writes_through_the_base_folder_links() {
        let entries = vec![
            Entry::directory(path("bin"), 0o755),
            Entry::bytes(path("bin/gpubox-init"), 0o755, &b"init"[..]),
            Entry::symlink(path("bin/env"), "/usr/bin/env"),
            Entry::directory(path("usr"), 0o755),
            Entry::directory(path("usr/bin"), 0o755),
            Entry::symlink(path("usr/bin/env"), "/nix/store/x-coreutils/bin/env"),
            Entry::directory(path("usr/local"), 0o755),
            Entry::directory(path("usr/local/bin"), 0o755),
            Entry::symlink(path("usr/local/bin/hello"), "/nix/store/y-hello/bin/hello"),
            Entry::bytes(path("etc/os-release"), 0o644, &b"ID=gpubox\n"[..]),
        ];
        let links = BTreeMap::from([
            ("bin".to_owned(), "usr/bin".to_owned()),
            ("usr/local/bin".to_owned(), "opt/bin".to_owned()),
            ("lib64".to_owned(), "usr/lib64".to_owned()),
        ]);
        let entries = entries.into_iter().map(|entry| (entry, ())).collect();
        let (written, used) = through_base_links(entries, &links);
        let shown: Vec<String> = written
            .iter()
            .map(|(entry, ())| match &entry.kind {
                EntryKind::Symlink { target } => {
                    format!("{} -> {}", entry.path, String::from_utf8_lossy(target))
                }
                _ => entry.path.to_string(),
            })
            .collect();
        // No `bin` folder; what was under it is under `usr/bin`, where the entry
        // written there directly (the real `env`) wins over the moved one.
        assert_eq!(
            shown,
            [
                "/etc/os-release",
                "/opt/bin/hello -> /nix/store/y-hello/bin/hello",
                "/usr",
                "/usr/bin",
                "/usr/bin/env -> /nix/store/x-coreutils/bin/env",
                "/usr/bin/gpubox-init",
                "/usr/local",
            ]
        );
        let used: Vec<(String, String)> = used
            .iter()
            .map(|(folder, target)| (folder.to_string(), target.to_string()))
            .collect();
        assert_eq!(
            used,
            [
                ("/bin".to_owned(), "/usr/bin".to_owned()),
                ("/usr/local/bin".to_owned(), "/opt/bin".to_owned()),
            ]
        );
    }
}
