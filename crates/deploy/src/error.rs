//! Why a deployment cannot be written or a manifest cannot be checked.

use std::path::PathBuf;

use miette::Diagnostic;

#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum DeployError {
    #[error("unknown deploy target `{given}`{}", suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    #[diagnostic(help("the targets are kubernetes (or k8s), vast and runpod"))]
    UnknownTarget {
        given: String,
        suggestion: Option<&'static str>,
    },
    #[error("{source_name}: {why}, so the deployment needs {variable}, and none was given")]
    #[diagnostic(help("{fix}"))]
    MissingSecret {
        source_name: String,
        variable: &'static str,
        why: String,
        fix: String,
    },
    #[error("cannot read {variable} from {source_name}: {reason}")]
    #[diagnostic(help("{fix}"))]
    SecretSource {
        variable: &'static str,
        source_name: String,
        reason: String,
        fix: String,
    },
    #[error("{option} {source_name}: nothing in the spec reads {variable}")]
    #[diagnostic(help("leave {option} out, or set {enabled_by} in the spec"))]
    UnusedSecret {
        option: &'static str,
        source_name: String,
        variable: &'static str,
        enabled_by: &'static str,
    },
    #[error("{what} {value:?} is not {expected}")]
    #[diagnostic(help("{fix}"))]
    BadValue {
        what: &'static str,
        value: String,
        expected: &'static str,
        fix: &'static str,
    },
    #[error("the spec's name {name:?} has no letter or digit to name Kubernetes objects after")]
    #[diagnostic(help("pass --name NAME (lowercase letters, digits and `-`)"))]
    NoName { name: String },
    #[error("cannot write the deployment: {reason}")]
    Render { reason: String },
    #[error("{target} cannot take this deployment: {reason}")]
    #[diagnostic(help("{fix}"))]
    TooLong {
        target: &'static str,
        reason: String,
        fix: &'static str,
    },
    #[error("{}: {reason}", file.display())]
    #[diagnostic(help("pass a manifest `gpubox deploy kubernetes` wrote, or one with a Deployment, StatefulSet, Job or Pod"))]
    Manifest { file: PathBuf, reason: String },
}
