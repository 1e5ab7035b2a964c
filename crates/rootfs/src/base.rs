//! The files gpubox generates in every image besides the accounts (`accounts.rs`):
//! name-service settings, runtime folders, `gpubox-init`, and links to what the
//! closure provides (a shell, `env`, CA certificates, `/etc/services`, locales, the
//! packages' programs); for GPU-ready images also the loader's driver folders and
//! `/sbin/ldconfig`. On a base image, the base's `/etc/nsswitch.conf` is kept.

use std::collections::BTreeMap;
use std::path::Path;

use gpubox_nix::{StoreFs, StorePath};
use gpubox_oci::source::LayerFile;
use gpubox_oci::{Entry, ImagePath};

use crate::tree::{Origin, Tree};
use crate::{image_path, RootfsError, RootfsInput};

/// The files gpubox merges with a base image's own rather than replacing
/// them, so the caller knows what to read from the base's layers.
pub const BASE_ACCOUNT_FILES: [&str; 4] =
    ["etc/passwd", "etc/group", "etc/shadow", "etc/nsswitch.conf"];

const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n\
networks: files\nprotocols: files\nservices: files\nethers: files\nrpc: files\n";

pub(crate) fn add_generated(
    tree: &mut Tree,
    input: &RootfsInput<'_>,
    search: &ClosureSearch<'_>,
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
    tree.insert_init(Entry::bytes(
        path("bin/gpubox-init")?,
        0o755,
        input.init.clone(),
    ));

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

    add_program_links(tree, input.packages, input.store_fs)?;
    Ok(env)
}

/// Finds files inside the closure, looking at the top-level packages first and
/// then at every other path in store-path order, so the answer is deterministic.
pub(crate) struct ClosureSearch<'a> {
    order: Vec<&'a StorePath>,
    fs: &'a StoreFs,
}

impl<'a> ClosureSearch<'a> {
    pub(crate) fn new(input: &'a RootfsInput<'a>) -> ClosureSearch<'a> {
        let mut packages: Vec<&StorePath> = input.packages.iter().collect();
        packages.sort();
        packages.dedup();
        let rest: Vec<&StorePath> = input
            .closure
            .paths()
            .map(|info| &info.path)
            .filter(|p| packages.binary_search(p).is_err())
            .collect();
        ClosureSearch {
            order: packages.into_iter().chain(rest).collect(),
            fs: input.store_fs,
        }
    }

    /// The absolute path of the first `<store path>/<inside>` that exists.
    pub(crate) fn find(&self, inside: &str) -> Option<String> {
        self.order.iter().find_map(|store_path| {
            let candidate = Path::new(store_path.as_str()).join(inside);
            self.fs
                .node(&candidate)
                .is_some()
                .then(|| candidate.to_string_lossy().into_owned())
        })
    }
}

/// Links `/usr/local/bin/NAME` (and `sbin`) to every program of the top-level
/// packages, like a Nix profile, so `cmd = ["hello"]` works.
fn add_program_links(
    tree: &mut Tree,
    packages: &[StorePath],
    store_fs: &StoreFs,
) -> Result<(), RootfsError> {
    let mut sorted: Vec<&StorePath> = packages.iter().collect();
    sorted.sort();
    sorted.dedup();
    for folder in ["bin", "sbin"] {
        let mut links: BTreeMap<String, (&StorePath, String)> = BTreeMap::new();
        for package in &sorted {
            let dir = Path::new(package.as_str()).join(folder);
            let Some(read) = store_fs.read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<String> = read
                .into_iter()
                .filter_map(|name| name.into_string().ok())
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
