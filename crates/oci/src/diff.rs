//! Comparing two images, for `gpubox diff`: which layers they share, and, for the
//! layers only one of them has, which store paths and files were added, removed
//! or changed, so a user can see why a push moved bytes.
//!
//! Layers are matched by their diff_id (the digest of the uncompressed tar), so
//! the same content compressed differently still counts as shared. Only the
//! layers that are not shared are read, as streams: for each entry the path,
//! kind, size, mode, owner, link target and the sha256 of its content are kept,
//! never the content itself.
//!
//! A path that one image has in a changed layer and the other has only in a
//! shared layer is reported as added or removed: shared layers are not read,
//! because reading them would cost as much as reading both images whole. The
//! `/nix` and `/nix/store` folders every store layer repeats are left out for
//! the same reason.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use serde::Serialize;
use serde_json::Value;

use crate::digest::{Digest, HashingWriter};
use crate::source::{ImageReader, ReadError};
use crate::tar::{read_entries, TarEntryInfo, TarEntryKind};

/// How image B differs from image A.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageDiff {
    /// B's layers that A has too, bottom first.
    pub shared: Vec<DiffLayer>,
    /// A's layers that B does not have.
    pub only_in_a: Vec<DiffLayer>,
    /// B's layers that A does not have: what a push of B after A moves.
    pub only_in_b: Vec<DiffLayer>,
    /// Store paths of the layers above that differ, sorted by name.
    pub store_paths: Vec<StorePathChange>,
    /// Paths outside the store in the layers above that differ, sorted.
    pub files: Vec<FileChange>,
    /// Config fields that differ, sorted by key.
    pub config: Vec<ConfigChange>,
}

/// A layer, as the diff names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffLayer {
    /// Position in its image, bottom first, from 0.
    pub index: usize,
    pub digest: Digest,
    /// The config's diff_id, or the sha256 of the uncompressed tar when the
    /// image names none.
    pub diff_id: Digest,
    /// Bytes of the blob, as pushed.
    pub size: u64,
}

/// Whether something is new in B, gone from A, or in both but different.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// A `/nix/store/<hash>-<name>` path that differs. A path whose name is in both
/// images under different hashes is one change from the old path to the new.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorePathChange {
    pub change: Change,
    /// The `<name>` part of the path.
    pub name: String,
    /// The path in A; `None` when added.
    pub a: Option<String>,
    /// The path in B; `None` when removed.
    pub b: Option<String>,
    /// Bytes of file content under the path in A (0 when added).
    pub size_a: u64,
    /// Bytes of file content under the path in B (0 when removed).
    pub size_b: u64,
    /// `size_b - size_a`.
    pub size_delta: i64,
    /// The index of A's layer holding it.
    pub layer_a: Option<usize>,
    /// The index of B's layer holding it.
    pub layer_b: Option<usize>,
}

/// A path outside the store that differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChange {
    pub change: Change,
    /// Absolute, as in the running container.
    pub path: String,
    pub a: Option<FileState>,
    pub b: Option<FileState>,
    /// What differs, for a changed path; empty otherwise.
    pub differences: Vec<Aspect>,
    pub layer_a: Option<usize>,
    pub layer_b: Option<usize>,
}

/// What a layer says about one path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileState {
    /// `file`, `directory`, `symlink`, `hardlink`, or `type X` for other tar types.
    pub kind: String,
    /// Bytes of content.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// A symbolic link's text or a hard link's target.
    pub link: Option<String>,
    /// The sha256 of the content, for regular files.
    pub sha256: Option<Digest>,
}

/// One way two states of a path can differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Aspect {
    Kind,
    Content,
    Mode,
    Owner,
    Link,
}

impl std::fmt::Display for Aspect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Aspect::Kind => "kind",
            Aspect::Content => "content",
            Aspect::Mode => "mode",
            Aspect::Owner => "owner",
            Aspect::Link => "link target",
        })
    }
}

/// A config field that differs: `Env.NAME` and `Labels.KEY` per variable and
/// label, the other fields whole. `None` where the image does not set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConfigChange {
    pub key: String,
    pub a: Option<String>,
    pub b: Option<String>,
}

