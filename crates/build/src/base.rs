//! `fromImage`: a base image read from an `oci:` folder, an `oci-archive:` or a
//! `docker-archive:` file, or pulled from a registry (`docker://`) into the
//! layer cache, whose layers go under ours byte for byte and whose config is
//! merged under the spec's. A registry base named by tag is resolved to a
//! digest on every build (and the digest printed); its blobs already in the
//! cache are not downloaded again.
//!
//! The merge, exactly:
//! - `Env`: the base's, then gpubox's generated and GPU variables, then the
//!   spec's `env`/`extraEnv`; each later one wins. `PATH` is the base's when
//!   the base has one and the spec wrote no `PATH` in `env` or `extraEnv`.
//! - `Entrypoint`: the spec's (or `/bin/gpubox-init`); the base's is dropped.
//! - `Cmd`: the spec's; when the spec has none, the base's `Entrypoint`
//!   followed by its `Cmd`, so the base's program runs under ours.
//! - `Labels`: the base's, overlaid with ours. `ExposedPorts`, `Volumes`: the
//!   union.
//! - `User`, `WorkingDir`: the spec's when it sets them, else the base's when
//!   it has them, else gpubox's defaults (`root`, `/root`).
//! - History: the base's entries first, as they are; one per base layer is
//!   written instead when the base's history does not match its layers.
//!
//! Base layers keep their compression; Docker layer media types are written as
//! their OCI equivalents, which name the same bytes. Whiteouts in them are left
//! for the runtime to apply.
//!
//! The base's `/etc/passwd`, `/etc/group`, `/etc/shadow` and
//! `/etc/nsswitch.conf` (as its layers and their whiteouts leave them, links
//! followed inside the image) are handed to the rootfs, which keeps them and
//! adds only the accounts gpubox needs. A base whose `/etc` is itself a link
//! is refused: gpubox's `/etc` folder would hide it. Other folders the top
//! layer writes into that are links in the base (merged-/usr `/bin -> usr/bin`)
//! are found in the same reading, and the top layer is written through them.
//! What each base layer holds
//! at those paths is remembered in the layer cache, by layer digest, so a
//! rebuild does not read the base's layers again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use gpubox_layers::cache::LayerCache;
use gpubox_oci::image::BaseLayers;
use gpubox_oci::source::{follow_links, stack_layer_files, Followed, LayerFile, MAX_LINKS};
use gpubox_spec::{Spec, DEFAULT_USER, DEFAULT_WORKING_DIR};
use miette::SourceSpan;
use serde_json::Value;

use crate::error::{BaseError, BuildError};
use crate::location::ImageLocation;
use crate::open::{open_platform, OpenedImage, RegistryAccess};
use crate::reporter::{Bytes, Reporter};

/// The spec's base image, opened; with no `fromImage`, an empty base that
/// leaves the spec's settings as they are.
#[derive(Default)]
pub struct Base {
    /// `fromImage` as written.
    name: String,
    span: Option<SourceSpan>,
    image: Option<OpenedImage>,
    config: BaseConfig,
    /// What the base has at [`gpubox_rootfs::BASE_ACCOUNT_FILES`].
    files: BTreeMap<String, LayerFile>,
    /// The folders of [`LINK_CHECKED_FOLDERS`] that are links in the base, to the
    /// path they lead to (`bin` -> `usr/bin` on a merged-/usr base).
    folder_links: BTreeMap<String, String>,
}

/// Folders gpubox's top layer may write into that bases commonly make links: the
/// merged-/usr links of Debian, Ubuntu and Fedora (`/bin -> usr/bin`, `/lib64 ->
/// usr/lib64`, ...), `/var/run -> /run`, and a few more. A folder entry in the top layer
/// would replace such a link and hide what the base keeps behind it, so the top layer
/// writes through it instead ([`crate::top::through_base_links`]). A fixed list keeps the
/// base's cached reading the same whatever the spec copies.
const LINK_CHECKED_FOLDERS: [&str; 16] = [
    "bin",
    "sbin",
    "lib",
    "lib32",
    "lib64",
    "libx32",
    "usr/bin",
    "usr/sbin",
    "usr/lib",
    "usr/lib64",
    "usr/local/bin",
    "usr/local/sbin",
    "var/run",
    "var/tmp",
    "tmp",
    "root",
];

