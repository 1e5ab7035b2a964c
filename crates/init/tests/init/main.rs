//! Integration tests of the real `gpubox-init` binary, run on real shell commands, both
//! as an ordinary process (subreaper, /proc-based shutdown) and as PID 1 of a new PID
//! namespace (`kill(-1)`-based shutdown).

mod common;
mod exit_status;
mod forwarding;
mod pid1;
mod reaping;
mod scenarios;
