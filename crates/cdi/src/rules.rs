//! The checks a container engine makes when it loads a CDI spec, so that a spec this crate
//! writes or reports as fine is one the engines accept.
//!
//! The rules are those of the reference implementations (the Go `container-device-interface`
//! library that podman, containerd and CRI-O use, and the CNCF Rust crate this crate used to
//! call): the JSON schema's shape rules (required fields and types are enforced by
//! [`crate::Spec`]'s serde model; what the types cannot say is checked here), the version
//! rules, the name rules and the container edits rules. Paths are only required to be
//! non-empty, as there; nothing here touches the file system.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use crate::model::{ContainerEdits, DeviceNode, Hook, IntelRdt, Mount, NetDevice, Spec};

/// A released version of the CDI specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version(u32, u32, u32);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Every released CDI version, oldest first; engines refuse any other `cdiVersion`.
const KNOWN_VERSIONS: &[Version] = &[
    Version(0, 1, 0),
    Version(0, 2, 0),
    Version(0, 3, 0),
    Version(0, 4, 0),
    Version(0, 5, 0),
    Version(0, 6, 0),
    Version(0, 7, 0),
    Version(0, 8, 0),
    Version(1, 0, 0),
    Version(1, 1, 0),
];

/// The lowest version a spec is given when it uses nothing newer.
const EARLIEST: Version = Version(0, 3, 0);
/// Where `intelRdt` gained `schemata`/`enableMonitoring` and lost `enableCMT`/`enableMBM`,
/// and `netDevices` appeared.
const V1_1: Version = Version(1, 1, 0);

/// `text` as a known CDI version; a leading `v` is allowed, as the reference library allows it.
fn known_version(text: &str) -> Option<Version> {
    let bare = text.strip_prefix('v').unwrap_or(text);
    KNOWN_VERSIONS
        .iter()
        .copied()
        .find(|version| version.to_string() == bare)
}

/// Whether a spec uses a feature, and where: `Some(what was found)`.
type Uses = fn(&Spec) -> Option<String>;

/// The features each version added, newest first: the first one `spec` uses sets its minimum
/// version. Each check returns what it found, for messages. (0.8.0 and 1.0.0 changed no spec
/// content, so nothing requires them.)
const FEATURES: &[(Version, Uses)] = &[
    (V1_1, uses_v1_1),
    (Version(0, 7, 0), uses_v0_7),
    (Version(0, 6, 0), uses_v0_6),
    (Version(0, 5, 0), uses_v0_5),
    (Version(0, 4, 0), uses_v0_4),
];

/// The lowest CDI version that has everything `spec` uses, with the feature that needs it
/// (`None` when the earliest supported version, 0.3.0, will do).
pub(crate) fn minimum_required_version(spec: &Spec) -> (Version, Option<String>) {
    FEATURES
        .iter()
        .find_map(|(version, uses)| uses(spec).map(|found| (*version, Some(found))))
        .unwrap_or((EARLIEST, None))
}

/// Every set of container edits in `spec` with where it is, for messages: the spec's own, then
/// each device's.
fn all_edits(spec: &Spec) -> impl Iterator<Item = (String, &ContainerEdits)> {
    let common = spec
        .container_edits
        .iter()
        .map(|edits| ("containerEdits".to_owned(), edits));
    let devices = spec.devices.iter().map(|device| {
        (
            format!("device {:?} containerEdits", device.name),
            &device.container_edits,
        )
    });
    common.chain(devices)
}

fn items<T>(list: &Option<Vec<T>>) -> &[T] {
    list.as_deref().unwrap_or_default()
}

fn uses_v1_1(spec: &Spec) -> Option<String> {
    all_edits(spec).find_map(|(at, edits)| {
        if !items(&edits.net_devices).is_empty() {
            return Some(format!("{at} has netDevices"));
        }
        let rdt = edits.intel_rdt.as_ref()?;
        if rdt.schemata.is_some() {
            return Some(format!("{at} has intelRdt.schemata"));
        }
        rdt.enable_monitoring
            .is_some()
            .then(|| format!("{at} has intelRdt.enableMonitoring"))
    })
}

