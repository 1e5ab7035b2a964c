//! Which Debian package installed a host file, asked of `dpkg-query`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// An installed Debian package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebianPackage {
    /// Without the `:arch` qualifier, e.g. `libc6`.
    pub name: String,
    pub version: String,
}

/// The Debian package that owns `path`, trying the path as given, its
/// canonical path, and each with `/bin`, `/sbin` and `/lib` swapped for their
/// `/usr` twins (dpkg records the path a package shipped, which merged-usr
/// systems reach by either name). `None` when `dpkg-query` is missing or knows
/// no owner.
pub fn package_of(path: &Path) -> Option<DebianPackage> {
    let mut candidates = vec![path.to_path_buf()];
    if let Ok(canonical) = path.canonicalize() {
        candidates.push(canonical);
    }
    let swapped: Vec<PathBuf> = candidates
        .iter()
        .filter_map(|p| merged_usr_twin(p))
        .collect();
    candidates.extend(swapped);
    candidates.dedup();
    let owner = candidates.iter().find_map(|p| owner_of(p))?;
    let version = query(&["-W", "-f", "${Version}", &owner])?;
    let name = owner.split(':').next().unwrap_or(&owner).to_owned();
    Some(DebianPackage {
        name,
        version: version.trim().to_owned(),
    })
    .filter(|p| !p.version.is_empty())
}

/// The same file's path on the other side of merged-usr, if it has one.
fn merged_usr_twin(path: &Path) -> Option<PathBuf> {
    const TWINS: [(&str, &str); 3] = [
        ("/bin", "/usr/bin"),
        ("/sbin", "/usr/sbin"),
        ("/lib", "/usr/lib"),
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

/// The first package `dpkg-query -S` names for exactly `path` (as qualified,
/// e.g. `libc6:amd64`); diversion lines and pattern matches of other paths are
/// skipped.
fn owner_of(path: &Path) -> Option<String> {
    let wanted = path.to_str()?;
    let out = query(&["-S", wanted])?;
    out.lines().find_map(|line| {
        let (packages, file) = line.split_once(": ")?;
        if file != wanted || line.starts_with("diversion by ") {
            return None;
        }
        packages.split(", ").next().map(str::to_owned)
    })
}

/// `dpkg-query ARGS`'s standard output, or `None` when it cannot run or fails.
fn query(args: &[&str]) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have_dpkg() -> bool {
        query(&["--version"]).is_some()
    }

    #[test]
    fn finds_the_package_of_a_system_program_by_either_merged_usr_name() {
        if !have_dpkg() {
            gpubox_testkit::missing("dpkg-query");
            return;
        }
        for path in ["/bin/ls", "/usr/bin/ls"] {
            let found = package_of(Path::new(path)).unwrap_or_else(|| panic!("{path}"));
            assert_eq!(found.name, "coreutils", "{path}");
            assert!(
                found
                    .version
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit()),
                "{path}: {found:?}"
            );
        }
    }

    #[test]
    fn knows_no_package_for_a_file_no_package_installed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mine");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(package_of(&file), None);
    }

    #[test]
    fn swaps_merged_usr_prefixes_both_ways() {
        let twin = |p: &str| merged_usr_twin(Path::new(p));
        assert_eq!(
            twin("/lib/x86_64-linux-gnu/libc.so.6"),
            Some("/usr/lib/x86_64-linux-gnu/libc.so.6".into())
        );
        assert_eq!(twin("/usr/bin/ls"), Some("/bin/ls".into()));
        assert_eq!(twin("/sbin/ip"), Some("/usr/sbin/ip".into()));
        assert_eq!(twin("/opt/x"), None);
        assert_eq!(twin("/library/x"), None);
    }
}
