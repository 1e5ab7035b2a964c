//! The build's check of what the image will run: `cmd` (or a custom `entrypoint`) and
//! every service's program must be in the image and able to start, so a mistake fails
//! the build instead of the container. Programs are looked up as `execvp` in the
//! container looks them up: through the image's `PATH` (a service's own `PATH` where its
//! `env` sets one), following links inside the image, never on the build machine. What
//! the found file needs to start is checked too, as the kernel needs it: a script's `#!`
//! interpreter (and, for `#!/usr/bin/env NAME`, NAME on `PATH`), an ELF program's loader
//! (`PT_INTERP`).
//!
//! The image is seen through three sources, the upper one winning: gpubox's own layers
//! (copyToRoot, hostBinaries and generated files), the closure's store paths (read on the
//! build machine where Nix realised them, else from the binary cache's listings), and the
//! base image's layers. A base's files
//! are read by path (cached by layer), and only small text files are kept, so for a
//! program found in the base the check knows it exists and, for a script, its
//! interpreter, but not its mode or ELF loader.
//!
//! `checkPrograms = false` turns the check off for images whose programs come from a
//! volume at run time.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use gpubox_hostbin::Launcher;
use gpubox_oci::source::{walk_links, was_read, LayerFile, PathKind, Walked, MAX_LINKS};
use gpubox_oci::{Entry, EntryKind, FileSource};
use gpubox_spec::Spec;
use miette::SourceSpan;

use crate::base::Base;
use crate::error::BuildError;
use crate::store::StoreContents;
use gpubox_nix::{StoreFs, StoreNode};

/// How many interpreters deep a script may go (Linux allows 4 nested `#!` levels).
const MAX_INTERPRETERS: usize = 4;

/// The program `entrypoint` names when the spec leaves it out.
pub const INIT_ENTRYPOINT: &str = gpubox_initplan::INIT_PATH;

/// One program the image will start, and where the spec names it.
struct Program {
    /// The spec item: `cmd`, `entrypoint`, `services.web.argv`.
    item: String,
    name: String,
    /// The `PATH` it is looked up in.
    search_path: String,
    working_dir: String,
    span: Option<SourceSpan>,
}

/// Why a program cannot start.
#[derive(Debug, thiserror::Error)]
pub enum NotRunnable {
    #[error(
        "`{item}` runs `{name}`, which is in no folder of PATH ({search_path}) in the image; \
         add the package that provides it (systemPackages, hostBinaries or copyToRoot) or \
         give its full path{OPT_OUT}"
    )]
    NotOnPath {
        item: String,
        name: String,
        search_path: String,
    },
    #[error(
        "`{item}` runs {path}, which is not in the image{}; add it (systemPackages, \
         hostBinaries or copyToRoot) or fix the path{OPT_OUT}",
        via(links)
    )]
    Missing {
        item: String,
        path: String,
        links: Vec<(String, String)>,
    },
    #[error("`{item}` runs {path}, which is a folder in the image; name the program in it")]
    Folder { item: String, path: String },
    #[error(
        "`{item}` runs {path}, which is not executable in the image (mode {mode:04o}); give \
         it mode 0755 (copyToRoot's `mode`)"
    )]
    NotExecutable {
        item: String,
        path: String,
        mode: u32,
    },
    #[error(
        "`{item}` runs {path}, a script whose #! interpreter {interpreter} is not in the \
         image; add it (a shell or the language's package: systemPackages or hostBinaries) \
         or change the script's first line{OPT_OUT}"
    )]
    NoInterpreter {
        item: String,
        path: String,
        interpreter: String,
    },
    #[error(
        "`{item}` runs {path}, a script whose `#!{env} {name}` finds no {name} in PATH \
         ({search_path}) in the image; add the package that provides it{OPT_OUT}"
    )]
    EnvNameNotOnPath {
        item: String,
        path: String,
        env: String,
        name: String,
        search_path: String,
    },
    #[error(
        "`{item}` runs {path}, an ELF program whose loader {loader} is not in the image; copy \
         build-machine programs with hostBinaries, which brings the loader and the \
         libraries, rather than copyToRoot{OPT_OUT}"
    )]
    NoLoader {
        item: String,
        path: String,
        loader: String,
    },
    #[error(
        "`{item}` runs {path}, but following its links or interpreters goes round more than \
         {MAX_LINKS} times; fix the links"
    )]
    Loop { item: String, path: String },
}

