//! `/proc/driver/nvidia/version` and `/proc/driver/nvidia/gpus/*/information`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Some((version, spelled)) = gpubox_cuda::kernel_module_version(text) {
        let _ = (
            version.to_string(),
            gpubox_cuda::cuda_supported_by(&version),
            spelled,
        );
    }
    let _ = gpubox_cuda::GpuInformation::parse(text);
});
