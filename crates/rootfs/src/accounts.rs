//! The image's accounts: which ones gpubox needs (root, `nobody`, the spec's
//! `user`, `users.<name>`, `sshd` with SSH on), how they merge with a base image's
//! `/etc/passwd`, `/etc/group` and `/etc/shadow`, the home folders of the accounts
//! gpubox adds, and the account table the image ends up with, against which
//! owners and service users are checked. The rules are in the crate doc.

use std::collections::{BTreeMap, BTreeSet};

use gpubox_initplan::AccountPlan;
use gpubox_oci::source::LayerFile;
use gpubox_oci::{Entry, EntryKind, FileSource};
use gpubox_spec::MachineSpec;

use crate::tree::{Origin, Tree};
use crate::{image_path, RootfsError};

/// The first id given to an account or group gpubox invents.
const FIRST_ACCOUNT_ID: u32 = 1000;
/// The uid and gid of sshd's privilege-separation account, as Fedora and NixOS use.
const SSHD_ID: u32 = 74;

/// What gpubox writes for accounts. A file is `None` when gpubox leaves the
/// base's as it is: nothing is missing from it, or it is not text gpubox can
/// extend.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Accounts {
    pub(crate) passwd: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) shadow: Option<String>,
    /// The accounts whose home folder the image gets and the init prepares:
    /// every `users.<name>`, and the spec's `user` when gpubox adds it.
    pub(crate) homes: Vec<AccountPlan>,
}

/// One account gpubox needs, as a passwd line's fields.
struct Account {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
    shell: String,
}

/// A group gpubox needs: name, gid and members.
struct Group {
    name: String,
    gid: u32,
    members: BTreeSet<String>,
}

impl Accounts {
    /// The accounts for the spec's `user` and machine keys, merged with the
    /// base image's files at `etc/passwd`, `etc/group` and `etc/shadow`
    /// (`base_files` is empty without a base).
    pub(crate) fn generate(
        user: &str,
        machine: &MachineSpec,
        base_files: &BTreeMap<String, LayerFile>,
    ) -> Accounts {
        let base_passwd = base_files.get("etc/passwd");
        let base_group = base_files.get("etc/group");
        let (passwd_text, group_text) = (text_of(base_passwd), text_of(base_group));
        let mut used: BTreeSet<u32> = entries(passwd_text)
            .flat_map(|fields| [fields.get(2).copied(), fields.get(3).copied()])
            .chain(entries(group_text).map(|fields| fields.get(2).copied()))
            .filter_map(|id| id?.parse().ok())
            .collect();
        let mut accounts = vec![
            Account {
                name: "root".to_owned(),
                uid: 0,
                gid: 0,
                home: "/root".to_owned(),
                shell: "/bin/sh".to_owned(),
            },
            Account {
                name: "nobody".to_owned(),
                uid: 65534,
                gid: 65534,
                home: "/nonexistent".to_owned(),
                shell: "/bin/false".to_owned(),
            },
        ];
        let mut groups = vec![Group::new("root", 0), Group::new("nogroup", 65534)];
        let mut homes = Vec::new();
        for item in &machine.users {
            let spec = &item.value;
            used.extend([spec.uid, spec.gid]);
            accounts.push(Account {
                name: spec.name.clone(),
                uid: spec.uid,
                gid: spec.gid,
                home: spec.home.clone(),
                shell: spec.shell.clone(),
            });
            if !groups.iter().any(|group| group.name == spec.group) {
                groups.push(Group::new(&spec.group, spec.gid));
            }
            homes.push(AccountPlan {
                name: spec.name.clone(),
                uid: spec.uid,
                gid: spec.gid,
                home: spec.home.clone(),
            });
        }
        let base_has = |name: &str| entries(passwd_text).any(|fields| fields[0] == name);
        // A new account takes the first id from `start` up that nothing uses, and
        // as its group the one of its name, or a new one with its uid.
        let mut add = |name: &str, start: u32, home: &str, shell: &str| -> Account {
            let uid = free_id(&used, start);
            used.insert(uid);
            let existing = groups
                .iter()
                .find(|group| group.name == name)
                .map(|group| group.gid)
                .or_else(|| gid_of(group_text, name));
            let gid = existing.unwrap_or(uid);
            if existing.is_none() {
                groups.push(Group::new(name, gid));
            }
            Account {
                name: name.to_owned(),
                uid,
                gid,
                home: home.to_owned(),
                shell: shell.to_owned(),
            }
        };
        let listed = |accounts: &[Account], name: &str| accounts.iter().any(|a| a.name == name);
        if let Some(name) = named_user(user) {
            if !listed(&accounts, name) && !base_has(name) {
                let account = add(name, FIRST_ACCOUNT_ID, &format!("/home/{name}"), "/bin/sh");
                homes.push(AccountPlan {
                    name: account.name.clone(),
                    uid: account.uid,
                    gid: account.gid,
                    home: account.home.clone(),
                });
                accounts.push(account);
            }
        }
        if machine.ssh.enable && !listed(&accounts, "sshd") && !base_has("sshd") {
            let account = add("sshd", SSHD_ID, "/var/empty", "/bin/false");
            accounts.push(account);
        }
        // Supplementary groups: a name no group has yet becomes a group of its own.
        for item in &machine.users {
            for name in &item.value.groups {
                let index = match groups.iter().position(|group| group.name == *name) {
                    Some(index) => index,
                    None => {
                        let gid = free_id(&used, FIRST_ACCOUNT_ID);
                        used.insert(gid);
                        groups.push(Group::new(name, gid));
                        groups.len() - 1
                    }
                };
                groups[index].members.insert(item.value.name.clone());
            }
        }

        let passwd_lines = accounts.iter().map(|a| {
            let line = format!(
                "{0}:x:{1}:{2}:{0}:{3}:{4}",
                a.name, a.uid, a.gid, a.home, a.shell
            );
            (a.name.as_str(), line)
        });
        let group_lines = groups.iter().map(|g| {
            let members: Vec<&str> = g.members.iter().map(String::as_str).collect();
            let line = format!("{}:x:{}:{}", g.name, g.gid, members.join(","));
            (g.name.as_str(), line)
        });
        // Shadow entries for the accounts the passwd file gains; `*`: no password
        // works, yet sshd still lets keys in (`!` would lock the account).
        let shadow_lines = accounts
            .iter()
            .filter(|a| lacks(base_passwd, &a.name))
            .map(|a| (a.name.as_str(), format!("{}:*:::::::", a.name)));
        Accounts {
            passwd: merge_lines(base_passwd, passwd_lines),
            group: merge_lines(base_group, group_lines),
            shadow: merge_lines(base_files.get("etc/shadow"), shadow_lines),
            homes,
        }
    }