/// Compares image `a` with image `b`, reading only the layers they do not share.
pub fn diff_images(a: &ImageReader, b: &ImageReader) -> Result<ImageDiff, ReadError> {
    let layers_a = diff_layers(a)?;
    let layers_b = diff_layers(b)?;
    let ids_a: BTreeSet<&Digest> = layers_a.iter().map(|l| &l.diff_id).collect();
    let ids_b: BTreeSet<&Digest> = layers_b.iter().map(|l| &l.diff_id).collect();
    let (shared, only_in_b): (Vec<DiffLayer>, Vec<DiffLayer>) = layers_b
        .iter()
        .cloned()
        .partition(|l| ids_a.contains(&l.diff_id));
    let only_in_a: Vec<DiffLayer> = layers_a
        .iter()
        .filter(|l| !ids_b.contains(&l.diff_id))
        .cloned()
        .collect();

    let mut contents_a = Contents::default();
    for layer in &only_in_a {
        contents_a.read_layer(a, layer.index)?;
    }
    let mut contents_b = Contents::default();
    for layer in &only_in_b {
        contents_b.read_layer(b, layer.index)?;
    }

    Ok(ImageDiff {
        store_paths: store_path_changes(&contents_a.store, &contents_b.store),
        files: file_changes(&contents_a.files, &contents_b.files),
        config: config_changes(&a.config()?, &b.config()?),
        shared,
        only_in_a,
        only_in_b,
    })
}

/// The image's layers with their diff_ids, hashing the layers that have none.
fn diff_layers(image: &ImageReader) -> Result<Vec<DiffLayer>, ReadError> {
    image
        .layers()
        .iter()
        .enumerate()
        .map(|(index, layer)| {
            let diff_id = match &layer.diff_id {
                Some(id) => id.clone(),
                None => {
                    let mut hashing = HashingWriter::new(io::sink());
                    io::copy(&mut image.open_layer(index)?, &mut hashing)
                        .map_err(ReadError::LayerStream)?;
                    hashing.finish().1
                }
            };
            Ok(DiffLayer {
                index,
                digest: layer.digest.clone(),
                diff_id,
                size: layer.size,
            })
        })
        .collect()
}

/// What the changed layers of one image hold.
#[derive(Default)]
struct Contents {
    store: BTreeMap<String, StorePathContents>,
    files: BTreeMap<String, (FileState, usize)>,
}

/// The entries under one store path, by path inside it, and the upper layer
/// holding them.
struct StorePathContents {
    entries: BTreeMap<String, FileState>,
    layer: usize,
}

impl StorePathContents {
    fn size(&self) -> u64 {
        self.entries.values().map(|e| e.size).sum()
    }
}

impl Contents {
    /// Streams layer `index` of `image`, recording every entry; an upper layer's
    /// entry replaces a lower one's.
    fn read_layer(&mut self, image: &ImageReader, index: usize) -> Result<(), ReadError> {
        let mut stream = image.open_layer(index)?;
        let mut entries = read_entries(&mut stream);
        while let Some(entry) = entries.next_with_digest() {
            let (info, digest) = entry?;
            let path = String::from_utf8_lossy(&info.path).into_owned();
            let state = file_state(&info, digest);
            match split_store_path(&path) {
                Some((store_path, inner)) => {
                    let contents =
                        self.store
                            .entry(store_path)
                            .or_insert_with(|| StorePathContents {
                                entries: BTreeMap::new(),
                                layer: index,
                            });
                    contents.layer = index;
                    contents.entries.insert(inner.to_owned(), state);
                }
                None if path == "nix" || path == "nix/store" => {}
                None => {
                    self.files.insert(format!("/{path}"), (state, index));
                }
            }
        }
        // Reading to the end lets the blob's digest be checked.
        io::copy(&mut stream, &mut io::sink()).map_err(ReadError::LayerStream)?;
        Ok(())
    }
}

