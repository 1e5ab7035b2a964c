//! A fake NVIDIA host tree for tests: the files a real driver install has, in the places it
//! has them, with `/proc/driver/nvidia` in the tree's own `proc/` (use
//! [`crate::HostRoots::under`]). Shared by this crate's tests, the CLI's end-to-end tests
//! and `gpubox doctor`'s tests, which is why it is public. The tree is an x86-64 Debian
//! host's ([`build_fake_host`]) or an arm64 one's, as on Grace Hopper
//! ([`build_fake_host_for`]): the two differ in the libraries' multiarch folder and in the
//! kernel module's version line.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;

use gpubox_cuda::Architecture;

/// Character device major of `/dev/nvidia*` and `/dev/nvidiactl` (fixed by the driver).
const NVIDIA_MAJOR: u32 = 195;
const NVIDIACTL_MINOR: u32 = 255;
/// `nvidia-uvm` gets a dynamic major on real hosts; any unused one will do here.
const NVIDIA_UVM_MAJOR: u32 = 235;

/// The driver libraries the tree holds, each as `<library_dir>/<name>.so.<driver>`
/// (`usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14`; see [`library_dir`]).
pub const LIBRARIES: &[&str] = &[
    "libcuda",
    "libnvidia-ml",
    "libnvidia-ptxjitcompiler",
    "libnvidia-nvvm",
    "libcudadebugger",
];

/// The UUID the fake tree gives GPU `index`.
pub fn gpu_uuid(index: u32) -> String {
    format!("GPU-5e1f{index:04x}-a6b2-4c1d-9e3f-{index:012x}")
}

/// The PCI bus id the fake tree gives GPU `index`.
pub fn gpu_pci_bus_id(index: u32) -> String {
    format!("0000:{:02x}:00.0", index + 1)
}

/// The folder, relative to the tree's root, that holds the driver libraries of a fake
/// `architecture` host: Debian's multiarch folder, `usr/lib/x86_64-linux-gnu` or
/// `usr/lib/aarch64-linux-gnu`, where Debian's and Ubuntu's driver packages put them.
pub fn library_dir(architecture: Architecture) -> String {
    format!("usr/lib/{}", architecture.multiarch())
}

/// Builds, under `root`, an x86-64 host with driver `driver` (such as `"550.54.14"`) and
/// `gpus` GPUs: [`build_fake_host_for`] with [`Architecture::Amd64`].
pub fn build_fake_host(root: &Path, driver: &str, gpus: u32) -> io::Result<()> {
    build_fake_host_for(root, driver, gpus, Architecture::Amd64)
}