/// Said after each way out: how to skip the check.
const OPT_OUT: &str =
    " (if a volume provides it at run time, set checkPrograms = false to skip this check)";

fn via(links: &[(String, String)]) -> String {
    if links.is_empty() {
        return String::new();
    }
    let chain: Vec<String> = links
        .iter()
        .map(|(link, target)| format!("/{link} -> {target}"))
        .collect();
    format!(" (following {})", chain.join(", "))
}

/// Checks that every program the image starts is in it and can start, failing on
/// the first that cannot, pointed at its spec item.
pub fn check_programs(
    spec: &Spec,
    env: &BTreeMap<String, String>,
    working_dir: &str,
    top: &[Entry],
    store: &StoreContents,
    base: &Base,
    cache_root: &Path,
) -> Result<(), BuildError> {
    if !spec.check_programs {
        return Ok(());
    }
    let programs = programs(spec, env, working_dir, base);
    if programs.is_empty() {
        return Ok(());
    }
    let mut view = ImageView::new(top, store, base.has_image());
    loop {
        let mut unread = BTreeSet::new();
        for program in &programs {
            match view.check(program) {
                Checked::Runs => {}
                Checked::Unread(path) => {
                    unread.insert(path);
                }
                Checked::Fails(problem) => {
                    return Err(BuildError::from(problem).in_spec(
                        spec,
                        program.span,
                        format!("`{}` cannot start in the image", program.item),
                    ));
                }
            }
        }
        if unread.is_empty() || !view.read_base(unread, base, cache_root)? {
            return Ok(());
        }
    }
}

/// The programs the image starts: a custom entrypoint's, else (gpubox-init's) `cmd`,
/// and every service's.
fn programs(
    spec: &Spec,
    env: &BTreeMap<String, String>,
    working_dir: &str,
    base: &Base,
) -> Vec<Program> {
    let image_path = env.get("PATH").cloned().unwrap_or_default();
    let mut programs = Vec::new();
    let entrypoint = spec.entrypoint.as_deref().unwrap_or_default();
    let runs_init = entrypoint
        .first()
        .is_none_or(|first| Path::new(first).file_name() == Path::new(INIT_ENTRYPOINT).file_name());
    if !runs_init {
        programs.push(Program {
            item: "entrypoint".to_owned(),
            name: entrypoint[0].clone(),
            search_path: image_path.clone(),
            working_dir: working_dir.to_owned(),
            span: spec.entrypoint_span,
        });
    } else if let Some(name) = base.cmd(spec).first() {
        programs.push(Program {
            item: "cmd".to_owned(),
            name: name.clone(),
            search_path: image_path.clone(),
            working_dir: working_dir.to_owned(),
            span: spec.cmd_span,
        });
    }
    for service in &spec.machine.services {
        let Some(name) = service.value.argv.first() else {
            continue;
        };
        programs.push(Program {
            item: format!("services.{}.argv", service.value.name),
            name: name.clone(),
            search_path: service.value.env.get("PATH").unwrap_or(&image_path).clone(),
            working_dir: service
                .value
                .working_dir
                .clone()
                .unwrap_or_else(|| working_dir.to_owned()),
            span: service.span,
        });
    }
    programs
}

/// What checking one program came to.
enum Checked {
    Runs,
    /// The base's layers must be read at this path first.
    Unread(String),
    Fails(NotRunnable),
}

/// A regular file in the image, and where its bytes are.
#[derive(Clone)]
enum FileAt<'a> {
    Top(&'a Entry),
    /// A store path's file, with its mode; its bytes are read through the
    /// [`StoreFs`] (from disk, or a binary cache).
    Store(PathBuf, u32),
    /// What the base's layers hold there (text, or something else).
    Base(LayerFile),
}

