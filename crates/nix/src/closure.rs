use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{NixError, StorePath, STORE_DIR};

/// What the store knows about one path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathInfo {
    pub path: StorePath,
    /// Size of the path's NAR serialisation: its bytes on disk, near enough.
    pub nar_size: u64,
    /// Hash of the path's NAR serialisation as Nix prints it: `sha256:<nix
    /// base32>` (Nix up to 2.18) or `sha256-<base64>` (SRI, later versions).
    pub nar_hash: String,
    /// Sorted; may include the path itself.
    pub references: Vec<StorePath>,
}

/// A set of store paths closed under references, kept sorted by path so that
/// everything computed from it is deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Closure {
    infos: BTreeMap<StorePath, PathInfo>,
}

impl Closure {
    /// Builds a closure from path infos as given, sorting each path's
    /// references. It does not check that references are inside the set, so
    /// tests can make any graph; a path given twice keeps its last info.
    pub fn from_infos(infos: Vec<PathInfo>) -> Closure {
        let infos = infos
            .into_iter()
            .map(|mut info| {
                info.references.sort();
                info.references.dedup();
                (info.path.clone(), info)
            })
            .collect();
        Closure { infos }
    }

    /// Every path, sorted by store path.
    pub fn paths(&self) -> impl Iterator<Item = &PathInfo> {
        self.infos.values()
    }

    pub fn get(&self, path: &StorePath) -> Option<&PathInfo> {
        self.infos.get(path)
    }

    pub fn len(&self) -> usize {
        self.infos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }

    pub fn total_nar_size(&self) -> u64 {
        self.infos
            .values()
            .fold(0, |sum, info| sum.saturating_add(info.nar_size))
    }

    /// The closure Nix exports to a builder (`exportReferencesGraph` with
    /// structured attributes: the array `nix path-info --json` prints), for
    /// builds that cannot ask the store. Every path it references must be in it.
    pub fn from_exported_graph(graph: &Value) -> Result<Closure, NixError> {
        let bad = |detail: String| NixError::BadExportedGraph { detail };
        let mut infos = Vec::new();
        for (path, info) in parse_path_info_value(graph).map_err(bad)? {
            infos.push(info.ok_or_else(|| bad(format!("{path} is marked invalid")))?);
        }
        let closure = Closure::from_infos(infos);
        for info in closure.paths() {
            if let Some(missing) = info.references.iter().find(|r| closure.get(r).is_none()) {
                return Err(bad(format!(
                    "{} references {missing}, which the graph lacks",
                    info.path
                )));
            }
        }
        Ok(closure)
    }

    /// The part of this closure that `roots` reach by references (the roots
    /// included); roots it does not hold are ignored.
    pub fn reachable_from<'a>(&self, roots: impl IntoIterator<Item = &'a StorePath>) -> Closure {
        let mut kept = BTreeMap::new();
        let mut pending: Vec<&StorePath> = roots.into_iter().collect();
        while let Some(path) = pending.pop() {
            if kept.contains_key(path) {
                continue;
            }
            if let Some(info) = self.infos.get(path) {
                kept.insert(path.clone(), info.clone());
                pending.extend(&info.references);
            }
        }
        Closure { infos: kept }
    }
}

/// One entry of `nix path-info --json`: the info, or `None` for a path the
/// store does not have.
pub(crate) type PathInfoEntry = (StorePath, Option<PathInfo>);

/// Reads `nix path-info --json` output in both shapes Nix has printed: an
/// array of objects with a `path` field (up to 2.18; invalid paths carry
/// `"valid": false`) and an object keyed by path (2.19 and later; invalid paths
/// map to `null`). References given as base names are resolved against
/// [`STORE_DIR`]. The error is a description for [`crate::NixError::BadOutput`].
pub(crate) fn parse_path_info_json(text: &str) -> Result<Vec<PathInfoEntry>, String> {
    let json: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    parse_path_info_value(&json)
}