/// Builds, under `root`, an `architecture` host with driver `driver` (such as
/// `"550.54.14"`) and `gpus` GPUs: the [`LIBRARIES`] in [`library_dir`] (placeholder
/// contents; `libcuda.so.1` and `libnvidia-ml.so.1` links),
/// `usr/bin/nvidia-smi` (a shell script printing the driver version), the GSP firmware,
/// `proc/driver/nvidia/version` and `proc/driver/nvidia/gpus/<pci>/information` in the real
/// format (an x86-64 host runs the proprietary kernel module and has H100s; an arm64 host
/// runs the open module, which Grace Hopper needs, and has GH200s), the persistenced
/// socket, and real character device nodes `dev/nvidia<N>`, `dev/nvidiactl` and
/// `dev/nvidia-uvm` (made with `mknod`, so this needs root; without it the `mknod` error is
/// returned, naming the node). Binaries, firmware, sockets and device nodes are where they
/// are on either architecture.
pub fn build_fake_host_for(
    root: &Path,
    driver: &str,
    gpus: u32,
    architecture: Architecture,
) -> io::Result<()> {
    let lib_dir = root.join(library_dir(architecture));
    for library in LIBRARIES {
        write(
            &lib_dir.join(format!("{library}.so.{driver}")),
            format!("fake {library} for NVIDIA driver {driver}\n").as_bytes(),
        )?;
    }
    for library in ["libcuda", "libnvidia-ml"] {
        link(
            &format!("{library}.so.{driver}"),
            &lib_dir.join(format!("{library}.so.1")),
        )?;
    }

    let smi = root.join("usr/bin/nvidia-smi");
    write(
        &smi,
        format!("#!/bin/sh\necho \"NVIDIA-SMI {driver}    Driver Version: {driver}\"\n").as_bytes(),
    )?;
    fs::set_permissions(&smi, fs::Permissions::from_mode(0o755)).map_err(|e| at(&smi, e))?;

    write(
        &root.join(format!("lib/firmware/nvidia/{driver}/gsp_ga10x.bin")),
        b"fake GSP firmware\n",
    )?;

    let proc = root.join("proc/driver/nvidia");
    write(
        &proc.join("version"),
        kernel_module_version_text(architecture, driver).as_bytes(),
    )?;
    let model = match architecture {
        Architecture::Amd64 => "NVIDIA H100 80GB HBM3",
        Architecture::Arm64 => "NVIDIA GH200 480GB",
    };
    for index in 0..gpus {
        let pci = gpu_pci_bus_id(index);
        let uuid = gpu_uuid(index);
        write(
            &proc.join("gpus").join(&pci).join("information"),
            format!(
                "Model: \t\t {model}\n\
                 IRQ:   \t\t 0\n\
                 GPU UUID: \t {uuid}\n\
                 Video BIOS: \t 96.00.74.00.01\n\
                 Bus Type: \t PCIe\n\
                 DMA Size: \t 52 bits\n\
                 DMA Mask: \t 0xfffffffffffff\n\
                 Bus Location: \t {pci}\n\
                 Device Minor: \t {index}\n\
                 GPU Firmware: \t {driver}\n\
                 GPU Excluded:\t No\n"
            )
            .as_bytes(),
        )?;
    }

    let socket = root.join("run/nvidia-persistenced/socket");
    create_parent(&socket)?;
    // Binding leaves the socket file behind once the listener is dropped.
    UnixListener::bind(&socket).map_err(|e| at(&socket, e))?;

    let dev = root.join("dev");
    fs::create_dir_all(&dev).map_err(|e| at(&dev, e))?;
    for index in 0..gpus {
        char_device(&dev.join(format!("nvidia{index}")), NVIDIA_MAJOR, index)?;
    }
    char_device(&dev.join("nvidiactl"), NVIDIA_MAJOR, NVIDIACTL_MINOR)?;
    char_device(&dev.join("nvidia-uvm"), NVIDIA_UVM_MAJOR, 0)
}

/// `proc/driver/nvidia/version` as the kernel module of `architecture` writes it.
fn kernel_module_version_text(architecture: Architecture, driver: &str) -> String {
    let first = match architecture {
        Architecture::Amd64 => {
            format!("NVRM version: NVIDIA UNIX x86_64 Kernel Module  {driver}  Thu Feb 22 01:44:30 UTC 2024")
        }
        Architecture::Arm64 => format!(
            "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  {driver}  Release Build  (dvs-builder@U16-I3-B03-4-3)  Thu Feb 22 01:44:30 UTC 2024"
        ),
    };
    format!("{first}\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
}

fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    create_parent(path)?;
    fs::write(path, contents).map_err(|e| at(path, e))
}

fn link(target: &str, path: &Path) -> io::Result<()> {
    symlink(target, path).map_err(|e| at(path, e))
}

fn create_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) => fs::create_dir_all(parent).map_err(|e| at(parent, e)),
        None => Ok(()),
    }
}

fn char_device(path: &Path, major: u32, minor: u32) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| at(path, io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
    let status = unsafe {
        libc::mknod(
            c_path.as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(major, minor),
        )
    };
    if status != 0 {
        let os_error = io::Error::last_os_error();
        return Err(at(
            path,
            io::Error::new(
                os_error.kind(),
                format!("mknod c {major} {minor}: {os_error} (making device nodes needs root)"),
            ),
        ));
    }
    // Real nodes are 0666; the umask took some of that away.
    fs::set_permissions(path, fs::Permissions::from_mode(0o666)).map_err(|e| at(path, e))
}

/// `error` with `path` in its message, so a failure says which file it was.
fn at(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}
