//! `gpubox-host` is the host side of running gpubox images with GPUs: the
//! checks `gpubox doctor` makes (driver, device nodes, CDI specs, podman and
//! Docker, and whether the driver runs an image's CUDA) and the engine command
//! `gpubox run` starts a container with. It asks the driver's files, podman
//! and Docker what they can do and decides; it never prints and starts no
//! container: the CLI shows the checks and runs the command.

pub mod doctor;
pub mod run;
