//! End-to-end tests of the `gpubox` binary against the real parts: Nix, podman,
//! a Docker engine, skopeo and GNU tar. In CI (`CI=true`) a missing part fails the
//! test; elsewhere the test says what it skipped.

mod e2e {
    mod awkward;
    mod bad_input;
    mod base_files;
    mod base_image;
    mod cache;
    mod chunked;
    mod cli;
    pub mod common;
    mod deploy;
    mod diff;
    mod engines;
    mod examples;
    mod faults;
    mod fleet;
    mod from_nix;
    mod gpu;
    mod gpu_aarch64;
    mod interrupt;
    mod layering;
    mod machine;
    mod platforms;
    mod programs;
    mod push;
    mod quickstart;
    pub mod registry;
    mod reproducible;
    mod run;
    mod sbom;
    mod volumes;
}
