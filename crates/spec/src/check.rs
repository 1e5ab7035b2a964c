//! Walks the spanned tree, checks every key and value, and builds the `Spec`.
//! Keys are visited in document order so the first error reported is the
//! first one in the file.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{NamedSource, SourceSpan};

use crate::error::{Location, SpecError};
use crate::tree::{Entry, Format, Node, Value};
use crate::{
    Compression, CopyToRoot, CudaSpec, HostBinary, HostBinarySrc, Item, MachineSpec, PackageRef,
    Platform, Spec, DEFAULT_PATH, FROM_IMAGE_TRANSPORTS, NIX_SYSTEMS,
};

mod machine;

const TOP_KEYS: &[&str] = &[
    "name",
    "tag",
    "fromImage",
    "systemPackages",
    "storePaths",
    "copyToRoot",
    "hostBinaries",
    "env",
    "extraEnv",
    "labels",
    "extraLabels",
    "exposedPorts",
    "volumes",
    "user",
    "workingDir",
    "cmd",
    "entrypoint",
    "checkPrograms",
    "maxLayers",
    "created",
    "compression",
    "cuda",
    "registries",
    "users",
    "ssh",
    "sshdConfig",
    "age",
    "tailscale",
    "extraStartupScript",
    "services",
    "stopTimeout",
    "nixConfig",
    "nix",
    "home",
    "platforms",
    "platform",
];
const PACKAGE_KEYS: &[&str] = &["file", "attr", "system"];
/// Keys a `platform."…"` table may not hold: one index has one name, tag,
/// date and set of registries, and overrides do not nest.
const SHARED_KEYS: &[&str] = &[
    "name",
    "tag",
    "created",
    "registries",
    "platforms",
    "platform",
];
const COPY_KEYS: &[&str] = &["src", "dst", "mode", "uid", "gid"];
const HOST_BINARY_KEYS: &[&str] = &["src", "dst"];
const CUDA_KEYS: &[&str] = &["enable", "version", "capabilities", "allowMixedVersions"];
/// The driver capabilities libnvidia-container and the CDI hooks know.
const CUDA_CAPABILITIES: &[&str] = &[
    "all", "compute", "compat32", "graphics", "utility", "video", "display", "ngx",
];

const MAX_LAYERS: std::ops::RangeInclusive<i128> = 2..=125;
const MAX_MODE: u32 = 0o7777;

/// A `platform."…"` table: its platform, where its name is, and its keys.
type PlatformTable<'n> = (Platform, Range<usize>, &'n Node);

/// Why a value is rejected, and what to write instead.
struct Problem {
    problem: String,
    help: Option<String>,
}

impl Problem {
    fn new(problem: impl Into<String>, help: impl Into<String>) -> Self {
        Self {
            problem: problem.into(),
            help: Some(help.into()),
        }
    }
}

pub(crate) struct Checker<'a> {
    /// The spec text under its file name, shared with the error reported.
    pub(crate) source: Arc<NamedSource<String>>,
    pub(crate) format: Format,
    /// The spec's folder, absolute; relative paths in the spec start here.
    pub(crate) dir: &'a Path,
}