/// The parts of the base's config that are merged under ours.
#[derive(Default)]
struct BaseConfig {
    env: BTreeMap<String, String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    labels: BTreeMap<String, String>,
    exposed_ports: Vec<String>,
    volumes: Vec<String>,
    user: String,
    working_dir: String,
    history: Vec<Value>,
}

/// Opens the spec's `fromImage` (pulling it through `registry` when it is a
/// `docker://` image) and reads its config and account files;
/// `architecture` is the image's (GOARCH spelling), which the base must match.
pub fn open(
    spec: &Spec,
    architecture: &str,
    registry: &RegistryAccess<'_>,
) -> Result<Base, BuildError> {
    let Some(item) = &spec.from_image else {
        return Ok(Base::default());
    };
    let name = item.value.clone();
    let in_spec = |error: BuildError| {
        error.in_spec(
            spec,
            item.span,
            format!("fromImage `{name}` cannot be used as the base image"),
        )
    };
    let target = name
        .parse::<ImageLocation>()
        .map_err(|e| in_spec(e.into()))?
        .relative_to(&spec.dir);
    let image = open_platform(&target, Some(registry), Some(architecture)).map_err(in_spec)?;
    let config = read_config(&name, &image, architecture).map_err(|e| in_spec(e.into()))?;
    let BasePaths {
        files,
        followed,
        folder_links,
    } = read_base_paths(&image, registry.cache_root).map_err(in_spec)?;
    for (file, chain) in followed {
        let change = if files.contains_key(&file) {
            "read from where they lead; if gpubox adds an account, the image's copy becomes a file"
        } else {
            "they lead to no file, so gpubox writes its own"
        };
        registry
            .reporter
            .step(&format!("the base's /{file} is a link ({chain}): {change}"));
    }
    for (file, found) in &files {
        if *found == LayerFile::Other && file != "etc/nsswitch.conf" {
            registry.reporter.step(&format!(
                "the base's /{file} is not a UTF-8 text file under 1 MiB, so gpubox cannot \
                 add the accounts the spec needs to it; it is kept as it is"
            ));
        }
    }
    Ok(Base {
        span: item.span,
        name,
        image: Some(image),
        config,
        files,
        folder_links,
    })
}