fn parse_path_info_value(json: &Value) -> Result<Vec<PathInfoEntry>, String> {
    match json {
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let fields = item
                    .as_object()
                    .ok_or_else(|| format!("array item {item} is not an object"))?;
                let path = fields
                    .get("path")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("object {item} has no \"path\" string"))?;
                let path = parse_json_store_path(path)?;
                if fields.get("valid").and_then(Value::as_bool) == Some(false) {
                    return Ok((path, None));
                }
                let info = parse_fields(&path, fields)?;
                Ok((path, Some(info)))
            })
            .collect(),
        Value::Object(entries) => entries
            .iter()
            .map(|(key, value)| {
                let path = parse_json_store_path(key)?;
                match value {
                    Value::Null => Ok((path, None)),
                    Value::Object(fields) => {
                        let info = parse_fields(&path, fields)?;
                        Ok((path, Some(info)))
                    }
                    other => Err(format!("the value for {key} is not an object: {other}")),
                }
            })
            .collect(),
        other => Err(format!("expected an array or an object, got {other}")),
    }
}

fn parse_fields(path: &StorePath, fields: &Map<String, Value>) -> Result<PathInfo, String> {
    let nar_size = fields
        .get("narSize")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{path} has no \"narSize\" number"))?;
    let nar_hash = fields
        .get("narHash")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{path} has no \"narHash\" string"))?
        .to_owned();
    let mut references = fields
        .get("references")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{path} has no \"references\" array"))?
        .iter()
        .map(|reference| {
            reference
                .as_str()
                .ok_or_else(|| format!("{path} has a reference that is not a string: {reference}"))
                .and_then(parse_json_store_path)
        })
        .collect::<Result<Vec<_>, _>>()?;
    references.sort();
    references.dedup();
    Ok(PathInfo {
        path: path.clone(),
        nar_size,
        nar_hash,
        references,
    })
}