/// `/nix/store/<hash>-<name>` and the path inside it, for a path in the store.
fn split_store_path(path: &str) -> Option<(String, &str)> {
    let rest = path.strip_prefix("nix/store/")?;
    let (top, inner) = rest.split_once('/').unwrap_or((rest, ""));
    (!top.is_empty() && !top.starts_with('.')).then(|| (format!("/nix/store/{top}"), inner))
}

/// The `<name>` of `/nix/store/<hash>-<name>`.
fn store_name(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split_once('-').map_or(base, |(_, name)| name)
}

fn file_state(info: &TarEntryInfo, digest: Digest) -> FileState {
    let kind = match info.kind {
        TarEntryKind::File => "file".to_owned(),
        TarEntryKind::Directory => "directory".to_owned(),
        TarEntryKind::Symlink => "symlink".to_owned(),
        TarEntryKind::HardLink => "hardlink".to_owned(),
        TarEntryKind::Other(flag) => format!("type {}", char::from(flag)),
    };
    FileState {
        kind,
        size: info.size,
        mode: info.mode,
        uid: info.uid,
        gid: info.gid,
        link: info
            .link
            .as_deref()
            .map(|l| String::from_utf8_lossy(l).into_owned()),
        sha256: (info.kind == TarEntryKind::File).then_some(digest),
    }
}

/// A store path and what the changed layers hold under it.
type StorePathRef<'a> = (&'a String, &'a StorePathContents);

