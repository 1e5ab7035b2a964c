//! The starter files `gpubox init` writes: a commented `gpubox.toml` that builds as
//! it is (a shell from the build machine), and the Nix front end's starter flake.

/// The starter spec for an image named `name` (a valid image name).
pub fn starter_toml(name: &str) -> String {
    include_str!("starter.toml").replace("@NAME@", name)
}

/// The starter flake (the flake template `nix flake init -t` gives).
pub fn starter_flake() -> &'static str {
    include_str!("../../../templates/default/flake.nix")
}

/// An image name made from `folder` (a folder's name): lowercase letters, digits,
/// `.`, `_` and `-`; `my-image` when nothing of it is left.
pub fn image_name_for(folder: &str) -> String {
    let mut name: String = folder
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned();
    if name.is_empty() {
        "my-image".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `key = ...` or `[table]`: an example, not prose.
    fn is_key_line(line: &str) -> bool {
        let key = line.split(" = ").next().unwrap_or("");
        line.starts_with('[')
            || (line.contains(" = ")
                && !key.is_empty()
                && key.chars().all(|c| c.is_ascii_alphabetic() || c == '.'))
    }

    #[test]
    fn folder_names_become_image_names() {
        assert_eq!(image_name_for("My Project"), "my-project");
        assert_eq!(image_name_for("_x_"), "x");
        assert_eq!(image_name_for("Ünïcode"), "n-code");
        assert_eq!(image_name_for("..."), "my-image");
    }

    #[test]
    fn the_starter_and_every_example_in_its_comments_are_valid_specs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("app")).unwrap();
        std::fs::write(dir.path().join("default.nix"), "{ }").unwrap();
        let text = starter_toml("demo");
        let spec = crate::parse(&text, &dir.path().join("gpubox.toml")).unwrap();
        assert_eq!(spec.name, "demo");
        assert_eq!(spec.cmd, ["/bin/sh", "-c", "echo hello from demo"]);
        // Each commented key (`# key = ...`, `# [table]`) uncommented.
        let uncommented: String = text
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if is_key_line(rest) => {
                    let rest = rest.split("  #").next().unwrap_or(rest);
                    format!("{rest}\n")
                }
                _ => format!("{line}\n"),
            })
            .collect();
        // One `systemPackages`, `cuda.enable`, `user` and so on: the uncommented
        // examples replace nothing the starter sets but `cmd`'s neighbours.
        let spec = crate::parse(&uncommented, &dir.path().join("gpubox.toml"))
            .unwrap_or_else(|e| panic!("{e:?}\n{uncommented}"));
        assert_eq!(spec.user.as_deref(), Some("app"));
        assert!(!spec.cuda.enable);
        assert_eq!(spec.machine.services.len(), 1);
    }
}
