//! `gpubox-host` is the host side of running gpubox images with GPUs: the
//! checks `gpubox doctor` makes (driver, device nodes, CDI specs, podman and
//! Docker, and whether the driver runs an image's CUDA) and the engine command
//! `gpubox run` starts a container with. It decides; it never prints and
//! never starts anything: the CLI shows the checks and runs the command.

pub mod doctor;
pub mod run;