impl Checker<'_> {
    fn source(&self) -> Arc<NamedSource<String>> {
        Arc::clone(&self.source)
    }

    fn text(&self) -> &str {
        self.source.inner()
    }

    fn location(&self, span: &Range<usize>) -> Location {
        Location::of(self.text(), span.start)
    }

    pub(crate) fn syntax(&self, message: String, span: Range<usize>) -> SpecError {
        SpecError::Syntax {
            format: self.format.name(),
            message,
            location: self.location(&span),
            src: self.source(),
            span: span_of(&span),
        }
    }

    fn wrong_type(&self, path: &str, node: &Node, expected: &'static str) -> SpecError {
        SpecError::WrongType {
            path: path.to_owned(),
            expected,
            found: node.type_name(self.format),
            location: self.location(&node.span),
            src: self.source(),
            span: span_of(&node.span),
        }
    }

    fn invalid(&self, path: &str, span: &Range<usize>, problem: Problem) -> SpecError {
        SpecError::InvalidValue {
            path: path.to_owned(),
            problem: problem.problem,
            help: problem.help,
            location: self.location(span),
            src: self.source(),
            span: span_of(span),
        }
    }

    fn missing(&self, path: &str, table: &Node, help: String) -> SpecError {
        // A whole-document label would cover the file; mark where the table starts.
        let span = table.span.start..table.span.start;
        SpecError::MissingKey {
            path: path.to_owned(),
            help,
            location: self.location(&span),
            src: self.source(),
            span: span_of(&span),
        }
    }

    fn unknown_key(&self, parent: &str, entry: &Entry, known: &[&str]) -> SpecError {
        SpecError::UnknownKey {
            path: child(parent, &entry.key),
            suggestion: suggest(&entry.key, known).map(str::to_owned),
            help: format!("the keys allowed here are: {}", known.join(", ")),
            location: self.location(&entry.key_span),
            src: self.source(),
            span: span_of(&entry.key_span),
        }
    }

    /// Says "table" or "object" as the format calls it.
    fn expect(&self, toml: &'static str, json: &'static str) -> &'static str {
        match self.format {
            Format::Toml => toml,
            Format::Json => json,
        }
    }

    fn table<'n>(
        &self,
        node: &'n Node,
        path: &str,
        expected: &'static str,
    ) -> Result<Vec<&'n Entry>, SpecError> {
        match &node.value {
            Value::Table(entries) => self.entries(entries, path),
            _ => Err(self.wrong_type(path, node, expected)),
        }
    }

    /// A table's entries, JSON `null`s dropped (they mean "not set").
    fn entries<'n>(&self, entries: &'n [Entry], path: &str) -> Result<Vec<&'n Entry>, SpecError> {
        // TOML's parser rejects duplicate keys itself; JSON's does not.
        let mut seen = HashSet::new();
        for entry in entries {
            if !seen.insert(entry.key.as_str()) {
                return Err(SpecError::DuplicateKey {
                    path: child(path, &entry.key),
                    location: self.location(&entry.key_span),
                    src: self.source(),
                    span: span_of(&entry.key_span),
                });
            }
        }
        Ok(entries
            .iter()
            .filter(|entry| !matches!(entry.node.value, Value::Null))
            .collect())
    }

    fn array<'n>(
        &self,
        node: &'n Node,
        path: &str,
        expected: &'static str,
    ) -> Result<&'n [Node], SpecError> {
        match &node.value {
            Value::Array(items) => Ok(items),
            _ => Err(self.wrong_type(path, node, expected)),
        }
    }

    fn string<'n>(&self, node: &'n Node, path: &str) -> Result<&'n str, SpecError> {
        match &node.value {
            Value::String(text) => Ok(text),
            _ => Err(self.wrong_type(path, node, "a string")),
        }
    }

    fn strings(&self, node: &Node, path: &str) -> Result<Vec<String>, SpecError> {
        let items = self.array(node, path, "an array of strings")?;
        items
            .iter()
            .enumerate()
            .map(|(position, item)| {
                let text = self.string(item, &index(path, position))?;
                check_no_nul(text)
                    .map_err(|problem| self.invalid(&index(path, position), &item.span, problem))?;
                Ok(text.to_owned())
            })
            .collect()
    }

    fn integer(&self, node: &Node, path: &str, expected: &'static str) -> Result<i128, SpecError> {
        match node.value {
            Value::Integer { value, .. } => Ok(value),
            _ => Err(self.wrong_type(path, node, expected)),
        }
    }

    fn id(&self, node: &Node, path: &str) -> Result<u32, SpecError> {
        let value = self.integer(node, path, "a non-negative integer")?;
        u32::try_from(value).map_err(|_| {
            self.invalid(
                path,
                &node.span,
                Problem::new(
                    format!("{value} is not a valid id"),
                    format!("use a number from 0 to {}", u32::MAX),
                ),
            )
        })
    }

    /// A string-to-string table; `check_name` vets each key.
    fn string_map(
        &self,
        node: &Node,
        path: &str,
        check_name: fn(&str) -> Result<(), Problem>,
    ) -> Result<BTreeMap<String, String>, SpecError> {
        let expected = self.expect("a table of strings", "an object of strings");
        let mut map = BTreeMap::new();
        for entry in self.table(node, path, expected)? {
            let key_path = child(path, &entry.key);
            check_name(&entry.key)
                .map_err(|problem| self.invalid(&key_path, &entry.key_span, problem))?;
            let value = self.string(&entry.node, &key_path)?;
            check_no_nul(value)
                .map_err(|problem| self.invalid(&key_path, &entry.node.span, problem))?;
            map.insert(entry.key.clone(), value.to_owned());
        }
        Ok(map)
    }

    /// A string run through `check`, which returns the value to keep.
    fn checked<T>(
        &self,
        node: &Node,
        path: &str,
        check: impl FnOnce(&str) -> Result<T, Problem>,
    ) -> Result<T, SpecError> {
        let text = self.string(node, path)?;
        check(text).map_err(|problem| self.invalid(path, &node.span, problem))
    }

    fn item<T>(&self, node: &Node, value: T) -> Item<T> {
        Item {
            value,
            span: Some(span_of(&node.span)),
        }
    }

    pub(crate) fn spec(&self, root: &Node, file: PathBuf) -> Result<Spec, SpecError> {
        let expected = self.expect("a table", "an object");
        let mut name = None;
        let mut tag = None;
        let mut from_image = None;
        let mut system_packages = Vec::new();
        let mut store_paths = Vec::new();
        let mut copy_to_root = Vec::new();
        let mut host_binaries = Vec::new();
        let mut env = None;
        let mut extra_env = BTreeMap::new();
        let mut labels = BTreeMap::new();
        let mut extra_labels = BTreeMap::new();
        let mut exposed_ports = Vec::new();
        let mut volumes = Vec::new();
        let mut user = None;
        let mut working_dir = None;
        let mut cmd = Vec::new();
        let mut cmd_span = None;
        let mut entrypoint = None;
        let mut entrypoint_span = None;
        let mut check_programs = true;
        let mut max_layers = None;
        let mut created = None;
        let mut compression = None;
        let mut cuda = CudaSpec::default();
        let mut registries = Vec::new();
        let mut machine = MachineSpec::default();
        let mut platforms = Vec::new();
        let mut platform_tables = Vec::new();

        for entry in self.table(root, "", expected)? {
            let node = &entry.node;
            let path = entry.key.as_str();
            match path {
                "platforms" => platforms = self.platforms(node, path)?,
                "platform" => platform_tables = self.platform_tables(node, path)?,
                "name" => name = Some(self.checked(node, path, check_image_name)?),
                "tag" => tag = Some(self.checked(node, path, check_tag)?),
                "fromImage" => {
                    let value = self.checked(node, path, check_from_image)?;
                    from_image = Some(self.item(node, value));
                }
                "systemPackages" => system_packages = self.system_packages(node, path)?,
                "storePaths" => store_paths = self.checked_items(node, path, check_store_path)?,
                "copyToRoot" => copy_to_root = self.copy_to_root(node, path)?,
                "hostBinaries" => host_binaries = self.host_binaries(node, path)?,
                "env" => env = Some(self.string_map(node, path, check_env_name)?),
                "extraEnv" => extra_env = self.string_map(node, path, check_env_name)?,
                "labels" => labels = self.string_map(node, path, check_label_name)?,
                "extraLabels" => extra_labels = self.string_map(node, path, check_label_name)?,
                "exposedPorts" => exposed_ports = self.exposed_ports(node, path)?,
                "volumes" => volumes = self.volumes(node, path)?,
                "user" => user = Some(self.checked(node, path, check_user)?),
                "workingDir" => {
                    working_dir = Some(self.checked(node, path, check_working_dir)?);
                }
                "cmd" => {
                    cmd = self.strings(node, path)?;
                    cmd_span = Some(span_of(&node.span));
                }
                "entrypoint" => {
                    entrypoint = Some(self.strings(node, path)?);
                    entrypoint_span = Some(span_of(&node.span));
                }
                "checkPrograms" => check_programs = self.boolean(node, path)?,
                "maxLayers" => max_layers = Some(self.max_layers(node, path)?),
                "created" => created = Some(self.created(node, path)?),
                "compression" => compression = Some(self.checked(node, path, check_compression)?),
                "cuda" => cuda = self.cuda(node, path)?,
                "registries" => {
                    registries = self.checked_items(node, path, check_registry_image)?;
                }
                "users" => machine.users = self.users(node, path)?,
                "ssh" => machine.ssh = self.ssh(node, path)?,
                "sshdConfig" => machine.sshd_config = Some(self.text_value(node, path)?),
                "age" => machine.age = self.age(node, path)?,
                "tailscale" => machine.tailscale = self.tailscale(node, path)?,
                "extraStartupScript" => {
                    machine.extra_startup_script = Some(self.text_value(node, path)?.value);
                }
                "services" => machine.services = self.services(node, path)?,
                "stopTimeout" => machine.stop_timeout_ms = self.seconds(node, path, false)?,
                "nixConfig" => machine.nix_config = Some(self.nix_config(node, path)?),
                "nix" => machine.nix_enable = self.nix(node, path)?,
                "home" => machine.home = Some(self.home(node, path)?),
                _ => return Err(self.unknown_key("", entry, TOP_KEYS)),
            }
        }

        let name = name.ok_or_else(|| {
            self.missing(
                "name",
                root,
                self.expect(
                    "add the image name, e.g. name = \"my-app\"",
                    "add the image name, e.g. \"name\": \"my-app\"",
                )
                .to_owned(),
            )
        })?;
        // `env` replaces the default PATH when given; `extraEnv` always adds.
        let env_sets_path = env.as_ref().is_some_and(|env| env.contains_key("PATH"))
            || extra_env.contains_key("PATH");
        let mut env =
            env.unwrap_or_else(|| BTreeMap::from([("PATH".to_owned(), DEFAULT_PATH.to_owned())]));
        env.extend(extra_env);
        labels.extend(extra_labels);
        let mut overrides = BTreeMap::new();
        for (platform, key_span, table) in platform_tables {
            if !platforms
                .iter()
                .any(|p: &Item<Platform>| p.value == platform)
            {
                return Err(self.invalid(
                    &format!("platform.\"{platform}\""),
                    &key_span,
                    Problem::new(
                        format!("{platform} is not among the platforms this spec builds"),
                        format!("add \"{platform}\" to `platforms`, or remove this table"),
                    ),
                ));
            }
            let mut seen = self.spec(&overridden(root, table), file.clone())?;
            seen.platforms = platforms.clone();
            overrides.insert(platform, seen);
        }

        Ok(Spec {
            file,
            dir: self.dir.to_owned(),
            name,
            tag: tag.unwrap_or_else(|| "latest".to_owned()),
            platforms,
            overrides,
            from_image,
            system_packages,
            store_paths,
            copy_to_root,
            host_binaries,
            env,
            env_sets_path,
            labels,
            exposed_ports,
            volumes,
            user,
            working_dir,
            cmd,
            cmd_span,
            entrypoint,
            entrypoint_span,
            check_programs,
            max_layers: max_layers.unwrap_or(50),
            created,
            compression: compression.unwrap_or_default(),
            cuda,
            registries,
            machine,
            source_name: self.source.name().to_owned(),
            text: self.text().to_owned(),
        })
    }

    /// `platforms`: an array of platform names, without repeats.
    fn platforms(&self, node: &Node, path: &str) -> Result<Vec<Item<Platform>>, SpecError> {
        let items = self.array(node, path, "an array of strings")?;
        let mut platforms: Vec<Item<Platform>> = Vec::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            let item_path = index(path, position);
            let platform = self.checked(item, &item_path, |text| {
                text.parse::<Platform>().map_err(|problem| {
                    Problem::new(
                        problem,
                        "e.g. platforms = [\"linux/amd64\", \"linux/arm64\"]",
                    )
                })
            })?;
            if platforms.iter().any(|p| p.value == platform) {
                return Err(self.invalid(
                    &item_path,
                    &item.span,
                    Problem::new(
                        format!("{platform} is listed twice"),
                        "list each platform once",
                    ),
                ));
            }
            platforms.push(self.item(item, platform));
        }
        Ok(platforms)
    }

    /// `platform`: a table of per-platform tables, each holding top-level keys
    /// other than [`SHARED_KEYS`]; returns them with where their names are.
    fn platform_tables<'n>(
        &self,
        node: &'n Node,
        path: &str,
    ) -> Result<Vec<PlatformTable<'n>>, SpecError> {
        let expected = self.expect("a table", "an object");
        let mut tables = Vec::new();
        for entry in self.table(node, path, expected)? {
            let key_path = format!("{path}.\"{}\"", entry.key);
            let platform = entry.key.parse::<Platform>().map_err(|problem| {
                self.invalid(
                    &key_path,
                    &entry.key_span,
                    Problem::new(
                        problem,
                        "name the platform, e.g. [platform.\"linux/arm64\"]",
                    ),
                )
            })?;
            for key in self.table(&entry.node, &key_path, expected)? {
                if SHARED_KEYS.contains(&key.key.as_str()) {
                    return Err(self.invalid(
                        &child(&key_path, &key.key),
                        &key.key_span,
                        Problem::new(
                            format!("`{}` cannot differ between platforms", key.key),
                            "one image index has one name, tag, creation date and set of \
                             registries; set it at the top level",
                        ),
                    ));
                }
                if !TOP_KEYS.contains(&key.key.as_str()) {
                    return Err(self.unknown_key(&key_path, key, TOP_KEYS));
                }
            }
            if tables.iter().any(|(seen, _, _)| *seen == platform) {
                return Err(self.invalid(
                    &key_path,
                    &entry.key_span,
                    Problem::new(
                        format!("{platform} has a table already"),
                        "keep one table per platform",
                    ),
                ));
            }
            tables.push((platform, entry.key_span.clone(), &entry.node));
        }
        Ok(tables)
    }

    fn cuda(&self, node: &Node, path: &str) -> Result<CudaSpec, SpecError> {
        let mut cuda = CudaSpec::default();
        for entry in self.table(node, path, self.expect("a table", "an object"))? {
            let key_path = child(path, &entry.key);
            let node = &entry.node;
            match entry.key.as_str() {
                "enable" => cuda.enable = self.boolean(node, &key_path)?,
                "version" => {
                    cuda.version = Some(self.checked(node, &key_path, check_cuda_version)?);
                }
                "capabilities" => {
                    cuda.capabilities = self.checked(node, &key_path, check_capabilities)?;
                }
                "allowMixedVersions" => {
                    cuda.allow_mixed_versions = self.boolean(node, &key_path)?;
                }
                _ => return Err(self.unknown_key(path, entry, CUDA_KEYS)),
            }
        }
        Ok(cuda)
    }

    /// An array of strings, each run through `check`, with their spans.
    fn checked_items(
        &self,
        node: &Node,
        path: &str,
        check: fn(&str) -> Result<String, Problem>,
    ) -> Result<Vec<Item<String>>, SpecError> {
        let items = self.array(node, path, "an array of strings")?;
        items
            .iter()
            .enumerate()
            .map(|(position, item)| {
                let value = self.checked(item, &index(path, position), check)?;
                Ok(self.item(item, value))
            })
            .collect()
    }

    fn boolean(&self, node: &Node, path: &str) -> Result<bool, SpecError> {
        match node.value {
            Value::Bool(value) => Ok(value),
            _ => Err(self.wrong_type(path, node, "a boolean")),
        }
    }

    fn system_packages(&self, node: &Node, path: &str) -> Result<Vec<Item<PackageRef>>, SpecError> {
        let expected = self.expect(
            "an array of strings and tables",
            "an array of strings and objects",
        );
        let items = self.array(node, path, expected)?;
        let mut packages = Vec::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            let package = self.package(item, &index(path, position))?;
            packages.push(self.item(item, package));
        }
        Ok(packages)
    }

    /// One package: an installable or store path, or `{ file, attr? }`.
    fn package(&self, item: &Node, path: &str) -> Result<PackageRef, SpecError> {
        match &item.value {
            Value::String(_) => self.checked(item, path, check_package),
            Value::Table(entries) => {
                let mut file = None;
                let mut attr = None;
                let mut system = None;
                for entry in self.entries(entries, path)? {
                    let key_path = child(path, &entry.key);
                    match entry.key.as_str() {
                        "file" => {
                            file = Some(self.checked(&entry.node, &key_path, |text| {
                                check_local_path(text, self.dir)
                            })?);
                        }
                        "attr" => attr = Some(self.checked(&entry.node, &key_path, check_attr)?),
                        "system" => {
                            system = Some(self.checked(&entry.node, &key_path, check_system)?);
                        }
                        _ => return Err(self.unknown_key(path, entry, PACKAGE_KEYS)),
                    }
                }
                let file = file.ok_or_else(|| {
                    self.missing(&child(path, "file"), item, "name the Nix file to build (`file`, relative to the spec's folder) and optionally its attribute (`attr`)".to_owned())
                })?;
                Ok(PackageRef::NixFile { file, attr, system })
            }
            _ => Err(self.wrong_type(
                path,
                item,
                self.expect(
                    "a string (installable or store path) or a table { file, attr, system }",
                    "a string (installable or store path) or an object { file, attr, system }",
                ),
            )),
        }
    }

    fn copy_to_root(&self, node: &Node, path: &str) -> Result<Vec<Item<CopyToRoot>>, SpecError> {
        let expected = self.expect("an array of tables", "an array of objects");
        let items = self.array(node, path, expected)?;
        let mut copies = Vec::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            let path = index(path, position);
            let (mut src, mut dst, mut mode, mut uid, mut gid) = (None, None, None, None, None);
            for entry in self.table(item, &path, self.expect("a table", "an object"))? {
                let key_path = child(&path, &entry.key);
                let node = &entry.node;
                match entry.key.as_str() {
                    "src" => {
                        src =
                            Some(self.checked(node, &key_path, |text| {
                                check_local_path(text, self.dir)
                            })?)
                    }
                    "dst" => dst = Some(self.checked(node, &key_path, check_image_path)?),
                    "mode" => mode = Some(self.mode(node, &key_path)?),
                    "uid" => uid = Some(self.id(node, &key_path)?),
                    "gid" => gid = Some(self.id(node, &key_path)?),
                    _ => return Err(self.unknown_key(&path, entry, COPY_KEYS)),
                }
            }
            let example = self.expect(
                "e.g. { src = \"config\", dst = \"/etc/app\" }",
                "e.g. { \"src\": \"config\", \"dst\": \"/etc/app\" }",
            );
            let src = src.ok_or_else(|| {
                self.missing(
                    &child(&path, "src"),
                    item,
                    format!("name the local file or folder to copy, {example}"),
                )
            })?;
            let dst = dst.ok_or_else(|| {
                self.missing(
                    &child(&path, "dst"),
                    item,
                    format!("name the absolute path in the image, {example}"),
                )
            })?;
            copies.push(self.item(
                item,
                CopyToRoot {
                    src,
                    dst,
                    mode,
                    uid,
                    gid,
                },
            ));
        }
        Ok(copies)
    }

    /// Permission bits: an octal string ("0755") or an integer. In TOML a
    /// decimal `755` is almost surely meant as octal, so it must be written
    /// `0o755`.
    fn mode(&self, node: &Node, path: &str) -> Result<u32, SpecError> {
        let expected = "an octal string like \"0755\" or an integer";
        let mode = match &node.value {
            Value::String(text) => {
                let digits = text.strip_prefix("0o").unwrap_or(text);
                let octal =
                    !digits.is_empty() && digits.bytes().all(|byte| (b'0'..=b'7').contains(&byte));
                match i128::from_str_radix(digits, 8) {
                    Ok(mode) if octal => mode,
                    _ => {
                        return Err(self.invalid(
                            path,
                            &node.span,
                            Problem::new(
                                format!("{text:?} is not an octal mode"),
                                "write the permission bits in octal, e.g. \"0755\" or \"644\"",
                            ),
                        ))
                    }
                }
            }
            &Value::Integer { value, radix } => {
                if self.format == Format::Toml && radix == 10 && value > 7 {
                    return Err(self.invalid(
                        path,
                        &node.span,
                        Problem::new(
                            format!("{value} is a decimal number (octal {value:o})"),
                            format!("write the mode in octal: 0o{value} or \"0{value}\""),
                        ),
                    ));
                }
                value
            }
            _ => return Err(self.wrong_type(path, node, expected)),
        };
        u32::try_from(mode)
            .ok()
            .filter(|mode| *mode <= MAX_MODE)
            .ok_or_else(|| {
                self.invalid(
                    path,
                    &node.span,
                    Problem::new(
                        format!(
                            "mode {} is not between 0 and 0o7777",
                            &self.text()[node.span.clone()]
                        ),
                        "use permission bits only, e.g. 0o755",
                    ),
                )
            })
    }

    fn host_binaries(&self, node: &Node, path: &str) -> Result<Vec<Item<HostBinary>>, SpecError> {
        let expected = self.expect(
            "an array of strings and tables",
            "an array of strings and objects",
        );
        let items = self.array(node, path, expected)?;
        let mut binaries = Vec::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            let path = index(path, position);
            let binary = match &item.value {
                Value::String(_) => HostBinary {
                    src: self.checked(item, &path, |text| check_host_binary(text, self.dir))?,
                    dst: None,
                },
                Value::Table(entries) => {
                    let (mut src, mut dst) = (None, None);
                    for entry in self.entries(entries, &path)? {
                        let key_path = child(&path, &entry.key);
                        match entry.key.as_str() {
                            "src" => {
                                src = Some(self.checked(&entry.node, &key_path, |text| {
                                    check_host_binary(text, self.dir)
                                })?);
                            }
                            "dst" => {
                                dst =
                                    Some(self.checked(&entry.node, &key_path, check_image_path)?)
                            }
                            _ => return Err(self.unknown_key(&path, entry, HOST_BINARY_KEYS)),
                        }
                    }
                    let src = src.ok_or_else(|| {
                        self.missing(
                            &child(&path, "src"),
                            item,
                            "name the host binary: a path or a command found on PATH".to_owned(),
                        )
                    })?;
                    HostBinary { src, dst }
                }
                _ => {
                    return Err(self.wrong_type(
                        &path,
                        item,
                        self.expect(
                            "a string or a table { src, dst }",
                            "a string or an object { src, dst }",
                        ),
                    ))
                }
            };
            binaries.push(self.item(item, binary));
        }
        Ok(binaries)
    }

    fn exposed_ports(&self, node: &Node, path: &str) -> Result<Vec<String>, SpecError> {
        let items = self.array(node, path, "an array of strings")?;
        let mut ports: Vec<String> = Vec::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            let port = self.checked(item, &index(path, position), check_port)?;
            // "22" and "22/tcp" name the same port; the image config keeps one.
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        Ok(ports)
    }

    /// `volumes`: folders in the container, each normalised by [`check_volume`];
    /// two entries naming one folder (`"/data"` and `"/data/"`) are an error that
    /// names the first, as the image config could only keep one of them.
    fn volumes(&self, node: &Node, path: &str) -> Result<Vec<Item<String>>, SpecError> {
        let items = self.array(node, path, "an array of strings")?;
        let mut volumes: Vec<Item<String>> = Vec::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            let item_path = index(path, position);
            let volume = self.checked(item, &item_path, check_volume)?;
            // Every earlier entry was kept, so a volume's position is its index.
            if let Some(first) = volumes.iter().position(|seen| seen.value == volume) {
                let written = self.string(item, &item_path)?;
                let first_written = self.string(&items[first], &index(path, first))?;
                let problem = if written == first_written {
                    format!(
                        "{written:?} is listed twice, first as `{}`",
                        index(path, first)
                    )
                } else {
                    format!(
                        "{written:?} is the same folder as {first_written:?} (`{}`)",
                        index(path, first)
                    )
                };
                return Err(self.invalid(
                    &item_path,
                    &item.span,
                    Problem::new(problem, "list each volume once"),
                ));
            }
            volumes.push(self.item(item, volume));
        }
        Ok(volumes)
    }

    fn max_layers(&self, node: &Node, path: &str) -> Result<usize, SpecError> {
        let value = self.integer(node, path, "an integer")?;
        if !MAX_LAYERS.contains(&value) {
            return Err(self.invalid(
                path,
                &node.span,
                Problem::new(
                    format!("{value} is out of range {}..={}", MAX_LAYERS.start(), MAX_LAYERS.end()),
                    "one layer is gpubox's own and overlay filesystems allow about 127 layers; pick 2 to 125 (default 50)",
                ),
            ));
        }
        usize::try_from(value).map_err(|_| {
            self.invalid(
                path,
                &node.span,
                Problem::new("does not fit this machine", "use a smaller number"),
            )
        })
    }

    /// `created`: RFC 3339 text (quoted, or TOML's bare date-time) or Unix seconds.
    fn created(&self, node: &Node, path: &str) -> Result<i64, SpecError> {
        let seconds = match &node.value {
            Value::String(text) | Value::Datetime(text) => {
                let timestamp: jiff::Timestamp = text.parse().map_err(|error: jiff::Error| {
                    self.invalid(
                        path,
                        &node.span,
                        Problem::new(
                            format!("{text:?} is not an RFC 3339 time: {error}"),
                            "write a UTC time like \"2024-01-02T03:04:05Z\" or Unix seconds",
                        ),
                    )
                })?;
                i128::from(timestamp.as_second())
            }
            Value::Integer { value, .. } => *value,
            _ => {
                return Err(self.wrong_type(path, node, "an RFC 3339 time string or Unix seconds"))
            }
        };
        i64::try_from(seconds)
            .ok()
            .filter(|seconds| *seconds >= 0)
            .ok_or_else(|| {
                self.invalid(
                    path,
                    &node.span,
                    Problem::new(
                        format!("{seconds} is before 1970 or too large"),
                        "use a time from 1970-01-01T00:00:00Z on",
                    ),
                )
            })
    }
}

