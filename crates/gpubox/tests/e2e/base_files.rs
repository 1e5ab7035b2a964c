//! The base files gpubox derives from the closure: a shell, `env`, CA
//! certificates, locales, `/etc/services` and the packages' programs.

use std::collections::BTreeMap;
use std::process::Command;

use gpubox_oci::tar::{read_entries, TarEntryKind};

use super::common::*;

/// The symbolic links of gpubox's own layers, path to target.
fn top_layer_links(reader: &gpubox_oci::source::ImageReader) -> BTreeMap<String, String> {
    own_layers(reader)
        .flat_map(|index| read_entries(reader.open_layer(index).unwrap()))
        .map(|e| e.unwrap())
        .filter(|e| e.kind == TarEntryKind::Symlink)
        .map(|e| {
            (
                String::from_utf8_lossy(&e.path).into_owned(),
                String::from_utf8_lossy(&e.link.unwrap_or_default()).into_owned(),
            )
        })
        .collect()
}

#[test]
fn closure_provides_shell_certificates_locales_and_services() {
    if !have("nix") {
        return;
    }
    let (base, toolbox) = (nix_fixture("base"), nix_fixture("toolbox"));
    let work = tempdir();
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        &format!(
            "name = \"gpubox-e2e-base\"\nsystemPackages = [{}, {}]\nextraEnv = {{ GREETING = \"via /bin/sh\" }}\ncmd = [\"/bin/sh\"]\n",
            toml_str(&base),
            toml_str(&toolbox)
        ),
    );
    let (reader, _) = build_and_read(work.path(), &spec);

    let links = top_layer_links(&reader);
    let nix = |name: &str| {
        nix_closure(&base)
            .into_iter()
            .find(|p| p.ends_with(name))
            .unwrap()
    };
    let expect = [
        ("bin/sh", format!("{toolbox}/bin/sh")),
        ("usr/bin/env", format!("{toolbox}/bin/env")),
        ("usr/local/bin/sh", format!("{toolbox}/bin/sh")),
        (
            "etc/services",
            format!("{}/etc/services", nix("iana-etc-1.0")),
        ),
        (
            "etc/protocols",
            format!("{}/etc/protocols", nix("iana-etc-1.0")),
        ),
        (
            "etc/ssl/certs/ca-certificates.crt",
            format!("{}/etc/ssl/certs/ca-bundle.crt", nix("cacert-1.0")),
        ),
    ];
    for (link, target) in expect {
        assert_eq!(links.get(link), Some(&target), "{link} in {links:?}");
    }

    let env = reader.config().unwrap()["config"]["Env"].to_string();
    assert!(
        env.contains("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"),
        "{env}"
    );
    let locale = format!(
        "LOCALE_ARCHIVE={}/lib/locale/locale-archive",
        nix("glibc-locales-1.0")
    );
    assert!(env.contains(&locale), "{env}");

    // The /bin/sh link resolves inside a real container.
    if have("podman") {
        run_ok(
            gpubox(&work.path().join("cache"))
                .arg("build")
                .arg(&spec)
                .args(["-q", "-o", "podman:gpubox-e2e-base:latest"]),
        );
        let out = run_ok(Command::new("podman").args([
            "run",
            "--rm",
            "--network",
            "none",
            "gpubox-e2e-base:latest",
        ]));
        assert!(
            stdout(&out).contains("GREETING=via /bin/sh"),
            "{}",
            stdout(&out)
        );
        let _ = Command::new("podman")
            .args(["rmi", "-f", "gpubox-e2e-base:latest"])
            .output();
    }
}

#[test]
fn store_copy_to_root_sources_bring_their_dependencies_and_store_paths_join_without_links() {
    if !have("nix") {
        return;
    }
    let (root_env, self_linked, hello, greeting) = (
        nix_fixture("rootEnv"),
        nix_fixture("selfLinked"),
        nix_fixture("hello"),
        nix_fixture("greeting"),
    );
    let work = tempdir();
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        &format!(
            "name = \"gpubox-e2e-store-sources\"\nstorePaths = [{}]\ncopyToRoot = [{{ src = {}, dst = \"/\" }}, {{ src = {}, dst = \"/opt/self\" }}]\n",
            toml_str(&greeting),
            toml_str(&root_env),
            toml_str(&self_linked),
        ),
    );
    let (reader, summaries) = build_and_read(work.path(), &spec);
    let in_image: Vec<&str> = summaries
        .iter()
        .flat_map(|summary| summary.store_paths.iter().map(String::as_str))
        .collect();
    // root-env's tree is at / and what it links to is in the store; root-env
    // itself is not, as with nix2container. self-linked refers to itself, so it
    // stays, or its copied links would dangle.
    let libb = nix_closure(&hello)
        .into_iter()
        .find(|p| p.ends_with("-libb-2.1"))
        .unwrap();
    for path in [&hello, &greeting, &libb, &self_linked] {
        assert!(
            in_image.contains(&path.as_str()),
            "{path} not in {in_image:?}"
        );
    }
    assert!(!in_image.contains(&root_env.as_str()), "{in_image:?}");

    let links = top_layer_links(&reader);
    assert_eq!(links.get("bin/hello"), Some(&format!("{hello}/bin/hello")));
    assert_eq!(
        links.get("opt/self/bin/data-link"),
        Some(&format!("{self_linked}/share/data"))
    );
    // storePaths join the closure without program links.
    assert!(
        !links.keys().any(|link| link.starts_with("usr/local/bin/")),
        "{links:?}"
    );
}
