//! `NVIDIA_REQUIRE_*` expressions from an image's environment, parsed and evaluated against
//! hosts that know everything, nothing, and something.
#![no_main]

use gpubox_cuda::{HostFacts, Requirement};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(requirement): Result<Requirement, _> = gpubox_cuda::parse(text) else {
        return;
    };
    let known = HostFacts {
        cuda: "12.4".parse().ok(),
        driver: "550.54.14".parse().ok(),
        arch: Some("9.0".to_owned()),
        brand: Some("Tesla".to_owned()),
    };
    let partial = HostFacts {
        driver: "470.82.01".parse().ok(),
        ..HostFacts::default()
    };
    for facts in [known, partial, HostFacts::default()] {
        let _ = requirement.evaluate(&facts);
    }
    let vars = [("NVIDIA_REQUIRE_FUZZ", text), ("NVIDIA_REQUIRE_CUDA", text)];
    let _ = gpubox_cuda::requirements_from_env(vars);
});
