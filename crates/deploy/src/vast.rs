//! A vast.ai template: the body of `POST /api/v0/template/` (and what `vastai create
//! template` sends), documented at
//! <https://docs.vast.ai/api-reference/creating-and-using-templates-with-api>.
//!
//! It launches in the `args` mode, the one that keeps the image's entrypoint:
//! vast's `ssh` and `jupyter` modes replace it with vast's own, so `gpubox-init`
//! (and with it the driver check, the secrets and the services) would never run.
//! Ports and variables go into `env` in `docker run` flag form; the CUDA release
//! becomes the marketplace filter `cuda_max_good`, the highest CUDA release a host's
//! driver supports.

use serde::Serialize;
use serde_json::json;

use crate::secrets::SecretValue;
use crate::workload::{Protocol, Workload};
use crate::{DeployError, Options, Rendered};

/// The longest `env` vast.ai's template API accepts.
const ENV_LIMIT: usize = 1024;

#[derive(Serialize)]
struct Template {
    name: String,
    image: String,
    /// Always `args`: see the module doc.
    runtype: &'static str,
    env: String,
    recommended_disk_space: u64,
    extra_filters: serde_json::Value,
    desc: String,
    readme: String,
    /// Always true: a template stays out of vast.ai's public search (vast's CLI
    /// makes templates private by default too).
    private: bool,
}

pub fn render(
    workload: &Workload,
    secrets: &[SecretValue],
    options: &Options,
) -> Result<Rendered, DeployError> {
    let mut notices = Vec::new();
    let mut flags: Vec<String> = workload
        .ports
        .iter()
        .map(|port| match port.protocol {
            Protocol::Tcp => format!("-p {0}:{0}", port.number),
            other => format!("-p {0}:{0}/{1}", port.number, other.docker()),
        })
        .collect();
    for secret in secrets {
        flags.push(format!(
            "-e {}={}",
            secret.variable,
            single_quoted(&one_line(&secret.value))
        ));
    }
    let mut filters = serde_json::Map::new();
    if options.gpus > 0 {
        filters.insert("num_gpus".to_owned(), json!({ "eq": options.gpus }));
    }
    if let Some(cuda) = workload.image.cuda {
        let wanted: f64 = format!("{}.{}", cuda.major, cuda.minor)
            .parse()
            .unwrap_or(0.0);
        filters.insert("cuda_max_good".to_owned(), json!({ "gte": wanted }));
    }
    if !workload.image.architectures.is_empty()
        && !workload
            .image
            .architectures
            .iter()
            .any(|arch| arch == "amd64")
    {
        notices.push(format!(
            "the image is for {} only, and vast.ai's hosts are x86-64 (amd64) machines",
            workload.image.architectures.join(", ")
        ));
    }
    for dir in &workload.persistent {
        if !dir.small {
            notices.push(format!(
                "vast.ai keeps an instance's disk while it exists, so {} survives restarts but not the instance: copy what matters elsewhere",
                dir.path
            ));
        }
    }
    let env = flags.join(" ");
    if env.len() > ENV_LIMIT {
        return Err(DeployError::TooLong {
            target: "vast.ai",
            reason: format!(
                "its template's `env` holds at most {ENV_LIMIT} characters, and the ports and keys need {}",
                env.len()
            ),
            fix: "hand over shorter keys (an ed25519 SSH key, an age identity), or set them in the instance",
        });
    }
    let template = Template {
        name: workload.name.clone(),
        image: workload.image.reference.clone(),
        runtype: "args",
        env,
        recommended_disk_space: workload.disk_gb(options.disk_gb),
        extra_filters: serde_json::Value::Object(filters),
        desc: description(workload),
        readme: crate::readme(workload, "vast.ai"),
        private: true,
    };
    Rendered::json(&template, !secrets.is_empty(), notices)
}

/// One line for the template list.
fn description(workload: &Workload) -> String {
    match workload.image.cuda {
        Some(cuda) => format!("{} (CUDA {cuda}), built with gpubox", workload.name),
        None => format!("{}, built with gpubox", workload.name),
    }
}

/// Line breaks as a literal `\n`: `env` holds one line per variable, and the init
/// reads `\n` as a line break in keys and identities.
fn one_line(value: &str) -> String {
    value.replace('\n', "\\n")
}

/// `value` in single quotes, as vast.ai's documentation quotes `env` values; a value
/// holding a `'` was refused when it was read.
fn single_quoted(value: &str) -> String {
    format!("'{value}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_for_a_shell() {
        assert_eq!(single_quoted("a b"), "'a b'");
        assert_eq!(one_line("k1\nk2"), "k1\\nk2");
    }
}