    /// Puts the files and home folders in the top layer, as defaults a user
    /// source can replace.
    pub(crate) fn add_to(&self, tree: &mut Tree) -> Result<(), RootfsError> {
        let path = |raw: &str| image_path(raw.trim_start_matches('/'), &Origin::Generated);
        for home in &self.homes {
            let mut entry = Entry::directory(path(&home.home)?, 0o755);
            entry.uid = home.uid;
            entry.gid = home.gid;
            tree.insert_default(entry);
        }
        for (file, text, mode) in [
            ("etc/passwd", &self.passwd, 0o644),
            ("etc/group", &self.group, 0o644),
            ("etc/shadow", &self.shadow, 0o600),
        ] {
            if let Some(text) = text {
                tree.insert_default(Entry::bytes(path(file)?, mode, text.as_bytes()));
            }
        }
        Ok(())
    }
}

impl Group {
    fn new(name: &str, gid: u32) -> Group {
        Group {
            name: name.to_owned(),
            gid,
            members: BTreeSet::new(),
        }
    }
}

/// The spec's `user` when it is an account name other than root or nobody (not a
/// uid, not `name:group`), which then needs an account.
/// The home folder of the image's `user` (a name or a uid, as the spec's `user`
/// writes it) among the accounts gpubox gives the image over the base's: `None` for
/// root, for an account without a usable home (`/nonexistent`, `/`) and for a uid no
/// account has.
pub fn home_of(
    user: &str,
    machine: &MachineSpec,
    base_files: &BTreeMap<String, LayerFile>,
) -> Option<String> {
    let accounts = Accounts::generate(user, machine, base_files);
    let passwd = accounts
        .passwd
        .as_deref()
        .unwrap_or_else(|| text_of(base_files.get("etc/passwd")));
    let account = user.split(':').next()?;
    let home = entries(passwd)
        .find(|fields| fields[0] == account || fields.get(2) == Some(&account))?
        .get(5)
        .map(|home| (*home).to_owned())?;
    let usable = home.starts_with('/') && home != "/" && home != "/nonexistent" && home != "/root";
    usable.then_some(home)
}

