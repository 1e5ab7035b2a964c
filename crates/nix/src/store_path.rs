use std::fmt;
use std::path::{Component, Path};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::NixError;

/// The only store directory gpubox supports; images put store paths at the
/// same absolute path, so a relocated store would break every reference.
pub const STORE_DIR: &str = "/nix/store";

const HASH_LEN: usize = 32;
/// Nix's base-32 alphabet: digits and lowercase letters without e, o, t, u.
const NIX_BASE32: &str = "0123456789abcdfghijklmnpqrsvwxyz";
/// Nix refuses longer names.
const MAX_NAME_LEN: usize = 211;

/// A top-level store path, `/nix/store/<hash>-<name>`, checked the way Nix
/// checks it. A path below one (`/nix/store/<hash>-bash/bin/sh`) is not a
/// `StorePath`; see [`StorePath::containing`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorePath(String);

impl StorePath {
    pub fn parse(s: &str) -> Result<StorePath, NixError> {
        let invalid = |reason: String| NixError::InvalidStorePath {
            text: s.to_owned(),
            reason,
        };
        let base = s
            .strip_prefix(STORE_DIR)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| invalid(format!("it does not start with {STORE_DIR}/")))?;
        check_base_name(base).map_err(invalid)?;
        Ok(StorePath(s.to_owned()))
    }

    /// Splits a path at or below a store path into the store path and the rest
    /// (relative, empty for the store path itself). Returns `None` when the
    /// path is not lexically inside a valid store path, including when the rest
    /// climbs out of it with `..`.
    pub fn containing(path: &Path) -> Option<(StorePath, &Path)> {
        let below_store = path.strip_prefix(STORE_DIR).ok()?;
        let mut components = below_store.components();
        let Some(Component::Normal(base)) = components.next() else {
            return None;
        };
        let base = base.to_str()?;
        check_base_name(base).ok()?;
        let rest = components.as_path();
        if rest
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return None;
        }
        Some((StorePath(format!("{STORE_DIR}/{base}")), rest))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The base name: `<hash>-<name>`.
    pub fn base_name(&self) -> &str {
        &self.0[STORE_DIR.len() + 1..]
    }

    /// The part after `<hash>-`, e.g. `bash-5.2`.
    pub fn name(&self) -> &str {
        &self.base_name()[HASH_LEN + 1..]
    }

    /// The 32-character hash at the start of the base name.
    pub fn hash_part(&self) -> &str {
        &self.base_name()[..HASH_LEN]
    }
}

/// Checks `<hash>-<name>`; the error is the reason, for the caller's message.
fn check_base_name(base: &str) -> Result<(), String> {
    let (hash, name) = match (base.get(..HASH_LEN), base.get(HASH_LEN..)) {
        (Some(hash), Some(rest)) if rest.starts_with('-') => (hash, &rest[1..]),
        _ => {
            return Err(format!(
                "it must be followed by a {HASH_LEN}-character hash and a '-'"
            ))
        }
    };
    if let Some(bad) = hash.chars().find(|c| !NIX_BASE32.contains(*c)) {
        return Err(format!(
            "the hash `{hash}` contains '{bad}', which is not in Nix's base-32 alphabet"
        ));
    }
    if name.is_empty() {
        return Err("the name after the hash is empty".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("the name is longer than {MAX_NAME_LEN} characters"));
    }
    if name.starts_with('.') {
        return Err("the name starts with '.'".to_owned());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "+-._?=".contains(*c)))
    {
        let what = if bad == '/' {
            "'/' (a path inside a store path is not a store path)".to_owned()
        } else {
            format!("'{bad}', which Nix does not allow in names")
        };
        return Err(format!("the name `{name}` contains {what}"));
    }
    Ok(())
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for StorePath {
    type Err = NixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StorePath::parse(s)
    }
}

impl AsRef<Path> for StorePath {
    fn as_ref(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl Serialize for StorePath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StorePath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        StorePath::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASH: &str = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-bash-5.2p37";

    #[test]
    fn parses_and_splits_a_store_path() {
        let p = StorePath::parse(BASH).unwrap();
        assert_eq!(p.as_str(), BASH);
        assert_eq!(p.to_string(), BASH);
        assert_eq!(p.hash_part(), "0123456789abcdfghijklmnpqrsvwxyz");
        assert_eq!(p.name(), "bash-5.2p37");
    }

    #[test]
    fn rejects_malformed_paths_with_a_reason() {
        let cases = [
            ("/usr/bin/bash", "does not start with /nix/store/"),
            ("/nix/store/short-bash", "32-character hash"),
            (
                "/nix/store/0123456789abcdfghijklmnpqrsvwxyzbash",
                "32-character hash",
            ),
            ("/nix/store/e123456789abcdfghijklmnpqrsvwxyz-bash", "'e'"),
            ("/nix/store/0123456789abcdfghijklmnpqrsvwxyz-", "empty"),
            (
                "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-.hidden",
                "starts with '.'",
            ),
            ("/nix/store/0123456789abcdfghijklmnpqrsvwxyz-a b", "' '"),
            (
                "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-bash/bin/sh",
                "inside a store path",
            ),
        ];
        for (text, reason) in cases {
            let err = StorePath::parse(text).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, NixError::InvalidStorePath { .. }),
                "{text}: {err:?}"
            );
            assert!(message.contains(text), "{message}");
            assert!(message.contains(reason), "{text}: {message}");
        }
        let long = format!(
            "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-{}",
            "a".repeat(212)
        );
        assert!(StorePath::parse(&long).is_err());
    }

    #[test]
    fn containing_splits_paths_inside_store_paths() {
        let bash = StorePath::parse(BASH).unwrap();
        let inside = format!("{BASH}/bin/sh");
        assert_eq!(
            StorePath::containing(Path::new(&inside)),
            Some((bash.clone(), Path::new("bin/sh")))
        );
        assert_eq!(
            StorePath::containing(Path::new(BASH)),
            Some((bash.clone(), Path::new("")))
        );
        assert_eq!(
            StorePath::containing(Path::new(&format!("{BASH}/"))),
            Some((bash, Path::new("")))
        );
        assert_eq!(StorePath::containing(Path::new("/nix/store")), None);
        assert_eq!(StorePath::containing(Path::new("/usr/bin/sh")), None);
        assert_eq!(
            StorePath::containing(Path::new("/nix/store/not-a-store-path/bin")),
            None
        );
        assert_eq!(
            StorePath::containing(Path::new(&format!("{BASH}/../etc/passwd"))),
            None
        );
    }

    #[test]
    fn serde_round_trips_as_a_string_and_validates() {
        let p = StorePath::parse(BASH).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, format!("\"{BASH}\""));
        assert_eq!(serde_json::from_str::<StorePath>(&json).unwrap(), p);
        let err = serde_json::from_str::<StorePath>("\"/tmp/x\"").unwrap_err();
        assert!(err.to_string().contains("/tmp/x"), "{err}");
    }
}