/// What the base image shows at [`gpubox_rootfs::BASE_ACCOUNT_FILES`], whiteouts
/// applied and symbolic links followed inside the image as a process in the container
/// would (NixOS-style bases link `/etc/passwd` to `/etc/static/passwd`, and that to a
/// store path), never on the build machine. Each round reads the layers for the paths
/// the links lead to until every file is reached; each layer's part is remembered in
/// the layer cache at `cache_root`, by layer and paths, so a rebuild reads no layer.
/// The same reading finds which of [`LINK_CHECKED_FOLDERS`] are links, and where to.
fn read_base_paths(image: &OpenedImage, cache_root: &Path) -> Result<BasePaths, BuildError> {
    let cache = LayerCache::open(cache_root)?;
    let mut read: BTreeSet<String> = gpubox_rootfs::BASE_ACCOUNT_FILES
        .iter()
        .chain(&LINK_CHECKED_FOLDERS)
        .map(|path| (*path).to_owned())
        .collect();
    loop {
        let shown = shown_at(image, &cache, &read)?;
        if let Some(LayerFile::Link(target)) = shown.get("etc") {
            return Err(BaseError::LinkedEtc {
                target: target.clone(),
            }
            .into());
        }
        let mut files = BTreeMap::new();
        let mut followed = Vec::new();
        let mut unread = Vec::new();
        for file in gpubox_rootfs::BASE_ACCOUNT_FILES {
            match follow_links(&shown, &read, file) {
                Followed::Reached {
                    file: found, links, ..
                } => {
                    if !links.is_empty() {
                        followed.push((file.to_owned(), chain(&links)));
                    }
                    // A dangling link is no file: gpubox writes its own there.
                    if let Some(found) = found {
                        files.insert(file.to_owned(), found);
                    }
                }
                Followed::Unread(path) => unread.push(path),
                Followed::TooManyLinks(links) => {
                    return Err(BaseError::LinkLoop {
                        path: file.to_owned(),
                        max: MAX_LINKS,
                        chain: chain(&links),
                    }
                    .into())
                }
            }
        }
        let mut folder_links = BTreeMap::new();
        for folder in LINK_CHECKED_FOLDERS {
            match follow_links(&shown, &read, folder) {
                Followed::Reached { path, links, .. } if !links.is_empty() => {
                    folder_links.insert(folder.to_owned(), path);
                }
                Followed::Unread(path) => unread.push(path),
                // A folder that is no link, or links that loop (no process could
                // write there either): the top layer writes the folder as it is.
                _ => {}
            }
        }
        if unread.is_empty() {
            return Ok(BasePaths {
                files,
                followed,
                folder_links,
            });
        }
        read.extend(unread);
    }
}

/// What the stacked layers of `image` show at the `wanted` paths and the folders
/// above them ([`stack_layer_files`]); each layer's part is read once and then
/// remembered in `cache`, by layer and paths.
fn shown_at(
    image: &OpenedImage,
    cache: &LayerCache,
    wanted: &BTreeSet<String>,
) -> Result<BTreeMap<String, LayerFile>, BuildError> {
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let mut layers = Vec::new();
    for (index, layer) in image.reader.layers().iter().enumerate() {
        let files = match cache.base_files(&layer.digest, &wanted) {
            Some(files) => files,
            None => {
                let files = image.reader.layer_files(index, &wanted)?;
                cache.put_base_files(&layer.digest, &wanted, &files)?;
                files
            }
        };
        layers.push(files);
    }
    Ok(stack_layer_files(&layers))
}

/// What the base shows at its account files (and how it got there), and which of
/// [`LINK_CHECKED_FOLDERS`] are links.
struct BasePaths {
    /// By path (`etc/passwd`), what the links lead to.
    files: BTreeMap<String, LayerFile>,
    /// (file, the chain of links followed from it), for the build log.
    followed: Vec<(String, String)>,
    /// Folders of [`LINK_CHECKED_FOLDERS`] that are links, to where they lead.
    folder_links: BTreeMap<String, String>,
}

