//! The files gpubox generates in every image: accounts, name-service settings,
//! runtime folders, `gpubox-init`, and links to what the closure provides (a shell,
//! `env`, CA certificates, `/etc/services`, locales, the packages' programs); for
//! GPU-ready images also the loader's driver folders and `/sbin/ldconfig`. On a
//! base image, the accounts are merged into the base's own (see the crate doc).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use gpubox_nix::StorePath;
use gpubox_oci::source::LayerFile;
use gpubox_oci::{Entry, ImagePath};

use crate::tree::{Origin, Tree};
use crate::{image_path, RootfsError, RootfsInput};

/// The first uid and gid given to a `user` that is a name other than root.
const NAMED_USER_ID: u32 = 1000;

/// The files gpubox merges with a base image's own rather than replacing
/// them, so the caller knows what to read from the base's layers.
pub const BASE_ACCOUNT_FILES: [&str; 3] = ["etc/passwd", "etc/group", "etc/nsswitch.conf"];

const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n\
networks: files\nprotocols: files\nservices: files\nethers: files\nrpc: files\n";

pub(crate) fn add_generated(
    tree: &mut Tree,
    input: &RootfsInput<'_>,
    base_files: &BTreeMap<String, LayerFile>,
) -> Result<BTreeMap<String, String>, RootfsError> {
    let path = |raw: &str| image_path(raw, &Origin::Generated);
    let mut env = BTreeMap::new();

    for (dir, mode) in [
        ("bin", 0o755),
        ("etc", 0o755),
        ("root", 0o700),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("usr/bin", 0o755),
        ("usr/local/bin", 0o755),
        ("var/tmp", 0o1777),
    ] {
        tree.insert_default(Entry::directory(path(dir)?, mode));
    }
    tree.insert_default(Entry::directory(path(input.working_dir)?, 0o755));
    tree.insert_default(Entry::bytes(
        path("bin/gpubox-init")?,
        0o755,
        input.init.clone(),
    ));

    let accounts = Accounts::merged(input.user, base_files);
    if let Some((home, id)) = &accounts.new_home {
        let mut entry = Entry::directory(path(home)?, 0o755);
        entry.uid = id.uid;
        entry.gid = id.gid;
        tree.insert_default(entry);
    }
    for (file, text) in [
        ("etc/passwd", accounts.passwd),
        ("etc/group", accounts.group),
    ] {
        if let Some(text) = text {
            tree.insert_default(Entry::bytes(path(file)?, 0o644, text.into_bytes()));
        }
    }
    if !base_files.contains_key("etc/nsswitch.conf") {
        tree.insert_default(Entry::bytes(
            path("etc/nsswitch.conf")?,
            0o644,
            NSSWITCH.as_bytes(),
        ));
    }
    let os_release = format!(
        "NAME=gpubox\nID=gpubox\nPRETTY_NAME=\"{name}:{tag} (built by gpubox)\"\n\
         IMAGE_ID={name}\nIMAGE_VERSION={tag}\nHOME_URL=\"https://github.com/gpubox/gpubox\"\n",
        name = input.image_name,
        tag = input.image_tag
    );
    tree.insert_default(Entry::bytes(
        path("etc/os-release")?,
        0o644,
        os_release.into_bytes(),
    ));

    let search = ClosureSearch::new(input);
    for (inside, link) in [
        ("bin/sh", "bin/sh"),
        ("bin/env", "usr/bin/env"),
        ("etc/services", "etc/services"),
        ("etc/protocols", "etc/protocols"),
    ] {
        if let Some(target) = search.find(inside) {
            tree.insert_default(Entry::symlink(path(link)?, target));
        }
    }
    if let Some(bundle) = search.find("etc/ssl/certs/ca-bundle.crt") {
        for link in [
            "etc/ssl/certs/ca-bundle.crt",
            "etc/ssl/certs/ca-certificates.crt",
        ] {
            tree.insert_default(Entry::symlink(path(link)?, bundle.clone()));
        }
        if tree
            .get(&path("etc/ssl/certs/ca-certificates.crt")?)
            .is_some()
        {
            env.insert(
                "SSL_CERT_FILE".to_owned(),
                "/etc/ssl/certs/ca-certificates.crt".to_owned(),
            );
        }
    }
    if let Some(archive) = search.find("lib/locale/locale-archive") {
        env.insert("LOCALE_ARCHIVE".to_owned(), archive);
    }

    if !input.driver_library_dirs.is_empty() {
        let conf = input.driver_library_dirs.join("\n") + "\n";
        tree.insert_default(Entry::bytes(
            path("etc/ld.so.conf.d/gpubox-nvidia.conf")?,
            0o644,
            conf.into_bytes(),
        ));
        let ldconfig = search
            .find("bin/ldconfig")
            .or_else(|| search.find("sbin/ldconfig"));
        if let Some(ldconfig) = ldconfig {
            tree.insert_default(Entry::symlink(path("sbin/ldconfig")?, ldconfig));
        }
    }

    add_program_links(tree, input.packages)?;
    Ok(env)
}

