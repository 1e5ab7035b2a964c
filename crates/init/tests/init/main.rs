//! Integration tests of the real `gpubox-init` binary, run on real shell commands, both
//! as an ordinary process (subreaper, /proc-based shutdown) and as PID 1 of a new PID
//! namespace (`kill(-1)`-based shutdown), and the GPU start-up step on fake host trees.

mod common;
mod exit_status;
mod forwarding;
mod gpu;
mod home;
mod image_root;
mod pid1;
mod reaping;
mod scenarios;
mod secret_variables;
mod secrets;
mod services;
mod ssh;
mod tailscale;