/// What one path of the image is.
#[derive(Clone)]
enum Node<'a> {
    Folder,
    File(FileAt<'a>),
    Link(String),
    /// Nothing, or (in the base, which records no folders) possibly a folder.
    Nothing,
    /// The base was not read at this path yet.
    Unread,
}

/// Where a path leads, links followed.
enum Walk<'a> {
    Reached {
        path: String,
        node: Node<'a>,
        links: Vec<(String, String)>,
    },
    Unread(String),
    Loop,
}

/// The image's files as the check sees them; see the module documentation.
struct ImageView<'a> {
    top: HashMap<&'a [u8], &'a Entry>,
    /// Every folder above a top-layer entry (`usr`, `usr/local`), which the layer
    /// may leave implicit.
    top_folders: HashSet<Vec<u8>>,
    /// `nix/store/HASH-NAME` of every closure path.
    store_paths: HashSet<String>,
    /// Where the closure's files are read.
    store_fs: &'a StoreFs,
    has_base: bool,
    /// The paths of the base read so far, and its files there.
    base: Option<(BTreeSet<String>, BTreeMap<String, LayerFile>)>,
}

impl<'a> ImageView<'a> {
    fn new(top: &'a [Entry], store: &'a StoreContents, has_base: bool) -> ImageView<'a> {
        let mut top_folders = HashSet::new();
        for entry in top {
            let mut path = entry.path.as_bytes();
            while let Some(slash) = path.iter().rposition(|&b| b == b'/') {
                path = &path[..slash];
                if !top_folders.insert(path.to_vec()) {
                    break;
                }
            }
        }
        ImageView {
            top: top.iter().map(|e| (e.path.as_bytes(), e)).collect(),
            top_folders,
            store_paths: store
                .closure
                .paths()
                .map(|info| info.path.as_str().trim_start_matches('/').to_owned())
                .collect(),
            store_fs: &store.fs,
            has_base,
            base: None,
        }
    }

    /// Reads the base's layers at `paths` too; false when there is no base (nothing
    /// more to learn).
    fn read_base(
        &mut self,
        paths: BTreeSet<String>,
        base: &Base,
        cache_root: &Path,
    ) -> Result<bool, BuildError> {
        let mut read = self.base.take().map(|(read, _)| read).unwrap_or_default();
        read.extend(paths);
        match base.shown_at(&read, cache_root)? {
            Some(shown) => {
                self.base = Some((read, shown));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// What is at `path` (relative, no links followed in it); `last` when it is the
    /// end of a walk, whose base file must have been read itself, not only a path
    /// below it.
    fn node(&self, path: &str, last: bool) -> Node<'a> {
        if let Some(entry) = self.top.get(path.as_bytes()) {
            return match &entry.kind {
                EntryKind::Directory => Node::Folder,
                EntryKind::File { .. } => Node::File(FileAt::Top(entry)),
                EntryKind::Symlink { target } => {
                    Node::Link(String::from_utf8_lossy(target).into_owned())
                }
                EntryKind::HardLink { target } => match self.top.get(target.as_bytes()) {
                    Some(file) => Node::File(FileAt::Top(file)),
                    None => Node::Nothing,
                },
            };
        }
        if self.top_folders.contains(path.as_bytes()) {
            return Node::Folder;
        }
        if let Some(node) = self.store_node(path) {
            return node;
        }
        if !self.has_base {
            return Node::Nothing;
        }
        let Some((read, shown)) = &self.base else {
            return Node::Unread;
        };
        match (was_read(read, path, last), shown.get(path)) {
            (false, _) => Node::Unread,
            (true, Some(LayerFile::Link(target))) => Node::Link(target.clone()),
            (true, Some(file)) => Node::File(FileAt::Base(file.clone())),
            (true, None) => Node::Nothing,
        }
    }

    /// What the closure has at `path`, read on the build machine; `None` outside
    /// the closure's store paths.
    fn store_node(&self, path: &str) -> Option<Node<'a>> {
        if self.store_paths.is_empty() {
            return None;
        }
        if path == "nix" || path == "nix/store" {
            return Some(Node::Folder);
        }
        let store_path: String = path.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
        if !self.store_paths.contains(&store_path) {
            return None;
        }
        let host = Path::new("/").join(path);
        Some(match self.store_fs.node(&host) {
            Some(StoreNode::Symlink(target)) => Node::Link(target.to_string_lossy().into_owned()),
            Some(StoreNode::Directory) => Node::Folder,
            // The store keeps files read-only, executable or not.
            Some(StoreNode::File { executable }) => {
                Node::File(FileAt::Store(host, if executable { 0o555 } else { 0o444 }))
            }
            None => Node::Nothing,
        })
    }

    /// Follows `path` (absolute, or relative to `from`) through the image's links.
    fn walk(&self, path: &str, from: &str) -> Walk<'a> {
        let kind_at = |at: &str, last: bool| match self.node(at, last) {
            Node::Unread => PathKind::Unread,
            Node::Link(target) => PathKind::Link(target),
            Node::File(_) => PathKind::File,
            Node::Folder | Node::Nothing => PathKind::FolderOrNothing,
        };
        match walk_links(kind_at, path, from) {
            Walked::Reached {
                path,
                blocked,
                links,
            } => Walk::Reached {
                node: if blocked {
                    Node::Nothing
                } else {
                    self.node(&path, true)
                },
                path: format!("/{path}"),
                links,
            },
            Walked::Unread(path) => Walk::Unread(path),
            Walked::TooManyLinks(_) => Walk::Loop,
        }
    }

    fn check(&self, program: &Program) -> Checked {
        let item = program.item.clone();
        if program.name.contains('/') {
            return self.check_file(
                &item,
                &program.name,
                &program.working_dir,
                &program.search_path,
                0,
            );
        }
        let mut first_problem = None;
        for folder in program.search_path.split(':') {
            // An empty entry is the working folder, as for execvp.
            let folder = if folder.is_empty() {
                program.working_dir.as_str()
            } else {
                folder
            };
            let candidate = format!("{}/{}", folder.trim_end_matches('/'), program.name);
            match self.walk(&candidate, &program.working_dir) {
                Walk::Unread(path) => return Checked::Unread(path),
                Walk::Reached {
                    node: Node::File(_),
                    ..
                } => match self.check_file(
                    &item,
                    &candidate,
                    &program.working_dir,
                    &program.search_path,
                    0,
                ) {
                    // execvp goes on past a file it cannot start.
                    Checked::Fails(problem) => {
                        first_problem.get_or_insert(problem);
                    }
                    done => return done,
                },
                _ => {}
            }
        }
        Checked::Fails(first_problem.unwrap_or(NotRunnable::NotOnPath {
            item,
            name: program.name.clone(),
            search_path: program.search_path.clone(),
        }))
    }

    /// Checks the file at `path` and, `depth` interpreters deep, what it needs.
    fn check_file(
        &self,
        item: &str,
        path: &str,
        working_dir: &str,
        search_path: &str,
        depth: usize,
    ) -> Checked {
        let (found, file) = match self.walk(path, working_dir) {
            Walk::Unread(path) => return Checked::Unread(path),
            Walk::Loop => {
                return Checked::Fails(NotRunnable::Loop {
                    item: item.to_owned(),
                    path: path.to_owned(),
                })
            }
            Walk::Reached {
                node: Node::File(file),
                path,
                ..
            } => (path, file),
            Walk::Reached {
                node: Node::Folder,
                path,
                ..
            } => {
                return Checked::Fails(NotRunnable::Folder {
                    item: item.to_owned(),
                    path,
                })
            }
            Walk::Reached { links, .. } => {
                return Checked::Fails(NotRunnable::Missing {
                    item: item.to_owned(),
                    path: path.to_owned(),
                    links,
                })
            }
        };
        if let Some(mode) = file_mode(&file).filter(|mode| mode & 0o111 == 0) {
            return Checked::Fails(NotRunnable::NotExecutable {
                item: item.to_owned(),
                path: found,
                mode,
            });
        }
        match launcher(&file, self.store_fs) {
            Launcher::Script {
                interpreter,
                argument,
            } => {
                if depth == MAX_INTERPRETERS {
                    return Checked::Fails(NotRunnable::Loop {
                        item: item.to_owned(),
                        path: found,
                    });
                }
                let interpreter = interpreter.to_string_lossy().into_owned();
                match self.check_file(item, &interpreter, working_dir, search_path, depth + 1) {
                    Checked::Fails(NotRunnable::Missing { .. } | NotRunnable::Folder { .. }) => {
                        Checked::Fails(NotRunnable::NoInterpreter {
                            item: item.to_owned(),
                            path: found,
                            interpreter,
                        })
                    }
                    Checked::Runs => self.check_env_name(
                        item,
                        &found,
                        &interpreter,
                        argument,
                        working_dir,
                        search_path,
                    ),
                    other => other,
                }
            }
            Launcher::Elf {
                loader: Some(loader),
            } => {
                let loader = loader.to_string_lossy().into_owned();
                match self.walk(&loader, "/") {
                    Walk::Unread(path) => Checked::Unread(path),
                    Walk::Reached {
                        node: Node::File(_),
                        ..
                    } => Checked::Runs,
                    _ => Checked::Fails(NotRunnable::NoLoader {
                        item: item.to_owned(),
                        path: found,
                        loader,
                    }),
                }
            }
            Launcher::Elf { loader: None } | Launcher::Unknown => Checked::Runs,
        }
    }

    /// For `#!/usr/bin/env NAME`: NAME must be on `PATH` too.
    fn check_env_name(
        &self,
        item: &str,
        script: &str,
        interpreter: &str,
        argument: Option<String>,
        working_dir: &str,
        search_path: &str,
    ) -> Checked {
        let name = match argument {
            Some(argument) if Path::new(interpreter).file_name() == Some("env".as_ref()) => {
                // `env -S NAME ARGS` and plain `env NAME`; options are passed over.
                argument
                    .split_whitespace()
                    .find(|word| !word.starts_with('-') && !word.contains('='))
                    .map(str::to_owned)
            }
            _ => None,
        };
        let Some(name) = name else {
            return Checked::Runs;
        };
        let program = Program {
            item: item.to_owned(),
            name: name.clone(),
            search_path: search_path.to_owned(),
            working_dir: working_dir.to_owned(),
            span: None,
        };
        match self.check(&program) {
            Checked::Fails(NotRunnable::NotOnPath { .. }) => {
                Checked::Fails(NotRunnable::EnvNameNotOnPath {
                    item: item.to_owned(),
                    path: script.to_owned(),
                    env: interpreter.to_owned(),
                    name,
                    search_path: search_path.to_owned(),
                })
            }
            other => other,
        }
    }
}