fn uses_v0_7(spec: &Spec) -> Option<String> {
    all_edits(spec).find_map(|(at, edits)| {
        if edits.intel_rdt.is_some() {
            Some(format!("{at} has intelRdt"))
        } else if !items(&edits.additional_gids).is_empty() {
            Some(format!("{at} has additionalGids"))
        } else {
            None
        }
    })
}

fn uses_v0_6(spec: &Spec) -> Option<String> {
    if !spec.annotations.is_empty() {
        return Some("the spec has annotations".to_owned());
    }
    if let Some(device) = spec.devices.iter().find(|d| !d.annotations.is_empty()) {
        return Some(format!("device {:?} has annotations", device.name));
    }
    let (_, class) = split_kind(&spec.kind)?;
    class
        .contains('.')
        .then(|| format!("kind {:?} has a dot in its class", spec.kind))
}

fn uses_v0_5(spec: &Spec) -> Option<String> {
    let named = spec.devices.iter().find(|device| {
        device
            .name
            .chars()
            .next()
            .is_some_and(|c| !c.is_ascii_alphabetic())
    });
    if let Some(device) = named {
        return Some(format!(
            "device name {:?} does not start with a letter",
            device.name
        ));
    }
    all_edits(spec).find_map(|(at, edits)| {
        items(&edits.device_nodes)
            .iter()
            .find(|node| node.host_path.as_deref().is_some_and(|p| !p.is_empty()))
            .map(|node| format!("{at} device node {:?} has a hostPath", node.path))
    })
}

fn uses_v0_4(spec: &Spec) -> Option<String> {
    all_edits(spec).find_map(|(at, edits)| {
        items(&edits.mounts)
            .iter()
            .find(|mount| mount.mount_type.as_deref().is_some_and(|t| !t.is_empty()))
            .map(|mount| format!("{at} mount at {:?} has a type", mount.container_path))
    })
}

/// Checks `spec` as a container engine does when loading it; the message names the first
/// thing wrong and where it is.
pub(crate) fn check(spec: &Spec) -> Result<(), String> {
    if spec.devices.is_empty() {
        return Err("it lists no devices; a CDI spec needs at least one".to_owned());
    }
    check_version(spec)?;
    check_kind(&spec.kind)?;
    check_annotations(&spec.annotations, "annotations")?;
    if let Some(edits) = &spec.container_edits {
        check_edits(edits).map_err(|e| format!("containerEdits: {e}"))?;
    }
    let mut names = HashSet::new();
    for device in &spec.devices {
        let at = format!("device {:?}", device.name);
        check_device_name(&device.name).map_err(|e| format!("{at}: name {e}"))?;
        check_annotations(&device.annotations, &format!("{at} annotations"))?;
        if device.container_edits.is_empty() {
            return Err(format!(
                "{at}: containerEdits is empty; a device must edit something"
            ));
        }
        check_edits(&device.container_edits).map_err(|e| format!("{at} containerEdits: {e}"))?;
        if !names.insert(device.name.as_str()) {
            return Err(format!("{at} is listed twice; device names must be unique"));
        }
    }
    Ok(())
}

