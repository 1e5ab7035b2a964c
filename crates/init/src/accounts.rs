//! Accounts from the image's `/etc/passwd` and `/etc/group`, read directly: a static
//! binary has no NSS, so `getpwnam` would not see them. Accepts what a container's
//! `User` accepts: `NAME`, `UID`, `NAME:GROUP`, `UID:GID` (names or numbers on either
//! side). A numeric user missing from `/etc/passwd` is accepted as runtimes accept it:
//! group 0 (unless given), home `/`.

use std::io;
use std::path::PathBuf;

use crate::steps::root_path;

const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";

/// An account as a process is started with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
    /// Supplementary group ids: the groups of `/etc/group` that list the account.
    pub groups: Vec<u32>,
}

/// Why a user cannot be resolved; names the user and the file looked in.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("cannot read {} to look up user `{user}`: {error}", path.display())]
    Read {
        user: String,
        path: PathBuf,
        error: io::Error,
    },
    #[error("user `{user}` is not in {}; add it to the image's users or use a numeric UID", path.display())]
    UnknownUser { user: String, path: PathBuf },
    #[error("group `{group}` of user `{user}` is not in {}; add it to the image or use a numeric GID", path.display())]
    UnknownGroup {
        user: String,
        group: String,
        path: PathBuf,
    },
}

/// Resolves `user` (`NAME`, `UID`, `NAME:GROUP` or `UID:GID`) against the image's
/// `/etc/passwd` and `/etc/group`.
pub fn resolve(user: &str) -> Result<Account, AccountError> {
    resolve_in(root_path(PASSWD), root_path(GROUP), user)
}

fn resolve_in(
    passwd_path: PathBuf,
    group_path: PathBuf,
    user: &str,
) -> Result<Account, AccountError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((user_part, group_part)) => (user_part, Some(group_part)),
        None => (user, None),
    };
    let passwd = std::fs::read_to_string(&passwd_path).map_err(|error| AccountError::Read {
        user: user.to_owned(),
        path: passwd_path.clone(),
        error,
    })?;
    let entry = passwd
        .lines()
        .filter_map(PasswdEntry::parse)
        .find(|entry| entry.name == user_part || user_part.parse() == Ok(entry.uid));
    let mut account = match (entry, user_part.parse::<u32>()) {
        (Some(entry), _) => Account {
            name: entry.name.to_owned(),
            uid: entry.uid,
            gid: entry.gid,
            home: entry.home.to_owned(),
            shell: entry.shell.to_owned(),
            groups: Vec::new(),
        },
        (None, Ok(uid)) => Account {
            name: uid.to_string(),
            uid,
            gid: 0,
            home: "/".to_owned(),
            shell: "/bin/sh".to_owned(),
            groups: Vec::new(),
        },
        (None, Err(_)) => {
            return Err(AccountError::UnknownUser {
                user: user.to_owned(),
                path: passwd_path,
            })
        }
    };

    // An image may have no /etc/group at all; then only numeric groups resolve.
    let groups = match std::fs::read_to_string(&group_path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            return Err(AccountError::Read {
                user: user.to_owned(),
                path: group_path,
                error,
            })
        }
    };
    let entries: Vec<GroupEntry> = groups.lines().filter_map(GroupEntry::parse).collect();
    if let Some(group) = group_part {
        account.gid = entries
            .iter()
            .find(|entry| entry.name == group)
            .map(|entry| entry.gid)
            .or_else(|| group.parse().ok())
            .ok_or_else(|| AccountError::UnknownGroup {
                user: user.to_owned(),
                group: group.to_owned(),
                path: group_path.clone(),
            })?;
    }
    account.groups = entries
        .iter()
        .filter(|entry| entry.members.contains(&account.name.as_str()))
        .map(|entry| entry.gid)
        .filter(|gid| *gid != account.gid)
        .collect();
    account.groups.dedup();
    Ok(account)
}

/// One line of `/etc/passwd`: `name:password:uid:gid:gecos:home:shell`.
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
    shell: &'a str,
}

impl<'a> PasswdEntry<'a> {
    /// `None` for comments and lines that are not entries, which the C library skips too.
    fn parse(line: &'a str) -> Option<Self> {
        let fields = entry_fields(line, 7)?;
        Some(Self {
            name: fields[0],
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
            home: fields[5],
            shell: fields[6],
        })
    }
}

/// One line of `/etc/group`: `name:password:gid:member,member`.
struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

impl<'a> GroupEntry<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let fields = entry_fields(line, 4)?;
        Some(Self {
            name: fields[0],
            gid: fields[2].parse().ok()?,
            members: fields[3].split(',').filter(|m| !m.is_empty()).collect(),
        })
    }
}

/// The colon-separated fields of an `/etc/passwd` or `/etc/group` line with at least
/// `count` of them; `None` for comments and shorter lines, which the C library skips.
fn entry_fields(line: &str, count: usize) -> Option<Vec<&str>> {
    let fields: Vec<&str> = line.split(':').collect();
    (!line.starts_with('#') && fields.len() >= count).then_some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "# accounts\nroot:x:0:0:root:/root:/bin/sh\nalice:x:1000:100:Alice:/home/alice:/bin/bash\nbroken line\n";
    const GROUP_TEXT: &str =
        "root:x:0:\nusers:x:100:\nwheel:x:10:bob,alice\ndocker:x:999:alice\nstaff:x:50:\n";

    fn resolve_here(user: &str) -> Result<Account, AccountError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("passwd"), PASSWD_TEXT).unwrap();
        std::fs::write(dir.path().join("group"), GROUP_TEXT).unwrap();
        resolve_in(dir.path().join("passwd"), dir.path().join("group"), user)
    }

    #[test]
    fn names_and_numbers_resolve_with_supplementary_groups() {
        let alice = resolve_here("alice").unwrap();
        assert_eq!(
            alice,
            Account {
                name: "alice".to_owned(),
                uid: 1000,
                gid: 100,
                home: "/home/alice".to_owned(),
                shell: "/bin/bash".to_owned(),
                groups: vec![10, 999],
            }
        );
        assert_eq!(resolve_here("1000").unwrap(), alice);
        assert_eq!(resolve_here("0").unwrap().name, "root");
    }

    #[test]
    fn a_group_is_taken_by_name_or_number() {
        let staff = resolve_here("alice:staff").unwrap();
        assert_eq!((staff.uid, staff.gid), (1000, 50));
        assert_eq!(staff.groups, [10, 999]);
        let numeric = resolve_here("1000:4242").unwrap();
        assert_eq!((numeric.uid, numeric.gid), (1000, 4242));
    }

    #[test]
    fn an_unknown_numeric_user_runs_as_runtimes_run_it() {
        let account = resolve_here("4242:docker").unwrap();
        assert_eq!((account.uid, account.gid), (4242, 999));
        assert_eq!(account.home, "/");
        assert!(account.groups.is_empty());
    }

    #[test]
    fn unknown_names_and_missing_files_name_the_user_and_the_file() {
        let error = resolve_here("mallory").unwrap_err().to_string();
        assert!(
            error.contains("`mallory`") && error.contains("passwd"),
            "{error}"
        );
        let error = resolve_here("alice:nogroup").unwrap_err().to_string();
        assert!(
            error.contains("`nogroup`") && error.contains("group"),
            "{error}"
        );
        let error = resolve_in(
            "/nonexistent/passwd".into(),
            "/nonexistent/group".into(),
            "root",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("/nonexistent/passwd") && error.contains("`root`"),
            "{error}"
        );
    }
}