fn span_of(range: &Range<usize>) -> SourceSpan {
    SourceSpan::from(range.clone())
}

/// `parent.key`, quoting keys that are not plain words.
fn child(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if plain {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

fn index(parent: &str, position: usize) -> String {
    format!("{parent}[{position}]")
}

/// The known key closest to `key`, ignoring case, `_` and `-` (so
/// `max_layers` finds `maxLayers`), when it is close enough to be a typo.
/// Edit distance, unlike Jaro, also catches swapped letters in short keys (`dts`).
fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let fold = |text: &str| -> String {
        text.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let key = fold(key);
    known
        .iter()
        .map(|candidate| {
            (
                strsim::normalized_damerau_levenshtein(&key, &fold(candidate)),
                *candidate,
            )
        })
        .filter(|(similarity, _)| *similarity >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

fn check_no_nul(text: &str) -> Result<(), Problem> {
    if text.contains('\0') {
        return Err(Problem::new(
            "contains a NUL character",
            "remove the NUL character",
        ));
    }
    Ok(())
}

/// Repository names as registries accept them: `/`-separated components of
/// lowercase letters and digits joined by `.`, `_`, `__` or dashes.
fn check_image_name(name: &str) -> Result<String, Problem> {
    let help = "use lowercase letters, digits and . _ - separated by /, e.g. \"team/my-app\"";
    if name.is_empty() {
        return Err(Problem::new("the image name is empty", help));
    }
    for component in name.split('/') {
        let bytes = component.as_bytes();
        let alnum = |byte: &u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
        let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
            return Err(Problem::new(
                format!("{name:?} has an empty path component"),
                help,
            ));
        };
        if let Some(bad) = component.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        }) {
            return Err(Problem::new(
                format!("{bad:?} is not allowed in an image name"),
                help,
            ));
        }
        if !alnum(first) || !alnum(last) {
            return Err(Problem::new(
                format!("{component:?} must start and end with a lowercase letter or digit"),
                help,
            ));
        }
        let separators = component
            .split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            .filter(|run| !run.is_empty());
        for run in separators {
            if !(run == "." || run == "_" || run == "__" || run.bytes().all(|byte| byte == b'-')) {
                return Err(Problem::new(
                    format!("{run:?} in {component:?} is not a valid separator"),
                    "separate words with one `.`, one or two `_`, or dashes",
                ));
            }
        }
    }
    Ok(name.to_owned())
}

fn check_tag(tag: &str) -> Result<String, Problem> {
    let help = "a tag is 1 to 128 of A-Z a-z 0-9 _ . - and does not start with . or -";
    let valid = tag.len() <= 128
        && tag.bytes().enumerate().all(|(position, byte)| {
            byte.is_ascii_alphanumeric()
                || byte == b'_'
                || (position > 0 && (byte == b'.' || byte == b'-'))
        })
        && !tag.is_empty();
    if !valid {
        return Err(Problem::new(format!("{tag:?} is not a valid tag"), help));
    }
    Ok(tag.to_owned())
}

const NIX32: &str = "0123456789abcdfghijklmnpqrsvwxyz";

/// The document a platform sees: the top-level entries, those its table
/// names replaced by the table's, without `platforms` and `platform`.
fn overridden(root: &Node, table: &Node) -> Node {
    let (Value::Table(top), Value::Table(own)) = (&root.value, &table.value) else {
        return root.clone();
    };
    let mut entries: Vec<Entry> = top
        .iter()
        .filter(|e| e.key != "platforms" && e.key != "platform")
        .filter(|e| !own.iter().any(|o| o.key == e.key))
        .cloned()
        .collect();
    entries.extend(own.iter().cloned());
    Node {
        value: Value::Table(entries),
        span: root.span.clone(),
    }
}

/// A Nix system gpubox builds for.
fn check_system(text: &str) -> Result<String, Problem> {
    if NIX_SYSTEMS.contains(&text) {
        Ok(text.to_owned())
    } else {
        Err(Problem::new(
            format!("{text:?} is not a Nix system gpubox builds for"),
            format!("use one of {}", NIX_SYSTEMS.join(", ")),
        ))
    }
}

fn check_package(text: &str) -> Result<PackageRef, Problem> {
    if text.starts_with("/nix/store/") {
        return check_store_path(text).map(PackageRef::StorePath);
    }
    if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c == '\0') {
        return Err(Problem::new(
            format!("{text:?} is not a Nix installable"),
            "write one installable per string, e.g. \"nixpkgs#hello\" or \".#foo\"",
        ));
    }
    Ok(PackageRef::Installable(text.to_owned()))
}

