//! What the rootfs tests share: assembling a top layer without Nix, and reading
//! it back.

// Each test file uses its part of these.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use gpubox_hostbin::HostFile;
use gpubox_nix::{Closure, StorePath};
use gpubox_oci::Entry;
use gpubox_rootfs::{assemble, Rootfs, RootfsError};
use gpubox_spec::{CopyToRoot, MachineSpec};

/// Assembles the top layer of image `demo:v1` from an empty closure, with no
/// packages or Nix database and a stand-in init.
pub fn assemble_without_nix(
    copies: &[CopyToRoot],
    host_files: &[HostFile],
    user: &str,
    driver_library_dirs: &[&str],
    machine: &MachineSpec,
    home: Option<&StorePath>,
) -> Result<Rootfs, RootfsError> {
    let closure = Closure::from_infos(Vec::new());
    assemble(&gpubox_rootfs::RootfsInput {
        closure: &closure,
        store_fs: &gpubox_nix::StoreFs::local(),
        packages: &[],
        copy_to_root: copies,
        host_files,
        init: Arc::from(&b"\x7fELF-init"[..]),
        user,
        working_dir: "/work",
        image_name: "demo",
        image_tag: "v1",
        driver_library_dirs,
        machine,
        home,
        nix_db: None,
    })
}

/// A `copyToRoot` item copying `src` to `dst` as it is.
pub fn copy(src: &Path, dst: &str) -> CopyToRoot {
    CopyToRoot {
        src: src.to_path_buf(),
        dst: dst.to_owned(),
        mode: None,
        uid: None,
        gid: None,
    }
}

/// The entry at `path` (relative, as the layer writes it).
pub fn find<'a>(rootfs: &'a Rootfs, path: &str) -> Option<&'a Entry> {
    rootfs.entries.iter().find(|e| e.path.to_string() == path)
}