/// `/etc/passwd -> static/passwd, /etc/static -> /nix/store/...`
fn chain(links: &[(String, String)]) -> String {
    links
        .iter()
        .map(|(link, target)| format!("/{link} -> {target}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_config(
    name: &str,
    image: &OpenedImage,
    architecture: &str,
) -> Result<BaseConfig, BaseError> {
    let bad = BaseError::Config;
    let document = image
        .reader
        .config()
        .map_err(|error| bad(error.to_string()))?;
    let platform = |key: &str| document[key].as_str().unwrap_or_default().to_owned();
    let (found_os, found_arch) = (platform("os"), platform("architecture"));
    if found_os != "linux" || found_arch != architecture {
        return Err(BaseError::Platform {
            found: format!("{found_os}/{found_arch}"),
            expected: format!("linux/{architecture}"),
        });
    }
    let config = &document["config"];
    let strings = |key: &str| -> Result<Vec<String>, BaseError> {
        match &config[key] {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_owned).ok_or_else(|| {
                        bad(format!("config.{key} holds a value that is not a string"))
                    })
                })
                .collect(),
            _ => Err(bad(format!("config.{key} is not a list of strings"))),
        }
    };
    let text = |key: &str| config[key].as_str().unwrap_or_default().to_owned();
    let env = strings("Env")?
        .into_iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => (key.to_owned(), value.to_owned()),
            None => (pair, String::new()),
        })
        .collect();
    let labels = config["Labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_owned()))
        .collect();
    let exposed_ports = config["ExposedPorts"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(port, _)| port.clone())
        .collect();
    let volumes = config["Volumes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(volume, _)| volume.clone())
        .collect();
    let layer_count = image.reader.layers().len();
    let history: Vec<Value> = document["history"].as_array().cloned().unwrap_or_default();
    let history_layers = history
        .iter()
        .filter(|entry| entry["empty_layer"].as_bool() != Some(true))
        .count();
    let history = if history_layers == layer_count {
        history
    } else {
        (1..=layer_count)
            .map(|n| {
                serde_json::json!({
                    "created_by": format!("gpubox: layer {n} of base image {name}"),
                    "comment": "gpubox",
                })
            })
            .collect()
    };
    Ok(BaseConfig {
        env,
        entrypoint: strings("Entrypoint")?,
        cmd: strings("Cmd")?,
        labels,
        exposed_ports,
        volumes,
        user: text("User"),
        working_dir: text("WorkingDir"),
        history,
    })
}

impl Base {
    /// What the base has at [`gpubox_rootfs::BASE_ACCOUNT_FILES`], for
    /// [`gpubox_rootfs::assemble_over`]; empty without a base.
    pub fn account_files(&self) -> &BTreeMap<String, LayerFile> {
        &self.files
    }

    /// The base's folder links the top layer writes through (`bin` -> `usr/bin`).
    pub fn folder_links(&self) -> &BTreeMap<String, String> {
        &self.folder_links
    }

    /// The digest of the base's manifest (`sha256:HEX`), for the SBOM; `None`
    /// without a base or for a Docker archive, which has no manifest blob.
    pub fn manifest_digest(&self) -> Option<String> {
        self.image
            .as_ref()
            .and_then(|image| image.reader.manifest_digest())
            .map(|digest| digest.to_string())
    }

    /// What the base shows at the `wanted` paths and the folders above them (links
    /// not followed: see [`follow_links`]); `None` without a base.
    pub fn shown_at(
        &self,
        wanted: &BTreeSet<String>,
        cache_root: &Path,
    ) -> Result<Option<BTreeMap<String, LayerFile>>, BuildError> {
        let Some(image) = &self.image else {
            return Ok(None);
        };
        shown_at(image, &LayerCache::open(cache_root)?, wanted).map(Some)
    }

    /// Whether there is a base image (`fromImage`).
    pub fn has_image(&self) -> bool {
        self.image.is_some()
    }

    fn layer_count(&self) -> usize {
        self.image
            .as_ref()
            .map_or(0, |image| image.reader.layers().len())
    }

    /// How many layers gpubox's own layers (the closure's and the top ones) may
    /// have: `maxLayers` less the base's layers. Fails when the base leaves no room
    /// for one top layer and, when there are store paths, one layer of them.
    pub fn own_layer_room(&self, spec: &Spec, closure_is_empty: bool) -> Result<usize, BuildError> {
        let ours = if closure_is_empty { 1 } else { 2 };
        let room = spec.max_layers.saturating_sub(ours);
        let base = self.layer_count();
        if base > room {
            return Err(BuildError::from(BaseError::TooManyLayers {
                base,
                max_layers: spec.max_layers,
                room,
            })
            .in_spec(
                spec,
                self.span,
                format!("fromImage `{}` has too many layers", self.name),
            ));
        }
        Ok(spec.max_layers.saturating_sub(base))
    }

    /// Copies the base's layers into `store` as they are and returns them with
    /// the base's history.
    pub fn copy_layers(
        &self,
        cache: &LayerCache,
        reporter: &dyn Reporter,
    ) -> Result<BaseLayers, BuildError> {
        let Some(image) = &self.image else {
            return Ok(BaseLayers::default());
        };
        let count = image.reader.layers().len();
        let mut layers = Vec::with_capacity(count);
        for (index, layer) in image.reader.layers().iter().enumerate() {
            // A layer copied before is not read again: its digest says it all.
            let key = LayerCache::base_key(&layer.digest);
            let (blob, cached) = match cache.get(&key) {
                Some(blob) => (blob, true),
                None => {
                    let blob = image.reader.copy_raw_layer(index, cache.store())?;
                    cache.put(&key, &blob)?;
                    (blob, false)
                }
            };
            reporter.step(&format!(
                "base layer {}/{count} {} {} (reused as is{})",
                index + 1,
                blob.digest,
                Bytes(blob.size),
                if cached { ", cached" } else { "" }
            ));
            layers.push(blob);
        }
        Ok(BaseLayers {
            layers,
            annotations: image
                .reader
                .layers()
                .iter()
                .map(|layer| layer.annotations.clone())
                .collect(),
            history: self.config.history.clone(),
        })
    }

    /// The image's user: the spec's, else the base's, else [`DEFAULT_USER`].
    pub fn user(&self, spec: &Spec) -> String {
        chosen(spec.user.as_deref(), &self.config.user, DEFAULT_USER)
    }

    /// The working folder: the spec's, else the base's, else, when the spec sets
    /// a `user` other than root, that user's home (which it may write), else
    /// [`DEFAULT_WORKING_DIR`].
    pub fn working_dir(&self, spec: &Spec) -> String {
        let home = spec
            .user
            .as_deref()
            .and_then(|user| gpubox_rootfs::home_of(user, &spec.machine, &self.files));
        chosen(
            spec.working_dir.as_deref(),
            &self.config.working_dir,
            home.as_deref().unwrap_or(DEFAULT_WORKING_DIR),
        )
    }

    /// The base's environment under `generated` and the spec's, with the
    /// base's `PATH` kept unless the spec wrote one.
    pub fn env_under(
        &self,
        spec: &Spec,
        generated: BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut env = self.config.env.clone();
        let base_path = env.get("PATH").cloned();
        env.extend(generated);
        env.extend(spec.env.clone());
        if let Some(path) = base_path.filter(|_| !spec.env_sets_path) {
            env.insert("PATH".to_owned(), path);
        }
        env
    }

    /// The base's labels, for ours to be laid over.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.config.labels.clone()
    }

    /// The spec's command, else the base's entrypoint and command.
    pub fn cmd(&self, spec: &Spec) -> Vec<String> {
        if spec.cmd.is_empty() {
            [self.config.entrypoint.clone(), self.config.cmd.clone()].concat()
        } else {
            spec.cmd.clone()
        }
    }

    /// The base's exposed ports and the spec's, without repeats.
    pub fn exposed_ports(&self, spec: &Spec) -> Vec<String> {
        let mut ports = self.config.exposed_ports.clone();
        for port in &spec.exposed_ports {
            if !ports.contains(port) {
                ports.push(port.clone());
            }
        }
        ports
    }

    /// The base's volumes and the spec's, without repeats.
    pub fn volumes(&self, spec: &Spec) -> Vec<String> {
        let mut volumes = self.config.volumes.clone();
        for volume in &spec.volumes {
            if !volumes.contains(&volume.value) {
                volumes.push(volume.value.clone());
            }
        }
        volumes
    }
}