/// A store path itself, /nix/store/HASH-NAME.
fn check_store_path(text: &str) -> Result<String, Problem> {
    let help =
        "name a store path itself, /nix/store/<32-char hash>-<name>, as `nix-store -q` prints it";
    let Some(base) = text.strip_prefix("/nix/store/") else {
        return Err(Problem::new(format!("{text:?} is not a store path"), help));
    };
    let (hash, name) = base.split_once('-').unwrap_or((base, ""));
    if hash.len() != 32 || !hash.chars().all(|c| NIX32.contains(c)) || name.is_empty() {
        return Err(Problem::new(format!("{text:?} is not a store path"), help));
    }
    if name.contains('/') {
        return Err(Problem::new(
            format!("{text:?} is a path inside a store path"),
            help,
        ));
    }
    Ok(text.to_owned())
}

fn check_attr(attr: &str) -> Result<String, Problem> {
    if attr.is_empty() || attr.chars().any(|c| c.is_whitespace() || c == '\0') {
        return Err(Problem::new(
            format!("{attr:?} is not an attribute path"),
            "write an attribute path like \"hello\" or \"python3Packages.numpy\", or leave attr out",
        ));
    }
    Ok(attr.to_owned())
}

/// A local path, relative to the spec's folder unless absolute. Resolved
/// lexically (no file system access): `.` parts and doubled `/` go away.
fn check_local_path(text: &str, dir: &Path) -> Result<PathBuf, Problem> {
    if text.is_empty() {
        return Err(Problem::new(
            "the path is empty",
            "name a file or folder, relative to the spec's folder",
        ));
    }
    check_no_nul(text)?;
    Ok(dir.join(text).components().collect())
}