fn parse_json_store_path(text: &str) -> Result<StorePath, String> {
    let full = if text.starts_with('/') {
        text.to_owned()
    } else {
        format!("{STORE_DIR}/{text}")
    };
    StorePath::parse(&full).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app-1.0";
    const B: &str = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-base-2.0";
    const HASH_A: &str = "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s";
    const HASH_B: &str = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    fn sp(s: &str) -> StorePath {
        StorePath::parse(s).unwrap()
    }

    fn expected() -> Vec<PathInfoEntry> {
        vec![
            (
                sp(A),
                Some(PathInfo {
                    path: sp(A),
                    nar_size: 560,
                    nar_hash: HASH_A.to_owned(),
                    references: vec![sp(A), sp(B)],
                }),
            ),
            (
                sp(B),
                Some(PathInfo {
                    path: sp(B),
                    nar_size: 120,
                    nar_hash: HASH_B.to_owned(),
                    references: vec![],
                }),
            ),
        ]
    }

    #[test]
    fn parses_the_array_shape_of_nix_2_8() {
        let json = format!(
            r#"[{{"path":"{A}","narHash":"{HASH_A}","narSize":560,"references":["{B}","{A}"],"registrationTime":1}},
                {{"path":"{B}","narHash":"{HASH_B}","narSize":120,"references":[]}}]"#
        );
        assert_eq!(parse_path_info_json(&json).unwrap(), expected());
    }

    #[test]
    fn parses_the_object_shape_of_nix_2_19_and_later() {
        let json = format!(
            r#"{{"{A}":{{"ca":null,"deriver":null,"narHash":"{HASH_A}","narSize":560,"references":["{B}","{A}"],"signatures":[]}},
                "{B}":{{"narHash":"{HASH_B}","narSize":120,"references":[]}}}}"#
        );
        assert_eq!(parse_path_info_json(&json).unwrap(), expected());
    }

    #[test]
    fn accepts_base_name_references() {
        let json = format!(
            r#"{{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app-1.0":{{"narHash":"{HASH_A}","narSize":560,
            "references":["bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-base-2.0","aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app-1.0"]}},
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-base-2.0":{{"narHash":"{HASH_B}","narSize":120,"references":[]}}}}"#
        );
        assert_eq!(parse_path_info_json(&json).unwrap(), expected());
    }

    #[test]
    fn reports_missing_paths_in_both_shapes() {
        let old = format!(r#"[{{"path":"{A}","valid":false}}]"#);
        let new = format!(r#"{{"{A}":null}}"#);
        for json in [old, new] {
            assert_eq!(parse_path_info_json(&json).unwrap(), vec![(sp(A), None)]);
        }
    }

    #[test]
    fn explains_unreadable_output() {
        let cases = [
            ("not json", "invalid JSON"),
            ("42", "expected an array or an object"),
            (r#"[{"narSize":1}]"#, "no \"path\""),
            (&format!(r#"{{"{A}":{{"references":[]}}}}"#), "narSize"),
            (&format!(r#"{{"{A}":{{"narSize":1}}}}"#), "narHash"),
            (
                &format!(r#"{{"{A}":{{"narSize":1,"narHash":"sha256:0"}}}}"#),
                "references",
            ),
            (r#"{"/tmp/x":null}"#, "/tmp/x"),
        ];
        for (json, needle) in cases {
            let err = parse_path_info_json(json).unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn reads_the_graph_nix_exports_to_a_builder() {
        // As `exportReferencesGraph` writes it into `.attrs.json` (Nix 2.8).
        let graph: Value = serde_json::from_str(&format!(
            r#"[{{"closureSize":680,"narHash":"{HASH_A}","narSize":560,"path":"{A}","references":["{A}","{B}"]}},
                {{"closureSize":120,"narHash":"{HASH_B}","narSize":120,"path":"{B}","references":[]}}]"#
        ))
        .unwrap();
        let closure = Closure::from_exported_graph(&graph).unwrap();
        let infos: Vec<PathInfo> = expected().into_iter().filter_map(|(_, i)| i).collect();
        assert_eq!(closure, Closure::from_infos(infos));

        let partial: Value = serde_json::from_str(&format!(
            r#"[{{"narHash":"{HASH_A}","narSize":560,"path":"{A}","references":["{B}"]}}]"#
        ))
        .unwrap();
        let err = Closure::from_exported_graph(&partial)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("{A} references {B}")), "{err}");
    }

    #[test]
    fn reachable_from_keeps_what_the_roots_reach() {
        const C: &str = "/nix/store/cccccccccccccccccccccccccccccccc-copied-1.0";
        let info = |path: &str, references: &[&str]| PathInfo {
            path: sp(path),
            nar_size: 1,
            nar_hash: HASH_B.to_owned(),
            references: references.iter().map(|r| sp(r)).collect(),
        };
        // C (a tree copied elsewhere) needs B; A needs B too.
        let closure = Closure::from_infos(vec![info(A, &[B]), info(B, &[]), info(C, &[B])]);
        let kept = closure.reachable_from([&sp(A)]);
        let kept: Vec<&str> = kept.paths().map(|i| i.path.as_str()).collect();
        assert_eq!(kept, [A, B]);
        assert!(closure.reachable_from([]).is_empty());
    }

    #[test]
    fn closure_is_sorted_and_sums_sizes() {
        let infos = expected().into_iter().filter_map(|(_, info)| info);
        let mut reversed: Vec<PathInfo> = infos.collect();
        reversed.reverse();
        reversed[1].references.reverse();
        let closure = Closure::from_infos(reversed);
        let order: Vec<&str> = closure.paths().map(|i| i.path.as_str()).collect();
        assert_eq!(order, [A, B]);
        assert_eq!(closure.len(), 2);
        assert!(!closure.is_empty());
        assert_eq!(closure.total_nar_size(), 680);
        assert_eq!(closure.get(&sp(A)).unwrap().references, vec![sp(A), sp(B)]);
        assert!(Closure::default().is_empty());
    }
}
