//! Shell-style patterns for `hostBinaries` paths: `*` (any run of characters), `?` (one
//! character) and `[...]` (one of a set: `[abc]`, `[a-z]`, `[!x]` or `[^x]` for any but),
//! within one path component; `\` takes the next character as written. As in the shell,
//! a wildcard does not match a leading `.` and the matches are sorted. Only files (or
//! links to files) match the last component; folders on the way may be links.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::HostBinError;

/// Whether `path` has a wildcard (`*`, `?` or `[`) and so names the files it matches.
pub fn is_pattern(path: &Path) -> bool {
    path.as_os_str()
        .as_bytes()
        .iter()
        .any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// The files `pattern` (absolute) matches on this machine, sorted; a pattern that matches
/// nothing is an error naming it.
pub fn expand(pattern: &Path) -> Result<Vec<PathBuf>, HostBinError> {
    let mut current = vec![PathBuf::from("/")];
    let components: Vec<&OsStr> = pattern
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part),
            Component::ParentDir => Some(OsStr::new("..")),
            _ => None,
        })
        .collect();
    for (position, part) in components.iter().enumerate() {
        let last = position + 1 == components.len();
        let mut next = Vec::new();
        for dir in &current {
            if !is_pattern(Path::new(part)) {
                let candidate = dir.join(unescape(part.as_bytes()));
                let fits = if last {
                    candidate.is_file()
                } else {
                    candidate.is_dir()
                };
                if fits {
                    next.push(candidate);
                }
                continue;
            }
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    continue
                }
                Err(source) => {
                    return Err(HostBinError::Io {
                        path: dir.clone(),
                        source,
                    })
                }
            };
            let mut matched = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|source| HostBinError::Io {
                    path: dir.clone(),
                    source,
                })?;
                let name = entry.file_name();
                if !matches(part.as_bytes(), name.as_bytes()) {
                    continue;
                }
                let candidate = dir.join(&name);
                // Links are followed: a link to a file is a file here.
                let fits = if last {
                    candidate.is_file()
                } else {
                    candidate.is_dir()
                };
                if fits {
                    matched.push(candidate);
                }
            }
            matched.sort();
            next.extend(matched);
        }
        current = next;
        if current.is_empty() {
            break;
        }
    }
    if current.is_empty() || components.is_empty() {
        return Err(HostBinError::NoMatch {
            pattern: pattern.to_owned(),
        });
    }
    current.sort();
    current.dedup();
    Ok(current)
}

/// A literal component with its `\` escapes removed.
fn unescape(part: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(part.len());
    let mut bytes = part.iter();
    while let Some(&b) = bytes.next() {
        if b == b'\\' {
            if let Some(&escaped) = bytes.next() {
                out.push(escaped);
                continue;
            }
        }
        out.push(b);
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

/// Whether the file name `name` fits the one-component `pattern`.
pub(crate) fn matches(pattern: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pattern.first() != Some(&b'.') {
        return false;
    }
    fits(pattern, name)
}

fn fits(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative, with one back-track point for the last `*` (linear in practice).
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => match class(&pattern[p..], name[n]) {
                Some((true, len)) => Some(p + len),
                Some((false, _)) => None,
                // An unclosed `[` is a plain character.
                None => (name[n] == b'[').then_some(p + 1),
            },
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == name[n]).then_some(p + 2),
            Some(&c) => (c == name[n]).then_some(p + 1),
            None => None,
        };
        match step {
            Some(next) => {
                p = next;
                n += 1;
            }
            None => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// A `[...]` set at the start of `pattern`: whether `c` is in it and the set's length;
/// `None` when it has no closing `]`.
fn class(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negated = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    loop {
        let &b = pattern.get(i)?;
        if b == b']' && !first {
            return Some((found != negated, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&e| e != b']') {
            let end = pattern[i + 2];
            found |= (b..=end).contains(&c);
            i += 3;
        } else {
            found |= b == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_the_shell() {
        let yes = [
            ("*.so", "_ssl.cpython-311-x86_64-linux-gnu.so"),
            ("lib*.so.?", "libz.so.1"),
            ("lib[a-c]*", "libbz2.so.1.0"),
            ("lib[!x]*", "libz.so"),
            ("*", "a"),
            ("a*b*c", "aXXbYYbc"),
            (".*", ".hidden"),
            ("[]]x", "]x"),
            ("\\*", "*"),
            ("a[", "a["),
        ];
        for (pattern, name) in yes {
            assert!(
                matches(pattern.as_bytes(), name.as_bytes()),
                "{pattern} {name}"
            );
        }
        let no = [
            ("*.so", "libz.so.1"),
            ("*", ".hidden"),
            ("lib[!z]*", "libz.so"),
            ("?", "ab"),
            ("a*b*c", "aXXbYYb"),
            ("\\*", "x"),
        ];
        for (pattern, name) in no {
            assert!(
                !matches(pattern.as_bytes(), name.as_bytes()),
                "{pattern} {name}"
            );
        }
    }

    #[test]
    fn expand_lists_matching_files_sorted_and_refuses_no_match() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.so", "a.so", "c.txt", ".d.so"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("e.so")).unwrap();
        let found = expand(&dir.path().join("*.so")).unwrap();
        assert_eq!(found, [dir.path().join("a.so"), dir.path().join("b.so")]);
        let found = expand(&dir.path().join("[c]*")).unwrap();
        assert_eq!(found, [dir.path().join("c.txt")]);
        let pattern = dir.path().join("*.py");
        match expand(&pattern) {
            Err(HostBinError::NoMatch { pattern: p }) => assert_eq!(p, pattern),
            other => panic!("{other:?}"),
        }
        assert!(is_pattern(&pattern));
        assert!(!is_pattern(Path::new("/usr/bin/python3")));
    }
}