/// The spec's value, else the base's when not empty, else the default.
fn chosen(spec: Option<&str>, base: &str, default: &str) -> String {
    spec.or(Some(base).filter(|value| !value.is_empty()))
        .unwrap_or(default)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpubox_oci::blob::BlobStore;
    use gpubox_oci::image::{assemble, ImageConfigInput, LayerInput};
    use gpubox_oci::{Compression, Entry, ImagePath};
    use gpubox_registry::PushOptions;

    use crate::reporter::Silent;

    fn file(path: &str, text: &str) -> Entry {
        Entry::bytes(
            ImagePath::new(path).unwrap(),
            0o644,
            text.as_bytes().to_vec(),
        )
    }

    /// A two-layer base in an OCI folder: the first layer has passwd and
    /// group, the second removes group (a whiteout).
    fn write_base(dir: &Path, architecture: &str) {
        let store = BlobStore::open(&dir.join("blobs-work")).unwrap();
        let layers: Vec<LayerInput> = [
            vec![
                Entry::directory(ImagePath::new("etc").unwrap(), 0o755),
                file("etc/group", "root:x:0:\n"),
                file(
                    "etc/passwd",
                    "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/srv:/bin/sh\n",
                ),
            ],
            vec![
                Entry::directory(ImagePath::new("etc").unwrap(), 0o755),
                file("etc/.wh.group", ""),
            ],
        ]
        .into_iter()
        .map(|entries| LayerInput {
            blob: store
                .write_layer(entries.into_iter().map(Ok), Compression::Gzip, 0, &|_| {})
                .unwrap(),
            created_by: "base".to_owned(),
            annotations: Default::default(),
        })
        .collect();
        let image = assemble(
            &ImageConfigInput {
                created: 0,
                architecture: architecture.to_owned(),
                os: "linux".to_owned(),
                variant: None,
                env: vec![
                    "PATH=/base/bin".into(),
                    "FROM_BASE=1".into(),
                    "SHARED=base".into(),
                ],
                entrypoint: vec!["/base/entry".into()],
                cmd: vec!["--serve".into()],
                exposed_ports: vec!["80/tcp".into()],
                volumes: vec!["/srv/data".into()],
                labels: BTreeMap::from([
                    ("from".into(), "base".into()),
                    ("both".into(), "base".into()),
                ]),
                user: "app".into(),
                working_dir: "/srv".into(),
                title: "base".into(),
                version: "1".into(),
            },
            &layers,
        )
        .unwrap();
        gpubox_oci::layout::write_oci_dir(&dir.join("base"), Some("1"), &image.into(), &store)
            .unwrap();
    }

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new(architecture: &str) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            write_base(dir.path(), architecture);
            Fixture { dir }
        }

        fn spec(&self, toml: &str) -> Spec {
            let text = format!("name = \"demo\"\nfromImage = \"oci:base:1\"\n{toml}");
            gpubox_spec::parse(&text, &self.dir.path().join("gpubox.toml")).unwrap()
        }

        fn open(&self, spec: &Spec, architecture: &str) -> Result<Base, BuildError> {
            let options = PushOptions::default();
            let access = RegistryAccess {
                options: &options,
                cache_root: &self.dir.path().join("cache"),
                reporter: &Silent,
            };
            open(spec, architecture, &access)
        }
    }

    #[test]
    fn the_base_path_stays_and_the_spec_and_ours_win_everything_else() {
        let fixture = Fixture::new("amd64");
        let spec = fixture.spec("env = { SHARED = \"spec\" }\n");
        let base = fixture.open(&spec, "amd64").unwrap();
        let generated = BTreeMap::from([
            ("PATH".to_owned(), "/ours/bin".to_owned()),
            ("SHARED".to_owned(), "ours".to_owned()),
            ("OURS".to_owned(), "1".to_owned()),
        ]);
        let env = base.env_under(&spec, generated.clone());
        assert_eq!(env["PATH"], "/base/bin");
        assert_eq!(env["SHARED"], "spec");
        assert_eq!(env["FROM_BASE"], "1");
        assert_eq!(env["OURS"], "1");

        let with_path = fixture.spec("env = { PATH = \"/spec/bin\" }\n");
        let base = fixture.open(&with_path, "amd64").unwrap();
        assert_eq!(base.env_under(&with_path, generated)["PATH"], "/spec/bin");
    }

    #[test]
    fn the_base_program_runs_under_ours_unless_the_spec_names_one() {
        let fixture = Fixture::new("amd64");
        let spec = fixture.spec("");
        let base = fixture.open(&spec, "amd64").unwrap();
        assert_eq!(base.cmd(&spec), ["/base/entry", "--serve"]);
        assert_eq!(base.user(&spec), "app");
        assert_eq!(base.working_dir(&spec), "/srv");
        assert_eq!(base.labels()["from"], "base");
        assert_eq!(base.volumes(&spec), ["/srv/data"]);

        let own = fixture.spec(
            "cmd = [\"/bin/app\"]\nuser = \"root\"\nworkingDir = \"/work\"\nexposedPorts = [\"22/tcp\", \"80/tcp\"]\nvolumes = [\"/workspace\", \"/srv/data/\"]\n",
        );
        let base = fixture.open(&own, "amd64").unwrap();
        assert_eq!(base.cmd(&own), ["/bin/app"]);
        assert_eq!(base.user(&own), "root");
        assert_eq!(base.working_dir(&own), "/work");
        assert_eq!(base.exposed_ports(&own), ["80/tcp", "22/tcp"]);
        assert_eq!(base.volumes(&own), ["/srv/data", "/workspace"]);
    }

    #[test]
    fn whiteouts_in_the_base_remove_account_files() {
        let fixture = Fixture::new("amd64");
        let spec = fixture.spec("");
        let base = fixture.open(&spec, "amd64").unwrap();
        let files = base.account_files();
        match &files["etc/passwd"] {
            LayerFile::Text(text) => assert!(text.contains("app:x:1000"), "{text}"),
            other => panic!("passwd is {other:?}"),
        }
        // The lower layer's group file is gone, as the runtime will see it.
        assert!(!files.contains_key("etc/group"), "{files:?}");
        assert!(!files.contains_key("etc/shadow"));
        // Read again from the layer cache's record, the answer is the same.
        let again = fixture.open(&spec, "amd64").unwrap();
        assert_eq!(again.account_files(), files);
    }

    #[test]
    fn max_layers_counts_the_base_layers() {
        let fixture = Fixture::new("amd64");
        let tight = fixture.spec("maxLayers = 3\n");
        let base = fixture.open(&tight, "amd64").unwrap();
        // Two base layers, the top layer and one layer of store paths.
        let error = base.own_layer_room(&tight, false).unwrap_err();
        let message = format!(
            "{error} {}",
            std::error::Error::source(&error)
                .map(|s| s.to_string())
                .unwrap_or_default()
        );
        assert!(
            message.contains("the base has 2 layers, but maxLayers = 3 leaves room for at most 1"),
            "{message}"
        );
        // Without store paths the top layer alone fits.
        assert_eq!(base.own_layer_room(&tight, true).unwrap(), 1);
        let roomy = fixture.spec("maxLayers = 10\n");
        let base = fixture.open(&roomy, "amd64").unwrap();
        assert_eq!(base.own_layer_room(&roomy, false).unwrap(), 8);
    }

    #[test]
    fn a_base_for_another_platform_is_refused_and_layers_are_reused() {
        let fixture = Fixture::new("arm64");
        let spec = fixture.spec("");
        let error = fixture.open(&spec, "amd64").err().unwrap();
        let cause = std::error::Error::source(&error)
            .map(|s| s.to_string())
            .unwrap_or_default();
        assert!(cause.contains("the base is a linux/arm64 image"), "{cause}");

        let base = fixture.open(&spec, "arm64").unwrap();
        let cache = LayerCache::open(&fixture.dir.path().join("cache")).unwrap();
        let first = base.copy_layers(&cache, &Silent).unwrap();
        assert_eq!(first.layers.len(), 2);
        assert_eq!(first.history.len(), 2);
        let again = base.copy_layers(&cache, &Silent).unwrap();
        assert_eq!(first.layers, again.layers);
    }
}