/// The parts of `text`, an absolute path in the image (`what` says of what, in the
/// help) without `..`, leaving out `.` and empty ones.
fn absolute_parts<'a>(text: &'a str, what: &str) -> Result<Vec<&'a str>, Problem> {
    check_no_nul(text)?;
    if !text.starts_with('/') {
        return Err(Problem::new(
            format!("{text:?} is not an absolute path"),
            format!(
                "write the {what}, e.g. \"/{}\"",
                text.trim_start_matches("./")
            ),
        ));
    }
    let parts: Vec<&str> = text
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(Problem::new(
            format!("{text:?} contains `..`"),
            "write the path without `..`",
        ));
    }
    Ok(parts)
}

/// A path inside the image, for `dst`.
fn check_image_path(text: &str) -> Result<String, Problem> {
    let parts = absolute_parts(text, "full path in the image")?;
    if parts.starts_with(&["nix", "store"]) {
        return Err(Problem::new(
            format!("{text:?} is inside /nix/store"),
            "gpubox fills /nix/store from the closure; copy the file elsewhere or add it to systemPackages",
        ));
    }
    Ok(text.to_owned())
}

/// A persistent volume's folder in the container: absolute, not `/` and
/// without `..`; returned without `.` parts and doubled or trailing `/`, the
/// one spelling the image config's `Volumes` keeps for it.
fn check_volume(text: &str) -> Result<String, Problem> {
    let parts = absolute_parts(text, "folder's full path in the container")?;
    if parts.is_empty() {
        return Err(Problem::new(
            format!("{text:?} is the container's root folder"),
            "a volume mounted at `/` would hide the whole image; name a folder, e.g. \"/workspace\"",
        ));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// A host binary: a path (absolute, or relative to the spec's folder when it
/// has a `/`) or a bare command name the build looks up on PATH.
fn check_host_binary(text: &str, dir: &Path) -> Result<HostBinarySrc, Problem> {
    if text.contains('/') {
        check_local_path(text, dir).map(HostBinarySrc::Path)
    } else if text.is_empty() || text == "." || text == ".." || text.contains('\0') {
        Err(Problem::new(
            format!("{text:?} is not a command or path"),
            "name a command found on PATH (e.g. \"nvidia-smi\") or a path to the binary",
        ))
    } else {
        Ok(HostBinarySrc::Command(text.to_owned()))
    }
}

fn check_env_name(name: &str) -> Result<(), Problem> {
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Err(Problem::new(
            format!("{name:?} is not a valid variable name"),
            "variable names must be non-empty and contain no `=` or NUL",
        ));
    }
    Ok(())
}

fn check_label_name(name: &str) -> Result<(), Problem> {
    if name.is_empty() {
        return Err(Problem::new(
            "the label name is empty",
            "use a name like \"org.opencontainers.image.source\"",
        ));
    }
    check_no_nul(name)
}

/// "N", "N/tcp", "N/udp" or "N/sctp", normalised to "N/proto".
fn check_port(text: &str) -> Result<String, Problem> {
    let help = "write a port like \"22/tcp\", \"53/udp\" or \"8080\" (tcp)";
    let (number, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    let protocol = protocol.to_ascii_lowercase();
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(Problem::new(
            format!("unknown protocol {protocol:?} in {text:?}"),
            help,
        ));
    }
    match number.parse::<u16>() {
        Ok(port) if port > 0 && number.bytes().all(|byte| byte.is_ascii_digit()) => {
            Ok(format!("{port}/{protocol}"))
        }
        _ => Err(Problem::new(
            format!("{number:?} is not a port number from 1 to 65535"),
            help,
        )),
    }
}

/// "name", "uid", "name:group" or "uid:gid", as OCI's `User` takes it.
fn check_user(text: &str) -> Result<String, Problem> {
    let part_ok = |part: &str| {
        !part.is_empty()
            && !part.starts_with('-')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'))
    };
    let mut parts = text.splitn(2, ':');
    let valid = parts.all(part_ok);
    if !valid {
        return Err(Problem::new(
            format!("{text:?} is not a user"),
            "write a user name or uid, optionally with a group: \"root\", \"1000\", \"app:app\", \"1000:1000\"",
        ));
    }
    Ok(text.to_owned())
}

/// A base image named with one of [`FROM_IMAGE_TRANSPORTS`] and something after it.
fn check_from_image(text: &str) -> Result<String, Problem> {
    check_no_nul(text)?;
    let help = "write oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE or docker://REGISTRY/REPO:TAG";
    let Some(transport) = FROM_IMAGE_TRANSPORTS
        .iter()
        .find(|transport| text.starts_with(**transport))
    else {
        return Err(Problem::new(
            format!("{text:?} names no transport gpubox can read a base image from"),
            help,
        ));
    };
    if text[transport.len()..].is_empty() {
        return Err(Problem::new(
            format!("{text:?} names no image after `{transport}`"),
            help,
        ));
    }
    Ok(text.to_owned())
}

/// A registry destination, `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`.
fn check_registry_image(text: &str) -> Result<String, Problem> {
    check_no_nul(text)?;
    let help = "write docker://REGISTRY/REPO:TAG, e.g. \"docker://ghcr.io/me/app:latest\"";
    let Some(reference) = text.strip_prefix("docker://") else {
        return Err(Problem::new(
            format!("{text:?} is not a registry image"),
            help,
        ));
    };
    if !reference.contains('/') {
        return Err(Problem::new(
            format!("{text:?} names no repository after the registry"),
            help,
        ));
    }
    Ok(text.to_owned())
}

fn check_working_dir(text: &str) -> Result<String, Problem> {
    check_no_nul(text)?;
    if !text.starts_with('/') {
        return Err(Problem::new(
            format!("{text:?} is not an absolute path"),
            "write an absolute path such as \"/root\"",
        ));
    }
    Ok(text.to_owned())
}

fn check_cuda_version(text: &str) -> Result<String, Problem> {
    let mut parts = text.split('.');
    let numeric =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if numeric(parts.next()) && numeric(parts.next()) && parts.next().is_none() {
        Ok(text.to_owned())
    } else {
        Err(Problem::new(
            format!("`{text}` is not a CUDA version"),
            "write MAJOR.MINOR, e.g. version = \"12.4\"",
        ))
    }
}

fn check_capabilities(text: &str) -> Result<String, Problem> {
    for capability in text.split(',') {
        if !CUDA_CAPABILITIES.contains(&capability) {
            return Err(Problem::new(
                format!("`{capability}` is not an NVIDIA driver capability"),
                format!(
                    "use a comma-separated list of: {}",
                    CUDA_CAPABILITIES.join(", ")
                ),
            ));
        }
    }
    Ok(text.to_owned())
}

fn check_compression(text: &str) -> Result<Compression, Problem> {
    text.parse().map_err(|_| {
        Problem::new(
            format!("unknown compression {text:?}"),
            "use \"gzip\" (the default), \"zstd\", \"zstd:chunked\" or \"none\"",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::TOP_KEYS;

    /// The README's spec tables (the spec's own keys, then the machine keys) name
    /// every key a spec may have, in a row's first cell.
    #[test]
    fn the_readme_spec_tables_list_every_key() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("## The spec")
            .expect("the README has `## The spec`");
        let end = readme[start..]
            .find("## What the build checks")
            .map_or(readme.len(), |end| start + end);
        let first_cells: Vec<&str> = readme[start..end]
            .lines()
            .filter(|line| line.starts_with("| "))
            .filter_map(|line| line.split('|').nth(1))
            .collect();
        let missing: Vec<&&str> = TOP_KEYS
            .iter()
            .filter(|key| {
                !first_cells.iter().any(|cell| {
                    cell.contains(&format!("`{key}`")) || cell.contains(&format!("`{key}."))
                })
            })
            .collect();
        assert!(
            missing.is_empty(),
            "the README's spec tables lack {missing:?}"
        );
    }
}