/// The uid and gid of an account gpubox adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ids {
    uid: u32,
    gid: u32,
}

/// What gpubox writes for accounts: `/etc/passwd` and `/etc/group` (`None`:
/// write nothing, the base's stays), and the home folder of a user it adds.
#[derive(Debug, PartialEq, Eq)]
struct Accounts {
    passwd: Option<String>,
    group: Option<String>,
    new_home: Option<(String, Ids)>,
}

impl Accounts {
    /// root, nobody and, when it is a name gpubox has to invent an account
    /// for, the spec's user, merged into the base's files: its lines kept,
    /// missing accounts appended.
    fn merged(user: &str, base_files: &BTreeMap<String, LayerFile>) -> Accounts {
        let base_passwd = base_files.get("etc/passwd");
        let base_group = base_files.get("etc/group");
        let text = |file: Option<&LayerFile>| match file {
            Some(LayerFile::Text(text)) => text.clone(),
            _ => String::new(),
        };
        let (passwd_text, group_text) = (text(base_passwd), text(base_group));
        let id_of = |text: &str, name: &str| {
            entries(text)
                .find(|fields| fields[0] == name)
                .and_then(|fields| fields.get(2)?.parse::<u32>().ok())
        };
        let mut users = vec![
            (
                "root".to_owned(),
                "root:x:0:0:root:/root:/bin/sh".to_owned(),
            ),
            (
                "nobody".to_owned(),
                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false".to_owned(),
            ),
        ];
        let mut groups = vec![
            ("root".to_owned(), "root:x:0:".to_owned()),
            ("nogroup".to_owned(), "nogroup:x:65534:".to_owned()),
        ];
        let mut new_home = None;
        if let Some(home) = named_user_home(user) {
            let taken = |id: u32| {
                entries(&passwd_text).any(|f| f.get(2) == Some(&id.to_string().as_str()))
                    || entries(&group_text).any(|f| f.get(2) == Some(&id.to_string().as_str()))
            };
            let free = (NAMED_USER_ID..)
                .find(|id| !taken(*id))
                .unwrap_or(NAMED_USER_ID);
            let ids = Ids {
                uid: free,
                gid: id_of(&group_text, user).unwrap_or(free),
            };
            if id_of(&passwd_text, user).is_none() {
                new_home = Some((home.clone(), ids));
            }
            users.push((
                user.to_owned(),
                format!("{user}:x:{}:{}:{user}:/{home}:/bin/sh", ids.uid, ids.gid),
            ));
            groups.push((user.to_owned(), format!("{user}:x:{}:", ids.gid)));
        }
        Accounts {
            passwd: merge_lines(base_passwd, &passwd_text, &users),
            group: merge_lines(base_group, &group_text, &groups),
            new_home,
        }
    }
}

/// The fields of each account line of a passwd or group file.
fn entries(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| line.split(':').collect())
}

/// The base's file with the `needed` (name, line) pairs it lacks appended;
/// `None` when the base's file needs nothing or is not text gpubox can extend.
pub(crate) fn merge_lines(
    base: Option<&LayerFile>,
    text: &str,
    needed: &[(String, String)],
) -> Option<String> {
    let mut merged = match base {
        None => String::new(),
        Some(LayerFile::Text(_)) => text.to_owned(),
        Some(_) => return None,
    };
    let missing: Vec<&String> = needed
        .iter()
        .filter(|(name, _)| !entries(text).any(|fields| fields[0] == name))
        .map(|(_, line)| line)
        .collect();
    if base.is_some() && missing.is_empty() {
        return None;
    }
    if !merged.is_empty() && !merged.ends_with('\n') {
        merged.push('\n');
    }
    for line in missing {
        merged.push_str(line);
        merged.push('\n');
    }
    Some(merged)
}

/// The home folder (without the leading `/`) of a `user` that needs an account:
/// a plain name other than `root` or `nobody`; numeric ids need none.
fn named_user_home(user: &str) -> Option<String> {
    let is_name = !user.is_empty()
        && !user.contains(':')
        && !user.bytes().all(|b| b.is_ascii_digit())
        && user != "root"
        && user != "nobody";
    is_name.then(|| format!("home/{user}"))
}

/// Finds files inside the closure, looking at the top-level packages first and
/// then at every other path in store-path order, so the answer is deterministic.
pub(crate) struct ClosureSearch<'a> {
    order: Vec<&'a StorePath>,
}