/// The permission bits of `file`, where the check can know them.
fn file_mode(file: &FileAt<'_>) -> Option<u32> {
    match file {
        FileAt::Top(entry) => Some(entry.mode),
        FileAt::Store(_, mode) => Some(*mode & 0o7777),
        FileAt::Base(_) => None,
    }
}

/// How the kernel starts `file`; what cannot be read counts as startable (the
/// build's copy reports unreadable files itself).
fn launcher(file: &FileAt<'_>, store_fs: &StoreFs) -> Launcher {
    match file {
        FileAt::Store(path, _) if store_fs.is_elsewhere_path(path) => store_fs
            .read(path)
            .ok()
            .and_then(|bytes| gpubox_hostbin::launcher_of(&bytes, path).ok())
            .unwrap_or(Launcher::Unknown),
        FileAt::Top(Entry {
            kind:
                EntryKind::File {
                    source: FileSource::Path(path),
                    ..
                },
            ..
        })
        | FileAt::Store(path, _) => gpubox_hostbin::launcher(path).unwrap_or(Launcher::Unknown),
        FileAt::Top(Entry {
            kind:
                EntryKind::File {
                    source: FileSource::Bytes(bytes),
                    ..
                },
            ..
        }) => gpubox_hostbin::script_launcher(bytes),
        FileAt::Base(LayerFile::Text(text)) => gpubox_hostbin::script_launcher(text.as_bytes()),
        FileAt::Top(_) | FileAt::Base(_) => Launcher::Unknown,
    }
}