/// `cdiVersion` is a released version, at least the one the content needs, and the content
/// has no field that version dropped.
fn check_version(spec: &Spec) -> Result<(), String> {
    let declared = known_version(&spec.cdi_version).ok_or_else(|| {
        let known: Vec<String> = KNOWN_VERSIONS.iter().map(Version::to_string).collect();
        format!(
            "cdiVersion {:?} is not a released CDI version (known: {})",
            spec.cdi_version,
            known.join(", ")
        )
    })?;
    if let (needed, Some(feature)) = minimum_required_version(spec) {
        if needed > declared {
            return Err(format!(
                "cdiVersion {declared} is too old for its content: {feature}, which needs CDI {needed}"
            ));
        }
    }
    if declared >= V1_1 {
        for (at, edits) in all_edits(spec) {
            if let Some(rdt) = &edits.intel_rdt {
                for (field, set) in [
                    ("enableCMT", rdt.enable_cmt.is_some()),
                    ("enableMBM", rdt.enable_mbm.is_some()),
                ] {
                    if set {
                        return Err(format!(
                            "{at} intelRdt.{field} was removed in CDI 1.1.0 (cdiVersion is {declared})"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// `vendor/class` as two parts, or `None` when `kind` is not of that form.
fn split_kind(kind: &str) -> Option<(&str, &str)> {
    let (vendor, class) = kind.split_once('/')?;
    (!vendor.is_empty() && !class.is_empty() && !class.contains('/')).then_some((vendor, class))
}

fn check_kind(kind: &str) -> Result<(), String> {
    let (vendor, class) = split_kind(kind)
        .ok_or_else(|| format!("kind {kind:?} is not of the form <vendor>/<class>"))?;
    check_name(vendor, false, &['-', '_', '.'])
        .map_err(|e| format!("kind {kind:?}: vendor {vendor:?} {e}"))?;
    check_name(class, false, &['-', '_', '.'])
        .map_err(|e| format!("kind {kind:?}: class {class:?} {e}"))
}

fn check_device_name(name: &str) -> Result<(), String> {
    check_name(name, true, &['-', '_', '.', ':'])
}

/// An ASCII name: letters and digits, plus `inner` characters anywhere but at either end; it
/// starts with a letter (or a digit, when `digit_first`) and ends with a letter or digit.
fn check_name(name: &str, digit_first: bool, inner: &[char]) -> Result<(), String> {
    let Some(first) = name.chars().next() else {
        return Err("is empty".to_owned());
    };
    let first_ok = if digit_first {
        first.is_ascii_alphanumeric()
    } else {
        first.is_ascii_alphabetic()
    };
    if !first_ok {
        let wanted = if digit_first {
            "a letter or digit"
        } else {
            "a letter"
        };
        return Err(format!("must start with {wanted}, not {first:?}"));
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| !c.is_ascii_alphanumeric() && !inner.contains(&c))
    {
        return Err(format!("has the invalid character {bad:?}"));
    }
    if !name.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must end with a letter or digit".to_owned());
    }
    Ok(())
}

/// Most bytes all keys and values of one annotation map may hold together (Kubernetes' limit).
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;
/// Longest name part of an annotation key.
const ANNOTATION_NAME_MAX: usize = 63;
/// Longest prefix (DNS subdomain) of an annotation key.
const ANNOTATION_PREFIX_MAX: usize = 253;

/// Annotation keys follow Kubernetes' rules for qualified names (compared in lower case): an
/// optional DNS-subdomain prefix and `/`, then a name of at most 63 letters, digits, `-`, `_`
/// and `.` that starts and ends with a letter or digit. Values are free, but keys and values
/// together stay within 256 KiB.
fn check_annotations(annotations: &BTreeMap<String, String>, at: &str) -> Result<(), String> {
    for key in annotations.keys() {
        check_annotation_key(&key.to_lowercase()).map_err(|e| format!("{at}: key {key:?} {e}"))?;
    }
    let total: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > ANNOTATIONS_MAX_BYTES {
        return Err(format!(
            "{at} hold {total} bytes, more than the {ANNOTATIONS_MAX_BYTES} allowed"
        ));
    }
    Ok(())
}

fn check_annotation_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        None => (None, key),
        Some((_, rest)) if rest.contains('/') => {
            return Err("has more than one '/'".to_owned());
        }
        Some((prefix, name)) => (Some(prefix), name),
    };
    if let Some(prefix) = prefix {
        check_dns_subdomain(prefix).map_err(|e| format!("has a prefix that {e}"))?;
    }
    if name.is_empty() {
        return Err("has an empty name part".to_owned());
    }
    if name.len() > ANNOTATION_NAME_MAX {
        return Err(format!(
            "has a name part longer than {ANNOTATION_NAME_MAX} characters"
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let ends_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ends_ok || !name.chars().all(allowed) {
        return Err("has a name part that is not letters, digits, '-', '_' or '.' starting and ending with a letter or digit".to_owned());
    }
    Ok(())
}

/// A lower-case RFC 1123 subdomain: dot-separated labels of `a-z`, `0-9` and `-`, each
/// starting and ending with a letter or digit, 253 characters at most.
fn check_dns_subdomain(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("is empty".to_owned());
    }
    if text.len() > ANNOTATION_PREFIX_MAX {
        return Err(format!("is longer than {ANNOTATION_PREFIX_MAX} characters"));
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let label_ok = |label: &str| {
        label.starts_with(alnum)
            && label.ends_with(alnum)
            && label.chars().all(|c| alnum(c) || c == '-')
    };
    if !text.split('.').all(label_ok) {
        return Err("is not a lower-case DNS subdomain (such as example.com)".to_owned());
    }
    Ok(())
}

fn check_edits(edits: &ContainerEdits) -> Result<(), String> {
    check_env(items(&edits.env)).map_err(|e| format!("env: {e}"))?;
    items(&edits.device_nodes)
        .iter()
        .try_for_each(check_device_node)?;
    items(&edits.hooks).iter().try_for_each(check_hook)?;
    items(&edits.mounts).iter().try_for_each(check_mount)?;
    if let Some(rdt) = &edits.intel_rdt {
        check_intel_rdt(rdt)?;
    }
    check_net_devices(items(&edits.net_devices))
}

/// Each entry is `NAME=VALUE` with a non-empty name (the value may be empty).
fn check_env(env: &[String]) -> Result<(), String> {
    match env.iter().find(|entry| {
        entry
            .split_once('=')
            .is_none_or(|(name, _)| name.is_empty())
    }) {
        Some(entry) => Err(format!(
            "{entry:?} is not NAME=VALUE (no '=' or an empty name)"
        )),
        None => Ok(()),
    }
}

/// Device node types the OCI runtime spec knows (block, character, unbuffered character,
/// FIFO); empty means "take it from the host node".
const NODE_TYPES: &[&str] = &["", "b", "c", "u", "p"];

fn check_device_node(node: &DeviceNode) -> Result<(), String> {
    if node.path.is_empty() {
        return Err("a device node has an empty path".to_owned());
    }
    let at = format!("device node {:?}", node.path);
    if let Some(node_type) = &node.node_type {
        if !NODE_TYPES.contains(&node_type.as_str()) {
            return Err(format!("{at}: type {node_type:?} is not one of b, c, u, p"));
        }
    }
    if let Some(permissions) = &node.permissions {
        if permissions != "none" && !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(format!(
                "{at}: permissions {permissions:?} are not made of r, w, m (or \"none\")"
            ));
        }
    }
    Ok(())
}

/// The OCI hook points a CDI hook may name.
const HOOK_NAMES: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

fn check_hook(hook: &Hook) -> Result<(), String> {
    if !HOOK_NAMES.contains(&hook.hook_name.as_str()) {
        return Err(format!(
            "hook {:?} ({}): hookName is not one of {}",
            hook.hook_name,
            hook.path,
            HOOK_NAMES.join(", ")
        ));
    }
    let at = format!("{} hook", hook.hook_name);
    if hook.path.is_empty() {
        return Err(format!("{at} has an empty path"));
    }
    check_env(items(&hook.env)).map_err(|e| format!("{at} {:?} env: {e}", hook.path))?;
    if let Some(timeout) = hook.timeout {
        if u32::try_from(timeout).is_err() {
            return Err(format!(
                "{at} {:?}: timeout {timeout} is not between 0 and {}",
                hook.path,
                u32::MAX
            ));
        }
    }
    Ok(())
}

fn check_mount(mount: &Mount) -> Result<(), String> {
    if mount.host_path.is_empty() {
        return Err(format!(
            "the mount at {:?} has an empty hostPath",
            mount.container_path
        ));
    }
    if mount.container_path.is_empty() {
        return Err(format!(
            "the mount of {:?} has an empty containerPath",
            mount.host_path
        ));
    }
    Ok(())
}

/// Longest `closID` (it names a folder under `/sys/fs/resctrl`).
const CLOS_ID_MAX: usize = 4095;

fn check_intel_rdt(rdt: &IntelRdt) -> Result<(), String> {
    if let Some(clos_id) = &rdt.clos_id {
        if clos_id.len() > CLOS_ID_MAX
            || clos_id == "."
            || clos_id == ".."
            || clos_id.contains(['/', '\n'])
        {
            return Err(format!(
                "intelRdt.closID {clos_id:?} is not a usable resctrl group name"
            ));
        }
    }
    Ok(())
}

fn check_net_devices(devices: &[NetDevice]) -> Result<(), String> {
    let mut host_names = HashSet::new();
    let mut names = HashSet::new();
    for device in devices {
        if device.host_interface_name.is_empty() {
            return Err(format!(
                "net device {:?} has an empty hostInterfaceName",
                device.name
            ));
        }
        if device.name.is_empty() {
            return Err(format!(
                "net device {:?} has an empty name",
                device.host_interface_name
            ));
        }
        if !host_names.insert(&device.host_interface_name) {
            return Err(format!(
                "net device hostInterfaceName {:?} is listed twice",
                device.host_interface_name
            ));
        }
        if !names.insert(&device.name) {
            return Err(format!("net device name {:?} is listed twice", device.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Device;

    fn node(path: &str) -> DeviceNode {
        DeviceNode {
            path: path.to_owned(),
            ..DeviceNode::default()
        }
    }

    fn edits_with_node() -> ContainerEdits {
        ContainerEdits {
            device_nodes: Some(vec![node("/dev/nvidia0")]),
            ..ContainerEdits::default()
        }
    }

    fn device(name: &str) -> Device {
        Device {
            name: name.to_owned(),
            annotations: BTreeMap::new(),
            container_edits: edits_with_node(),
        }
    }

    /// A valid spec that needs nothing newer than 0.3.0.
    fn valid() -> Spec {
        Spec {
            cdi_version: "0.3.0".to_owned(),
            kind: "vendor.com/device".to_owned(),
            annotations: BTreeMap::new(),
            devices: vec![device("gpu0")],
            container_edits: Some(ContainerEdits {
                env: Some(vec!["A=1".to_owned(), "EMPTY=".to_owned()]),
                mounts: Some(vec![Mount {
                    host_path: "/h".to_owned(),
                    container_path: "/c".to_owned(),
                    mount_type: None,
                    options: Some(vec!["ro".to_owned()]),
                }]),
                hooks: Some(vec![Hook {
                    hook_name: "createContainer".to_owned(),
                    path: "/bin/hook".to_owned(),
                    timeout: Some(5),
                    ..Hook::default()
                }]),
                ..ContainerEdits::default()
            }),
        }
    }

    /// `spec` at the newest version, so that only the rule under test can fail.
    fn newest(mut spec: Spec) -> Spec {
        spec.cdi_version = "1.1.0".to_owned();
        spec
    }

    fn common(spec: &mut Spec) -> &mut ContainerEdits {
        spec.container_edits.get_or_insert_with(Default::default)
    }

    /// `check` fails and its message has every one of `needles`.
    #[track_caller]
    fn rejected(spec: &Spec, needles: &[&str]) {
        let message = check(spec).expect_err("spec should be invalid");
        for needle in needles {
            assert!(message.contains(needle), "{needle:?} not in {message:?}");
        }
    }

    #[test]
    fn a_valid_spec_passes() {
        check(&valid()).expect("valid");
        assert_eq!(minimum_required_version(&valid()), (EARLIEST, None));
        check(&newest(valid())).expect("newer versions accept older content");
    }

    #[test]
    fn no_devices_is_rejected() {
        let mut spec = valid();
        spec.devices.clear();
        rejected(&spec, &["no devices"]);
    }

    #[test]
    fn unknown_versions_are_rejected_and_a_leading_v_is_allowed() {
        for version in ["9.9.9", "", "0.05.0", "1.1", "vv0.3.0"] {
            let mut spec = valid();
            spec.cdi_version = version.to_owned();
            rejected(&spec, &["cdiVersion", "not a released CDI version"]);
        }
        let mut spec = valid();
        spec.cdi_version = "v0.3.0".to_owned();
        check(&spec).expect("v prefix");
    }

    #[test]
    fn each_feature_needs_its_version() {
        type Change = fn(&mut Spec);
        let cases: &[(Change, &str, &str)] = &[
            (
                |s| common(s).mounts.as_mut().unwrap()[0].mount_type = Some("bind".to_owned()),
                "0.4.0",
                "has a type",
            ),
            (|s| s.devices[0].name = "0".to_owned(), "0.5.0", "\"0\""),
            (
                |s| {
                    s.devices[0].container_edits.device_nodes.as_mut().unwrap()[0].host_path =
                        Some("/host/dev/nvidia0".to_owned())
                },
                "0.5.0",
                "hostPath",
            ),
            (
                |s| {
                    s.annotations.insert("a".to_owned(), "b".to_owned());
                },
                "0.6.0",
                "annotations",
            ),
            (
                |s| {
                    s.devices[0]
                        .annotations
                        .insert("a".to_owned(), "b".to_owned());
                },
                "0.6.0",
                "device \"gpu0\" has annotations",
            ),
            (
                |s| s.kind = "vendor.com/dev.ice".to_owned(),
                "0.6.0",
                "dot in its class",
            ),
            (
                |s| common(s).intel_rdt = Some(IntelRdt::default()),
                "0.7.0",
                "intelRdt",
            ),
            (
                |s| s.devices[0].container_edits.additional_gids = Some(vec![5]),
                "0.7.0",
                "additionalGids",
            ),
            (
                |s| {
                    common(s).net_devices = Some(vec![NetDevice {
                        host_interface_name: "eth0".to_owned(),
                        name: "net0".to_owned(),
                    }])
                },
                "1.1.0",
                "netDevices",
            ),
            (
                |s| {
                    s.devices[0].container_edits.intel_rdt = Some(IntelRdt {
                        schemata: Some(Vec::new()),
                        ..IntelRdt::default()
                    })
                },
                "1.1.0",
                "intelRdt.schemata",
            ),
            (
                |s| {
                    common(s).intel_rdt = Some(IntelRdt {
                        enable_monitoring: Some(false),
                        ..IntelRdt::default()
                    })
                },
                "1.1.0",
                "intelRdt.enableMonitoring",
            ),
        ];
        for (change, needed, feature) in cases {
            let mut spec = valid();
            change(&mut spec);
            let (version, found) = minimum_required_version(&spec);
            assert_eq!(version.to_string(), *needed, "{found:?}");
            let found = found.expect("a feature");
            assert!(found.contains(feature), "{feature:?} not in {found:?}");
            // Declared at 0.3.0, below what the feature needs: rejected, naming both.
            rejected(&spec, &["too old", feature, &format!("needs CDI {needed}")]);
            spec.cdi_version = (*needed).to_owned();
            check(&spec).unwrap_or_else(|e| panic!("{needed}: {e}"));
        }
    }

    #[test]
    fn empty_optional_lists_need_no_newer_version() {
        let mut spec = valid();
        common(&mut spec).net_devices = Some(Vec::new());
        common(&mut spec).additional_gids = Some(Vec::new());
        common(&mut spec).mounts.as_mut().unwrap()[0].mount_type = Some(String::new());
        spec.devices[0]
            .container_edits
            .device_nodes
            .as_mut()
            .unwrap()[0]
            .host_path = Some(String::new());
        assert_eq!(minimum_required_version(&spec), (EARLIEST, None));
        check(&spec).expect("valid");
    }

    #[test]
    fn legacy_intel_rdt_fields_are_refused_from_1_1_on() {
        for (cmt, mbm, field) in [
            (Some(true), None, "enableCMT"),
            (None, Some(false), "enableMBM"),
        ] {
            let mut spec = valid();
            spec.devices[0].container_edits.intel_rdt = Some(IntelRdt {
                enable_cmt: cmt,
                enable_mbm: mbm,
                ..IntelRdt::default()
            });
            spec.cdi_version = "1.0.0".to_owned();
            check(&spec).expect("legacy fields are fine before 1.1.0");
            spec.cdi_version = "1.1.0".to_owned();
            rejected(&spec, &["device \"gpu0\"", field, "removed in CDI 1.1.0"]);
        }
    }

    #[test]
    fn kind_must_be_vendor_slash_class() {
        for (kind, needles) in [
            ("vendor.com", &["not of the form <vendor>/<class>"][..]),
            ("/gpu", &["not of the form"]),
            ("vendor.com/", &["not of the form"]),
            ("a/b/c", &["not of the form"]),
            (
                "1vendor.com/gpu",
                &["vendor \"1vendor.com\"", "start with a letter"],
            ),
            (
                "vendor.com/g pu",
                &["class \"g pu\"", "invalid character ' '"],
            ),
            (
                "vendor.com/gpu-",
                &["class \"gpu-\"", "end with a letter or digit"],
            ),
            ("vendor:com/gpu", &["vendor \"vendor:com\"", "':'"]),
        ] {
            let mut spec = newest(valid());
            spec.kind = kind.to_owned();
            rejected(&spec, needles);
        }
        for kind in ["a/b", "Vendor_1.example-x/Class.A_b-9"] {
            let mut spec = newest(valid());
            spec.kind = kind.to_owned();
            check(&spec).unwrap_or_else(|e| panic!("{kind}: {e}"));
        }
    }

    #[test]
    fn device_names_are_checked() {
        for (name, needle) in [
            ("", "name is empty"),
            ("bad name!", "invalid character ' '"),
            ("_gpu", "must start with a letter or digit"),
            ("gpu_", "must end with a letter or digit"),
            ("gpu/0", "invalid character '/'"),
            ("gpü", "invalid character 'ü'"),
        ] {
            let mut spec = newest(valid());
            spec.devices[0].name = name.to_owned();
            rejected(&spec, &[&format!("device {name:?}"), needle]);
        }
        let mut spec = newest(valid());
        spec.devices[0].name = "GPU-5e1f:0_a.b".to_owned();
        check(&spec).expect("valid name");
    }

    #[test]
    fn device_names_are_unique() {
        let mut spec = valid();
        spec.devices.push(device("gpu0"));
        rejected(&spec, &["device \"gpu0\"", "listed twice"]);
    }

    #[test]
    fn devices_must_edit_something() {
        let mut spec = valid();
        spec.devices[0].container_edits = ContainerEdits {
            env: Some(Vec::new()),
            ..ContainerEdits::default()
        };
        rejected(&spec, &["device \"gpu0\"", "containerEdits is empty"]);
        // The spec's own edits may be empty.
        let mut spec = valid();
        spec.container_edits = Some(ContainerEdits::default());
        check(&spec).expect("empty common edits");
    }

    #[test]
    fn annotation_keys_and_size_are_checked() {
        for (key, needle) in [
            ("inva$$lid", "name part"),
            ("", "empty name part"),
            ("example.com/", "empty name part"),
            ("/name", "prefix that is empty"),
            ("a/b/c", "more than one '/'"),
            (
                "Bad_Prefix/name",
                "prefix that is not a lower-case DNS subdomain",
            ),
            ("example..com/name", "prefix that is not"),
            ("-name", "name part"),
            ("name.", "name part"),
        ] {
            let mut spec = newest(valid());
            spec.annotations.insert(key.to_owned(), "v".to_owned());
            rejected(&spec, &["annotations", &format!("key {key:?}"), needle]);
        }
        let long = "x".repeat(ANNOTATION_NAME_MAX + 1);
        let mut spec = newest(valid());
        spec.devices[0].annotations.insert(long, "v".to_owned());
        rejected(&spec, &["device \"gpu0\" annotations", "longer than 63"]);

        let mut spec = newest(valid());
        spec.annotations
            .insert("big".to_owned(), "v".repeat(ANNOTATIONS_MAX_BYTES));
        rejected(&spec, &["annotations hold", "bytes"]);

        let mut spec = newest(valid());
        for key in [
            "cdi.k8s.io/vfio17",
            "Example.COM/MyName",
            "123-abc",
            "my.name",
            "a",
        ] {
            spec.annotations
                .insert(key.to_owned(), "nvidia.com/gpu=0".to_owned());
        }
        spec.devices[0]
            .annotations
            .insert("x_y".to_owned(), String::new());
        check(&spec).expect("valid annotations");
    }

    #[test]
    fn env_entries_are_name_equals_value() {
        for entry in ["NOEQUALS", "=value"] {
            let mut spec = valid();
            common(&mut spec).env = Some(vec![entry.to_owned()]);
            rejected(&spec, &["containerEdits: env", &format!("{entry:?}")]);
        }
    }

    #[test]
    fn device_nodes_are_checked() {
        let cases: &[(DeviceNode, &str)] = &[
            (node(""), "empty path"),
            (
                DeviceNode {
                    node_type: Some("x".to_owned()),
                    ..node("/dev/a")
                },
                "device node \"/dev/a\": type \"x\"",
            ),
            (
                DeviceNode {
                    permissions: Some("rwx".to_owned()),
                    ..node("/dev/a")
                },
                "device node \"/dev/a\": permissions \"rwx\"",
            ),
        ];
        for (bad, needle) in cases {
            let mut spec = valid();
            spec.devices[0].container_edits.device_nodes = Some(vec![bad.clone()]);
            rejected(&spec, &["device \"gpu0\" containerEdits", needle]);
        }
        let mut spec = valid();
        spec.devices[0].container_edits.device_nodes = Some(
            ["", "b", "c", "u", "p"]
                .iter()
                .zip(["", "none", "r", "rw", "rwm"])
                .map(|(node_type, permissions)| DeviceNode {
                    node_type: Some((*node_type).to_owned()),
                    permissions: Some(permissions.to_owned()),
                    ..node("/dev/a")
                })
                .collect(),
        );
        check(&spec).expect("valid nodes");
    }

    #[test]
    fn hooks_are_checked() {
        let hook = |name: &str, path: &str| Hook {
            hook_name: name.to_owned(),
            path: path.to_owned(),
            ..Hook::default()
        };
        let cases: &[(Hook, &str)] = &[
            (
                hook("preStart", "/bin/h"),
                "hook \"preStart\" (/bin/h): hookName",
            ),
            (hook("poststop", ""), "poststop hook has an empty path"),
            (
                Hook {
                    env: Some(vec!["X".to_owned()]),
                    ..hook("prestart", "/bin/h")
                },
                "prestart hook \"/bin/h\" env: \"X\"",
            ),
            (
                Hook {
                    timeout: Some(-1),
                    ..hook("prestart", "/bin/h")
                },
                "timeout -1",
            ),
            (
                Hook {
                    timeout: Some(i64::from(u32::MAX) + 1),
                    ..hook("prestart", "/bin/h")
                },
                "timeout 4294967296",
            ),
        ];
        for (bad, needle) in cases {
            let mut spec = valid();
            common(&mut spec).hooks = Some(vec![bad.clone()]);
            rejected(&spec, &["containerEdits", needle]);
        }
        let mut spec = valid();
        common(&mut spec).hooks = Some(
            HOOK_NAMES
                .iter()
                .map(|name| Hook {
                    timeout: Some(i64::from(u32::MAX)),
                    ..hook(name, "/bin/h")
                })
                .collect(),
        );
        check(&spec).expect("valid hooks");
    }

    #[test]
    fn mounts_need_both_paths() {
        for (host, container, needle) in [
            ("", "/c", "mount at \"/c\" has an empty hostPath"),
            ("/h", "", "mount of \"/h\" has an empty containerPath"),
        ] {
            let mut spec = valid();
            spec.devices[0].container_edits.mounts = Some(vec![Mount {
                host_path: host.to_owned(),
                container_path: container.to_owned(),
                ..Mount::default()
            }]);
            rejected(&spec, &["device \"gpu0\" containerEdits", needle]);
        }
    }

    #[test]
    fn intel_rdt_clos_id_is_checked() {
        for clos_id in [".", "..", "a/b", "a\nb", &"x".repeat(CLOS_ID_MAX + 1)] {
            let mut spec = newest(valid());
            common(&mut spec).intel_rdt = Some(IntelRdt {
                clos_id: Some(clos_id.to_owned()),
                ..IntelRdt::default()
            });
            rejected(&spec, &["intelRdt.closID"]);
        }
        let mut spec = newest(valid());
        common(&mut spec).intel_rdt = Some(IntelRdt {
            clos_id: Some("group-a".to_owned()),
            ..IntelRdt::default()
        });
        check(&spec).expect("valid closID");
    }

    #[test]
    fn net_devices_are_checked() {
        let net = |host: &str, name: &str| NetDevice {
            host_interface_name: host.to_owned(),
            name: name.to_owned(),
        };
        for (devices, needle) in [
            (vec![net("", "n")], "empty hostInterfaceName"),
            (vec![net("eth0", "")], "empty name"),
            (
                vec![net("eth0", "a"), net("eth0", "b")],
                "hostInterfaceName \"eth0\" is listed twice",
            ),
            (
                vec![net("eth0", "a"), net("eth1", "a")],
                "name \"a\" is listed twice",
            ),
        ] {
            let mut spec = newest(valid());
            common(&mut spec).net_devices = Some(devices);
            rejected(&spec, &["net device", needle]);
        }
    }
}
