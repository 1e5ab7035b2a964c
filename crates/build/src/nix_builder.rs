//! The builders of the Nix front end's derivations (the flake in `nix/` runs
//! them through `gpubox nix`):
//!
//! - [`spec_builder`]: the builder of an image's derivation. Nix hands it the
//!   spec it evaluated and the closure of every store path the spec names
//!   (structured attributes: `spec`, `closure` from `exportReferencesGraph`,
//!   `outputs.out`); it checks the spec as a build would, against that
//!   closure, and writes it as the one output file. So a value gpubox refuses
//!   fails `nix build` with gpubox's own message, and the file's references
//!   are the store paths it names. What lies outside the store and Nix cannot
//!   hand to a builder (a `fromImage`, `hostBinaries`) is read and checked when
//!   the image is copied.
//! - [`command_builder`]: the builder of an image command's derivation
//!   (`nix run .#IMAGE.COMMAND`): a two-line script that runs
//!   `gpubox nix run COMMAND SPEC "$@"`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use gpubox_nix::Closure;
use gpubox_spec::{Platform, Spec};
use serde_json::Value;

use crate::base::Base;
use crate::error::{BuildError, NixBuilderError};
use crate::image_commands::ImageCommand;
use crate::reporter::{Bytes, Count, Reporter};
use crate::store::StoreContents;
use crate::top::{gpu_settings, top_layer, TopInputs};

/// The attributes Nix gives a builder with `__structuredAttrs`.
struct BuildAttributes {
    path: PathBuf,
    attrs: Value,
}

impl BuildAttributes {
    fn read(builder: &'static str) -> Result<BuildAttributes, BuildError> {
        let path = std::env::var_os("NIX_ATTRS_JSON_FILE")
            .map(PathBuf::from)
            .ok_or(NixBuilderError::NotInABuild { builder })?;
        let text =
            std::fs::read_to_string(&path).map_err(|source| BuildError::InputNotReadable {
                path: path.clone(),
                source,
            })?;
        let attrs = serde_json::from_str(&text).map_err(|e| NixBuilderError::BadAttributes {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        Ok(BuildAttributes { path, attrs })
    }

    fn get(&self, pointer: &str) -> Result<&Value, BuildError> {
        self.attrs.pointer(pointer).ok_or_else(|| {
            NixBuilderError::BadAttributes {
                path: self.path.clone(),
                detail: format!("there is no {pointer}"),
            }
            .into()
        })
    }

    fn string(&self, pointer: &str) -> Result<&str, BuildError> {
        self.get(pointer)?.as_str().ok_or_else(|| {
            NixBuilderError::BadAttributes {
                path: self.path.clone(),
                detail: format!("{pointer} is not a string"),
            }
            .into()
        })
    }

    /// The output path Nix expects.
    fn out(&self) -> Result<PathBuf, BuildError> {
        self.string("/outputs/out").map(PathBuf::from)
    }
}

/// `gpubox nix spec-builder`: checks the spec Nix evaluated and writes it to
/// the derivation's output.
pub fn spec_builder(reporter: &dyn Reporter) -> Result<(), BuildError> {
    let attrs = BuildAttributes::read("spec-builder")?;
    let out = attrs.out()?;
    let mut text = serde_json::to_string_pretty(attrs.get("/spec")?).map_err(|e| {
        NixBuilderError::BadAttributes {
            path: attrs.path.clone(),
            detail: e.to_string(),
        }
    })?;
    text.push('\n');
    let spec = gpubox_spec::parse(&text, &out)?;
    let closure = Closure::from_exported_graph(attrs.get("/closure")?)?;
    let store = StoreContents::from_closure(&spec, &closure)?;
    // The spec is checked as the first platform it builds sees it.
    let platform = spec
        .platforms_to_build()
        .and_then(|platforms| platforms.first().copied())
        .unwrap_or(Platform::Amd64);
    gpu_settings(&spec, &store, platform)?;
    match unchecked_here(&spec) {
        None => {
            let inputs = TopInputs {
                // Only the layer's shape is checked here; the image gets its own.
                init: crate::init_binary::for_architecture(platform.architecture())
                    .unwrap_or_default(),
                platform,
                nix_db: None,
            };
            top_layer(&spec, &store, &[], &Base::default(), inputs, reporter)?;
        }
        Some(keys) => reporter.step(&format!(
            "{keys} lie outside the store: they are read, and the top layer checked, when the image is copied"
        )),
    }
    gpubox_atomic::write_bytes(&out, &gpubox_atomic::Options::new(), text.as_bytes())?;
    reporter.step(&format!(
        "checked the spec of {}:{}: {}, {}",
        spec.name,
        spec.tag,
        Count(store.closure.len(), "store path"),
        Bytes(store.closure.total_nar_size())
    ));
    Ok(())
}

/// The keys whose inputs a builder cannot read, so the top layer waits for
/// the copy to be checked.
fn unchecked_here(spec: &Spec) -> Option<String> {
    let keys: Vec<&str> = [
        ("fromImage", spec.from_image.is_some()),
        ("hostBinaries", !spec.host_binaries.is_empty()),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect();
    (!keys.is_empty()).then(|| keys.join(" and "))
}

/// `gpubox nix command-builder`: writes `$out/bin/PROGRAM`, the script `nix
/// run .#IMAGE.COMMAND` starts.
pub fn command_builder() -> Result<(), BuildError> {
    let attrs = BuildAttributes::read("command-builder")?;
    let command = attrs.string("/command")?;
    let command: ImageCommand = command.parse()?;
    let script = command_script(
        command,
        Path::new(attrs.string("/gpubox")?),
        Path::new(attrs.string("/spec")?),
    );
    let bin = attrs.out()?.join("bin");
    let program = bin.join(attrs.string("/program")?);
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| gpubox_oci::layout::OutputError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(&bin).map_err(io("create", &bin))?;
    std::fs::write(&program, script).map_err(io("write", &program))?;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o555))
        .map_err(io("make executable", &program))?;
    Ok(())
}

/// The script behind `nix run .#IMAGE.COMMAND`. Store paths need no quoting
/// beyond single quotes: they hold none.
fn command_script(command: ImageCommand, gpubox: &Path, spec: &Path) -> String {
    format!(
        "#!/bin/sh\n# `nix run .#IMAGE.{command} -- ARGS`, made by gpubox's flake\nexec '{}' nix run {command} '{}' \"$@\"\n",
        gpubox.display(),
        spec.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_exec_gpubox_with_the_spec() {
        let script = command_script(
            ImageCommand::CopyToPodman,
            Path::new("/nix/store/g-gpubox/bin/gpubox"),
            Path::new("/nix/store/s-demo.json"),
        );
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.ends_with(
            "exec '/nix/store/g-gpubox/bin/gpubox' nix run copyToPodman '/nix/store/s-demo.json' \"$@\"\n"
        ));
    }
}