pub(crate) fn named_user(user: &str) -> Option<&str> {
    let is_name = !user.is_empty()
        && !user.contains(':')
        && !user.bytes().all(|b| b.is_ascii_digit())
        && user != "root"
        && user != "nobody";
    is_name.then_some(user)
}

/// The smallest id from `start` up that `used` lacks.
fn free_id(used: &BTreeSet<u32>, start: u32) -> u32 {
    (start..).find(|id| !used.contains(id)).unwrap_or(start)
}

fn text_of(file: Option<&LayerFile>) -> &str {
    match file {
        Some(LayerFile::Text(text)) => text,
        _ => "",
    }
}

/// The fields of each entry of a passwd, group or shadow file.
fn entries(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| line.split(':').collect())
}

/// The gid of the group `name` in a group file's text.
fn gid_of(group_text: &str, name: &str) -> Option<u32> {
    entries(group_text)
        .find(|fields| fields[0] == name)
        .and_then(|fields| fields.get(2)?.parse().ok())
}

/// Whether gpubox adds `name` to the passwd file: the base has none, or one
/// that is text without the name.
fn lacks(base: Option<&LayerFile>, name: &str) -> bool {
    match base {
        None => true,
        Some(LayerFile::Text(text)) => !entries(text).any(|fields| fields[0] == name),
        Some(_) => false,
    }
}

/// The base's file with the `needed` (name, line) pairs whose name it lacks
/// appended; `None` when a base file needs nothing or is not text gpubox can
/// extend, or when there is no base file and nothing is needed.
fn merge_lines<'a>(
    base: Option<&LayerFile>,
    needed: impl Iterator<Item = (&'a str, String)>,
) -> Option<String> {
    let mut merged = match base {
        None => String::new(),
        Some(LayerFile::Text(text)) => text.clone(),
        Some(_) => return None,
    };
    let missing: Vec<String> = needed
        .filter(|(name, _)| lacks(base, name))
        .map(|(_, line)| line)
        .collect();
    if missing.is_empty() {
        return None;
    }
    if !merged.is_empty() && !merged.ends_with('\n') {
        merged.push('\n');
    }
    for line in missing {
        merged.push_str(&line);
        merged.push('\n');
    }
    Some(merged)
}

/// The image's accounts and groups as its `/etc/passwd` and `/etc/group` say,
/// whoever wrote them: gpubox, a user source, or the base image.
pub(crate) struct AccountTable {
    /// Name, uid and primary gid.
    users: Vec<(String, String, String)>,
    /// Name and gid.
    groups: Vec<(String, String)>,
}

impl AccountTable {
    /// The top layer's files, else the base image's; `None` when neither has an
    /// `/etc/passwd` gpubox can read, so names cannot be checked.
    pub(crate) fn read(
        tree: &Tree,
        base_files: &BTreeMap<String, LayerFile>,
    ) -> Option<AccountTable> {
        let text = |file: &str| -> Option<String> {
            let Some(entry) = tree.get(&image_path(file, &Origin::Generated).ok()?) else {
                return match base_files.get(file) {
                    Some(LayerFile::Text(text)) => Some(text.clone()),
                    _ => None,
                };
            };
            match &entry.kind {
                EntryKind::File {
                    source: FileSource::Bytes(bytes),
                    ..
                } => Some(String::from_utf8_lossy(bytes).into_owned()),
                EntryKind::File {
                    source: FileSource::Path(path),
                    ..
                } => std::fs::read_to_string(path).ok(),
                _ => None,
            }
        };
        let users = entries(&text("etc/passwd")?)
            .filter(|f| f.len() >= 4)
            .map(|f| (f[0].to_owned(), f[2].to_owned(), f[3].to_owned()))
            .collect();
        let groups = entries(&text("etc/group").unwrap_or_default())
            .filter(|f| f.len() >= 3)
            .map(|f| (f[0].to_owned(), f[2].to_owned()))
            .collect();
        Some(AccountTable { users, groups })
    }

    pub(crate) fn has_user(&self, name: &str) -> bool {
        self.users.iter().any(|(user, _, _)| user == name)
    }

    pub(crate) fn has_group(&self, name: &str) -> bool {
        self.groups.iter().any(|(group, _)| group == name)
    }