impl<'a> ClosureSearch<'a> {
    pub(crate) fn new(input: &'a RootfsInput<'a>) -> ClosureSearch<'a> {
        let mut packages: Vec<&StorePath> = input.packages.iter().collect();
        packages.sort();
        let rest = input
            .closure
            .paths()
            .map(|info| &info.path)
            .filter(|p| !input.packages.contains(p));
        ClosureSearch {
            order: packages.into_iter().chain(rest).collect(),
        }
    }

    /// The absolute path of the first `<store path>/<inside>` that exists.
    pub(crate) fn find(&self, inside: &str) -> Option<String> {
        self.order.iter().find_map(|store_path| {
            let candidate = Path::new(store_path.as_str()).join(inside);
            fs::symlink_metadata(&candidate)
                .is_ok()
                .then(|| candidate.to_string_lossy().into_owned())
        })
    }
}

/// Links `/usr/local/bin/NAME` (and `sbin`) to every program of the top-level
/// packages, like a Nix profile, so `cmd = ["hello"]` works.
fn add_program_links(tree: &mut Tree, packages: &[StorePath]) -> Result<(), RootfsError> {
    let mut sorted: Vec<&StorePath> = packages.iter().collect();
    sorted.sort();
    sorted.dedup();
    for folder in ["bin", "sbin"] {
        let mut links: BTreeMap<String, (&StorePath, String)> = BTreeMap::new();
        for package in &sorted {
            let dir = Path::new(package.as_str()).join(folder);
            let Ok(read) = fs::read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<String> = read
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            names.sort();
            for name in names {
                let target = format!("{}/{folder}/{name}", package.as_str());
                if let Some((first, _)) = links.get(&name) {
                    return Err(RootfsError::ProgramClash {
                        link: image_path(
                            &format!("usr/local/{folder}/{name}"),
                            &Origin::Generated,
                        )?,
                        name,
                        first: (*first).clone(),
                        second: (*package).clone(),
                    });
                }
                links.insert(name, (package, target));
            }
        }
        for (name, (_, target)) in links {
            let link: ImagePath =
                image_path(&format!("usr/local/{folder}/{name}"), &Origin::Generated)?;
            tree.insert_default(Entry::symlink(link, target));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(files: &[(&str, LayerFile)]) -> BTreeMap<String, LayerFile> {
        files
            .iter()
            .map(|(path, file)| ((*path).to_owned(), file.clone()))
            .collect()
    }

    #[test]
    fn without_a_base_gpubox_writes_its_own_accounts() {
        let accounts = Accounts::merged("alice", &BTreeMap::new());
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
            accounts.new_home,
            Some((
                "home/alice".to_owned(),
                Ids {
                    uid: 1000,
                    gid: 1000
                }
            ))
        );
    }

    #[test]
    fn a_base_keeps_its_accounts_and_gets_only_what_it_lacks() {
        let files = base(&[
            (
                "etc/passwd",
                LayerFile::Text(
                    "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/sbin/nologin\n\
                     dev:x:1000:1000::/home/dev:/bin/bash"
                        .into(),
                ),
            ),
            (
                "etc/group",
                LayerFile::Text("root:x:0:\nnogroup:x:65534:\ndev:x:1000:\n".into()),
            ),
        ]);
        // Everything gpubox needs is there: nothing is written.
        let root = Accounts::merged("root", &files);
        assert_eq!((root.passwd, root.group, root.new_home), (None, None, None));
        let dev = Accounts::merged("dev", &files);
        assert_eq!((dev.passwd, dev.group, dev.new_home), (None, None, None));

        // A new user gets the first free id, after the base's lines.
        let bob = Accounts::merged("bob", &files);
        assert_eq!(
            bob.passwd.as_deref(),
            Some(
                "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/sbin/nologin\n\
                 dev:x:1000:1000::/home/dev:/bin/bash\nbob:x:1001:1001:bob:/home/bob:/bin/sh\n"
            )
        );
        assert_eq!(
            bob.group.as_deref(),
            Some("root:x:0:\nnogroup:x:65534:\ndev:x:1000:\nbob:x:1001:\n")
        );
        assert_eq!(
            bob.new_home,
            Some((
                "home/bob".to_owned(),
                Ids {
                    uid: 1001,
                    gid: 1001
                }
            ))
        );
    }

    #[test]
    fn what_a_base_has_that_gpubox_cannot_extend_is_left_alone() {
        let files = base(&[("etc/passwd", LayerFile::Other)]);
        let accounts = Accounts::merged("bob", &files);
        assert_eq!(accounts.passwd, None);
        // The base has no group file: gpubox writes its own.
        assert!(accounts.group.is_some_and(|g| g.contains("bob:x:1000:")));
    }
}