fn store_path_changes(
    a: &BTreeMap<String, StorePathContents>,
    b: &BTreeMap<String, StorePathContents>,
) -> Vec<StorePathChange> {
    let change = |kind,
                  old: Option<(&String, &StorePathContents)>,
                  new: Option<(&String, &StorePathContents)>| {
        let name = old.or(new).map_or("", |(path, _)| store_name(path));
        let size_a = old.map_or(0, |(_, c)| c.size());
        let size_b = new.map_or(0, |(_, c)| c.size());
        StorePathChange {
            change: kind,
            name: name.to_owned(),
            a: old.map(|(path, _)| path.clone()),
            b: new.map(|(path, _)| path.clone()),
            size_a,
            size_b,
            size_delta: signed(size_b) - signed(size_a),
            layer_a: old.map(|(_, c)| c.layer),
            layer_b: new.map(|(_, c)| c.layer),
        }
    };
    let mut changes = Vec::new();
    // Paths only one side has, by name, so a rebuilt path pairs with its old self.
    let mut unmatched: BTreeMap<&str, (Vec<StorePathRef>, Vec<StorePathRef>)> = BTreeMap::new();
    for (path, old) in a {
        match b.get(path) {
            Some(new) if new.entries != old.entries => {
                changes.push(change(
                    Change::Changed,
                    Some((path, old)),
                    Some((path, new)),
                ));
            }
            Some(_) => {}
            None => unmatched
                .entry(store_name(path))
                .or_default()
                .0
                .push((path, old)),
        }
    }
    for (path, new) in b.iter().filter(|(path, _)| !a.contains_key(*path)) {
        unmatched
            .entry(store_name(path))
            .or_default()
            .1
            .push((path, new));
    }
    for (olds, news) in unmatched.into_values() {
        let pairs = olds.len().max(news.len());
        for i in 0..pairs {
            let (old, new) = (olds.get(i).copied(), news.get(i).copied());
            let kind = match (old, new) {
                (Some(_), Some(_)) => Change::Changed,
                (Some(_), None) => Change::Removed,
                _ => Change::Added,
            };
            changes.push(change(kind, old, new));
        }
    }
    changes.sort_by(|x, y| (&x.name, &x.a, &x.b).cmp(&(&y.name, &y.a, &y.b)));
    changes
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn file_changes(
    a: &BTreeMap<String, (FileState, usize)>,
    b: &BTreeMap<String, (FileState, usize)>,
) -> Vec<FileChange> {
    let paths: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    paths
        .into_iter()
        .filter_map(|path| {
            let (old, new) = (a.get(path), b.get(path));
            let (change, differences) = match (old, new) {
                (Some((old, _)), Some((new, _))) => {
                    let differences = differences(old, new);
                    if differences.is_empty() {
                        return None;
                    }
                    (Change::Changed, differences)
                }
                (Some(_), None) => (Change::Removed, Vec::new()),
                _ => (Change::Added, Vec::new()),
            };
            Some(FileChange {
                change,
                path: path.clone(),
                a: old.map(|(state, _)| state.clone()),
                b: new.map(|(state, _)| state.clone()),
                differences,
                layer_a: old.map(|(_, layer)| *layer),
                layer_b: new.map(|(_, layer)| *layer),
            })
        })
        .collect()
}

fn differences(a: &FileState, b: &FileState) -> Vec<Aspect> {
    [
        (Aspect::Kind, a.kind != b.kind),
        (Aspect::Content, a.size != b.size || a.sha256 != b.sha256),
        (Aspect::Mode, a.mode != b.mode),
        (Aspect::Owner, (a.uid, a.gid) != (b.uid, b.gid)),
        (Aspect::Link, a.link != b.link),
    ]
    .into_iter()
    .filter_map(|(aspect, differs)| differs.then_some(aspect))
    .collect()
}

/// The config fields a user sets, as `key -> text`.
fn config_fields(config: &Value) -> BTreeMap<String, String> {
    let config = &config["config"];
    let mut fields = BTreeMap::new();
    for var in config["Env"].as_array().into_iter().flatten() {
        if let Some(var) = var.as_str() {
            let (name, value) = var.split_once('=').unwrap_or((var, ""));
            fields.insert(format!("Env.{name}"), value.to_owned());
        }
    }
    for (key, value) in config["Labels"].as_object().into_iter().flatten() {
        fields.insert(format!("Labels.{key}"), text(value));
    }
    for key in ["ExposedPorts", "Volumes"] {
        if let Some(set) = config[key].as_object().filter(|set| !set.is_empty()) {
            let members: Vec<&str> = set.keys().map(String::as_str).collect();
            fields.insert(key.to_owned(), members.join(", "));
        }
    }
    for key in ["Entrypoint", "Cmd", "User", "WorkingDir"] {
        match &config[key] {
            Value::Null => {}
            value => {
                fields.insert(key.to_owned(), text(value));
            }
        }
    }
    fields
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn config_changes(a: &Value, b: &Value) -> Vec<ConfigChange> {
    let (a, b) = (config_fields(a), config_fields(b));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|key| a.get(*key) != b.get(*key))
        .map(|key| ConfigChange {
            key: key.clone(),
            a: a.get(key).cloned(),
            b: b.get(key).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::blob::BlobStore;
    use crate::image::{assemble, ImageConfigInput, LayerInput};
    use crate::layout::write_oci_dir;
    use crate::{Compression, Entry, ImagePath};

    const HELLO_OLD: &str = "nix/store/00000000000000000000000000000000-hello-1.0";
    const HELLO_NEW: &str = "nix/store/11111111111111111111111111111111-hello-1.0";
    const LIB: &str = "nix/store/22222222222222222222222222222222-lib-2.0";
    const TOOL: &str = "nix/store/33333333333333333333333333333333-tool-1.0";

    fn p(path: &str) -> ImagePath {
        ImagePath::new(path).unwrap()
    }

    fn store_layer(store_path: &str, content: &[u8]) -> Vec<Entry> {
        vec![
            Entry::directory(p("nix"), 0o755),
            Entry::directory(p("nix/store"), 0o755),
            Entry::directory(p(store_path), 0o555),
            Entry::bytes(p(&format!("{store_path}/data")), 0o444, content.to_vec()),
        ]
    }

    fn config(env: &[&str], user: &str) -> ImageConfigInput {
        ImageConfigInput {
            created: 0,
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
            env: env.iter().map(|s| s.to_string()).collect(),
            entrypoint: vec!["/bin/app".into()],
            cmd: Vec::new(),
            exposed_ports: Vec::new(),
            volumes: Vec::new(),
            labels: BTreeMap::new(),
            user: user.into(),
            working_dir: "/".into(),
            title: "diff-test".into(),
            version: "v1".into(),
        }
    }

    /// Writes an OCI layout in `dir` with one layer per entry list, compressed
    /// with `compression`, and opens it.
    fn image(
        dir: &Path,
        layers: Vec<Vec<Entry>>,
        compression: Compression,
        input: &ImageConfigInput,
    ) -> ImageReader {
        let store = BlobStore::open(&dir.join("store")).unwrap();
        let inputs: Vec<LayerInput> = layers
            .into_iter()
            .enumerate()
            .map(|(i, entries)| LayerInput {
                blob: store
                    .write_layer(entries.into_iter().map(Ok), compression, 0, &|_| {})
                    .unwrap(),
                created_by: format!("layer {i}"),
                annotations: Default::default(),
            })
            .collect();
        let built = assemble(input, &inputs).unwrap();
        let layout = dir.join("layout");
        write_oci_dir(&layout, Some("t"), &built.clone().into(), &store).unwrap();
        ImageReader::open_oci_dir(&layout, None).unwrap()
    }

    fn top_layer(passwd: &[u8], passwd_mode: u32, extra: Option<&str>) -> Vec<Entry> {
        let mut entries = vec![
            Entry::directory(p("etc"), 0o755),
            Entry::symlink(p("etc/localtime"), "/zoneinfo/UTC"),
            Entry::bytes(p("etc/passwd"), passwd_mode, passwd.to_vec()),
        ];
        if let Some(name) = extra {
            entries.push(Entry::bytes(p(name), 0o644, b"new".to_vec()));
        }
        // The tar writer takes entries in path order only.
        entries.sort_by(|x, y| x.path.cmp(&y.path));
        entries
    }

    #[test]
    fn rebuilt_store_path_and_top_layer_changes_are_named_and_the_rest_is_shared() {
        let temp = tempfile::tempdir().unwrap();
        let a = image(
            &temp.path().join("a"),
            vec![
                store_layer(LIB, &[1; 5000]),
                store_layer(HELLO_OLD, &[2; 100]),
                store_layer(TOOL, &[3; 10]),
                top_layer(b"root:x:0:0\n", 0o644, None),
            ],
            Compression::Gzip,
            &config(&["PATH=/bin", "A=1"], "root"),
        );
        // B: same lib compressed differently, hello rebuilt and larger, tool
        // gone, passwd's content and mode changed, a file added.
        let b = image(
            &temp.path().join("b"),
            vec![
                store_layer(LIB, &[1; 5000]),
                store_layer(HELLO_NEW, &[2; 150]),
                top_layer(b"root:x:0:0:\n", 0o600, Some("etc/motd")),
            ],
            Compression::Zstd,
            &config(&["PATH=/usr/bin", "B=2"], "root"),
        );

        let diff = diff_images(&a, &b).unwrap();

        assert_eq!(diff.shared.len(), 1, "{diff:#?}");
        assert_eq!(diff.shared[0].index, 0);
        assert_ne!(
            diff.shared[0].digest,
            a.layers()[0].digest,
            "the blobs differ by compression"
        );
        assert_eq!(
            diff.only_in_a.iter().map(|l| l.index).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(
            diff.only_in_b.iter().map(|l| l.index).collect::<Vec<_>>(),
            [1, 2]
        );

        type Summary<'a> = (Change, &'a str, Option<&'a str>, Option<&'a str>, i64);
        let summary: Vec<Summary> = diff
            .store_paths
            .iter()
            .map(|c| {
                (
                    c.change,
                    c.name.as_str(),
                    c.a.as_deref(),
                    c.b.as_deref(),
                    c.size_delta,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    Change::Changed,
                    "hello-1.0",
                    Some(&*format!("/{HELLO_OLD}")),
                    Some(&*format!("/{HELLO_NEW}")),
                    50
                ),
                (
                    Change::Removed,
                    "tool-1.0",
                    Some(&*format!("/{TOOL}")),
                    None,
                    -10
                ),
            ]
        );
        assert_eq!(diff.store_paths[0].layer_b, Some(1));

        let files: Vec<(&str, Change, &[Aspect])> = diff
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.change, f.differences.as_slice()))
            .collect();
        assert_eq!(
            files,
            [
                ("/etc/motd", Change::Added, &[][..]),
                (
                    "/etc/passwd",
                    Change::Changed,
                    &[Aspect::Content, Aspect::Mode][..]
                ),
            ]
        );

        let config: Vec<(&str, Option<&str>, Option<&str>)> = diff
            .config
            .iter()
            .map(|c| (c.key.as_str(), c.a.as_deref(), c.b.as_deref()))
            .collect();
        assert_eq!(
            config,
            [
                ("Env.A", Some("1"), None),
                ("Env.B", None, Some("2")),
                ("Env.PATH", Some("/bin"), Some("/usr/bin")),
            ]
        );
        let json = serde_json::to_value(&diff).unwrap();
        assert_eq!(json["storePaths"][0]["change"], "changed");
        assert_eq!(json["onlyInB"][0]["index"], 1);
    }

    #[test]
    fn an_image_compared_with_itself_shares_everything() {
        let temp = tempfile::tempdir().unwrap();
        let layers = || vec![store_layer(LIB, &[9; 700]), top_layer(b"x", 0o644, None)];
        let input = config(&["PATH=/bin"], "app");
        let a = image(&temp.path().join("a"), layers(), Compression::Gzip, &input);
        let b = image(&temp.path().join("b"), layers(), Compression::Gzip, &input);

        let diff = diff_images(&a, &b).unwrap();

        assert_eq!(diff.shared.len(), 2);
        assert!(diff.only_in_a.is_empty() && diff.only_in_b.is_empty());
        assert!(diff.store_paths.is_empty() && diff.files.is_empty());
        assert!(diff.config.is_empty(), "{:?}", diff.config);
    }

    #[test]
    fn store_paths_moved_between_layers_are_not_changes() {
        let temp = tempfile::tempdir().unwrap();
        let input = config(&[], "root");
        let a = image(
            &temp.path().join("a"),
            vec![store_layer(LIB, &[1; 64]), store_layer(TOOL, &[2; 64])],
            Compression::None,
            &input,
        );
        let mut both = store_layer(LIB, &[1; 64]);
        both.extend(store_layer(TOOL, &[2; 64]).into_iter().skip(2));
        let b = image(
            &temp.path().join("b"),
            vec![both],
            Compression::None,
            &input,
        );

        let diff = diff_images(&a, &b).unwrap();

        assert!(diff.shared.is_empty());
        assert_eq!((diff.only_in_a.len(), diff.only_in_b.len()), (2, 1));
        assert!(diff.store_paths.is_empty(), "{:?}", diff.store_paths);
        assert!(diff.files.is_empty(), "{:?}", diff.files);
    }

    #[test]
    fn store_path_names_drop_the_hash() {
        assert_eq!(store_name("/nix/store/abc-hello-3.0"), "hello-3.0");
        assert_eq!(
            split_store_path("nix/store/abc-x/bin/y"),
            Some(("/nix/store/abc-x".to_owned(), "bin/y"))
        );
        assert_eq!(split_store_path("nix/store/.links/z"), None);
        assert_eq!(split_store_path("etc/passwd"), None);
    }

    #[test]
    fn volumes_are_one_config_field_listing_every_folder() {
        let ports = serde_json::json!({"22/tcp": {}});
        let with = |volumes: Value| {
            serde_json::json!({
                "config": {"Volumes": volumes, "ExposedPorts": ports}
            })
        };
        let a = with(serde_json::json!({"/workspace": {}}));
        let b = with(serde_json::json!({"/workspace": {}, "/data": {}}));
        let none = with(Value::Null);
        let change = |key: &str, a: Option<&str>, b: Option<&str>| ConfigChange {
            key: key.to_owned(),
            a: a.map(str::to_owned),
            b: b.map(str::to_owned),
        };
        assert_eq!(
            config_changes(&a, &b),
            [change(
                "Volumes",
                Some("/workspace"),
                Some("/data, /workspace")
            )]
        );
        assert_eq!(
            config_changes(&none, &a),
            [change("Volumes", None, Some("/workspace"))]
        );
        assert!(config_changes(&b, &b).is_empty());
    }
}