    /// The name of the primary group of `user` (a name or a uid).
    pub(crate) fn primary_group(&self, user: &str) -> Option<String> {
        let (_, _, gid) = self
            .users
            .iter()
            .find(|(name, uid, _)| name == user || uid == user)?;
        self.groups
            .iter()
            .find(|(_, group_gid)| group_gid == gid)
            .map(|(name, _)| name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(files: &[(&str, &str)]) -> BTreeMap<String, LayerFile> {
        files
            .iter()
            .map(|(path, text)| ((*path).to_owned(), LayerFile::Text((*text).to_owned())))
            .collect()
    }

    /// The machine keys of a spec with `body` after its name.
    fn machine(body: &str) -> MachineSpec {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("name = \"demo\"\n{body}");
        gpubox_spec::parse(&text, &dir.path().join("gpubox.toml"))
            .unwrap_or_else(|e| panic!("{e}"))
            .machine
    }

    fn home(name: &str, id: u32, home: &str) -> AccountPlan {
        AccountPlan {
            name: name.to_owned(),
            uid: id,
            gid: id,
            home: home.to_owned(),
        }
    }

    const BASE_PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        nobody:x:65534:65534::/:/sbin/nologin\ndev:x:1000:1000::/home/dev:/bin/bash";
    const BASE_GROUP: &str = "root:x:0:\nnogroup:x:65534:\ndev:x:1000:\n";

    #[test]
    fn without_a_base_gpubox_writes_its_own_accounts() {
        let accounts = Accounts::generate("alice", &MachineSpec::default(), &BTreeMap::new());
        assert_eq!(
            accounts.passwd.as_deref(),
            Some(
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
                 alice:x:1000:1000:alice:/home/alice:/bin/sh\n"
            )
        );
        assert_eq!(
            accounts.group.as_deref(),
            Some("root:x:0:\nnogroup:x:65534:\nalice:x:1000:\n")
        );
        assert_eq!(
            accounts.shadow.as_deref(),
            Some("root:*:::::::\nnobody:*:::::::\nalice:*:::::::\n")
        );
        assert_eq!(accounts.homes, [home("alice", 1000, "/home/alice")]);
    }

    #[test]
    fn a_base_keeps_its_accounts_and_gets_only_what_it_lacks() {
        let files = base(&[("etc/passwd", BASE_PASSWD), ("etc/group", BASE_GROUP)]);
        // Everything gpubox needs is there: nothing is written.
        for user in ["root", "dev"] {
            let accounts = Accounts::generate(user, &MachineSpec::default(), &files);
            assert_eq!(
                accounts,
                Accounts {
                    passwd: None,
                    group: None,
                    shadow: None,
                    homes: Vec::new()
                },
                "{user}"
            );
        }

        // A new user gets the first free id, after the base's lines, and a
        // shadow file of its own, as the base has none.
        let bob = Accounts::generate("bob", &MachineSpec::default(), &files);
        assert_eq!(
            bob.passwd.as_deref(),
            Some(format!("{BASE_PASSWD}\nbob:x:1001:1001:bob:/home/bob:/bin/sh\n").as_str())
        );
        assert_eq!(
            bob.group.as_deref(),
            Some(format!("{BASE_GROUP}bob:x:1001:\n").as_str())
        );
        assert_eq!(bob.shadow.as_deref(), Some("bob:*:::::::\n"));
        assert_eq!(bob.homes, [home("bob", 1001, "/home/bob")]);
    }

    #[test]
    fn a_base_shadow_gains_entries_only_for_the_accounts_gpubox_adds() {
        let files = base(&[
            ("etc/passwd", BASE_PASSWD),
            ("etc/group", BASE_GROUP),
            (
                "etc/shadow",
                "root:$6$salt$hash:19000::::::\ndev:!:19000::::::",
            ),
        ]);
        let bob = Accounts::generate("bob", &MachineSpec::default(), &files);
        assert_eq!(
            bob.shadow.as_deref(),
            Some("root:$6$salt$hash:19000::::::\ndev:!:19000::::::\nbob:*:::::::\n")
        );
        let dev = Accounts::generate("dev", &MachineSpec::default(), &files);
        assert_eq!(dev.shadow, None);
    }

    #[test]
    fn a_user_whose_group_the_base_has_joins_that_group() {
        let files = base(&[
            ("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
            ("etc/group", "root:x:0:\nbob:x:1200:\n"),
        ]);
        let bob = Accounts::generate("bob", &MachineSpec::default(), &files);
        let passwd = bob.passwd.unwrap();
        assert!(
            passwd.ends_with("bob:x:1000:1200:bob:/home/bob:/bin/sh\n"),
            "{passwd}"
        );
        assert_eq!(
            bob.group.as_deref(),
            Some("root:x:0:\nbob:x:1200:\nnogroup:x:65534:\n")
        );
    }

    #[test]
    fn machine_users_ssh_and_supplementary_groups_get_accounts() {
        let machine = machine(
            "[users.ci]\nuid = 1500\ngroups = [\"builders\", \"dev\"]\n[ssh]\nenable = true\n",
        );
        let accounts = Accounts::generate("dev", &machine, &BTreeMap::new());
        assert_eq!(
            accounts.passwd.as_deref(),
            Some(
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
                 ci:x:1500:1500:ci:/home/ci:/bin/sh\ndev:x:1000:1000:dev:/home/dev:/bin/sh\n\
                 sshd:x:74:74:sshd:/var/empty:/bin/false\n"
            )
        );
        assert_eq!(
            accounts.group.as_deref(),
            Some(
                "root:x:0:\nnogroup:x:65534:\nci:x:1500:\ndev:x:1000:ci\nsshd:x:74:\n\
                 builders:x:1001:ci\n"
            )
        );
        let shadow = accounts.shadow.unwrap();
        assert_eq!(shadow.lines().count(), 5, "{shadow}");
        assert!(shadow
            .lines()
            .all(|line| line.split(':').nth(1) == Some("*")));
        assert_eq!(
            accounts.homes,
            [home("ci", 1500, "/home/ci"), home("dev", 1000, "/home/dev")]
        );
    }

    #[test]
    fn machine_accounts_on_a_base_avoid_its_ids_and_keep_its_sshd() {
        let machine = machine("[users.ci]\nuid = 1001\n[ssh]\nenable = true\n");
        let files = base(&[
            (
                "etc/passwd",
                &format!("{BASE_PASSWD}\nsshd:x:105:65534::/run/sshd:/usr/sbin/nologin\n"),
            ),
            ("etc/group", BASE_GROUP),
            ("etc/shadow", "root:*:19000::::::\n"),
        ]);
        let accounts = Accounts::generate("bob", &machine, &files);
        let passwd = accounts.passwd.unwrap();
        assert!(
            passwd.ends_with(
                "ci:x:1001:1001:ci:/home/ci:/bin/sh\nbob:x:1002:1002:bob:/home/bob:/bin/sh\n"
            ),
            "{passwd}"
        );
        let sshd_lines = passwd.lines().filter(|l| l.starts_with("sshd:")).count();
        assert_eq!(sshd_lines, 1, "{passwd}");
        assert_eq!(
            accounts.shadow.as_deref(),
            Some("root:*:19000::::::\nci:*:::::::\nbob:*:::::::\n")
        );
    }

    #[test]
    fn what_a_base_has_that_gpubox_cannot_extend_is_left_alone() {
        let files = BTreeMap::from([("etc/passwd".to_owned(), LayerFile::Other)]);
        let accounts = Accounts::generate("bob", &MachineSpec::default(), &files);
        assert_eq!((accounts.passwd, accounts.shadow), (None, None));
        // The base has no group file: gpubox writes its own.
        assert!(accounts.group.is_some_and(|g| g.contains("bob:x:1000:")));
    }

    #[test]
    fn the_table_reads_what_the_image_ends_up_with() {
        let files = base(&[("etc/passwd", BASE_PASSWD), ("etc/group", BASE_GROUP)]);
        let mut tree = Tree::default();
        assert!(AccountTable::read(&tree, &BTreeMap::new()).is_none());
        let from_base = AccountTable::read(&tree, &files).unwrap();
        assert!(from_base.has_user("dev") && !from_base.has_user("bob"));
        assert_eq!(from_base.primary_group("1000").as_deref(), Some("dev"));

        Accounts::generate("bob", &MachineSpec::default(), &files)
            .add_to(&mut tree)
            .unwrap();
        let table = AccountTable::read(&tree, &files).unwrap();
        assert!(table.has_user("dev") && table.has_user("bob"));
        assert!(table.has_group("bob") && !table.has_group("ghosts"));
        assert_eq!(table.primary_group("bob").as_deref(), Some("bob"));
    }
}
