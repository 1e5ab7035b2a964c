//! What the rootfs tests share: assembling a top layer without Nix.

use std::sync::Arc;

use gpubox_nix::{Closure, StorePath};
use gpubox_rootfs::{assemble, Rootfs, RootfsError};
use gpubox_spec::{CopyToRoot, MachineSpec};

/// Assembles the top layer of image `demo:v1` from an empty closure, with no
/// packages, host files or Nix database and a stand-in init.
pub fn assemble_without_nix(
    copies: &[CopyToRoot],
    user: &str,
    driver_library_dirs: &[&str],
    machine: &MachineSpec,
    home: Option<&StorePath>,
) -> Result<Rootfs, RootfsError> {
    let closure = Closure::from_infos(Vec::new());
    assemble(&gpubox_rootfs::RootfsInput {
        closure: &closure,
        packages: &[],
        copy_to_root: copies,
        host_files: &[],
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
