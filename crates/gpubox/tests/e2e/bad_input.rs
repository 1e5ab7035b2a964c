//! Bad input gets a clear message naming the file, key or path, a non-zero exit,
//! and leaves no output (not even a temporary file) behind.

use std::fs;
use std::process::Command;

use super::common::*;

#[test]
fn syntax_error_names_file_line_and_column() {
    let err = build_fails("name = \"x\"\ncmd = [\"a\",\n", out_dir);
    assert!(
        err.contains("gpubox.toml:2:"),
        "no file:line:column in: {err}"
    );
}

#[test]
fn unknown_key_suggests_the_right_one() {
    let err = build_fails("name = \"x\"\nmaxLayer = 3\n", out_dir);
    assert!(
        err.contains("maxLayer") && err.contains("maxLayers"),
        "{err}"
    );
    assert!(err.contains("gpubox.toml:2:1"), "{err}");
}

#[test]
fn wrong_type_names_the_key() {
    let err = build_fails("name = \"x\"\nmaxLayers = \"many\"\n", out_dir);
    assert!(
        err.contains("maxLayers") && err.contains("integer"),
        "{err}"
    );
}

#[test]
fn json_spec_errors_have_positions_too() {
    let work = tempdir();
    let spec = write_spec(
        work.path(),
        "gpubox.json",
        "{\n  \"name\": \"x\",\n  \"cmd\": [1, \n}\n",
    );
    let err = run_fails(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .args(["-o", "oci-archive:x.tar"])
            .current_dir(work.path()),
    );
    assert!(err.contains("gpubox.json") && err.contains(":4:"), "{err}");
}

#[test]
fn missing_store_path_is_named() {
    if !have("nix") {
        return;
    }
    let missing = "/nix/store/00000000000000000000000000000000-not-there-1.0";
    let err = build_fails(
        &format!("name = \"x\"\nsystemPackages = [\"{missing}\"]\n"),
        out_dir,
    );
    assert!(err.contains(missing), "{err}");
    assert!(err.contains("systemPackages[0]"), "{err}");
}

#[test]
fn failing_nix_build_keeps_nix_message() {
    if !have("nix") {
        return;
    }
    let fixture = repo_root().join("tests/fixtures/closure.nix");
    let err = build_fails(
        &format!(
            "name = \"x\"\nsystemPackages = [{{ file = {}, attr = \"failing\" }}]\n",
            toml_str(&fixture)
        ),
        out_dir,
    );
    assert!(
        err.contains("boom: the fixture build failed on purpose"),
        "{err}"
    );
}

#[test]
fn unreadable_file_is_named() {
    // Root reads everything, so the build runs as `nobody` when we are root.
    let work = tempdir();
    let secret = work.path().join("secret.txt");
    fs::write(&secret, "x").unwrap();
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    fs::create_dir_all(work.path().join("out")).unwrap();
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        "name = \"x\"\ncopyToRoot = [{ src = \"secret.txt\", dst = \"/secret.txt\" }]\n",
    );
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| stdout(&o).trim() == "0");
    let mut cmd = if is_root {
        Command::new("chmod")
            .args(["-R", "a+rwX"])
            .arg(work.path())
            .status()
            .unwrap();
        fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
        fs::set_permissions(
            work.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        // A copy inside the open folder, so `nobody` can run it wherever the
        // checkout lives.
        let binary = work.path().join("gpubox");
        fs::copy(env!("CARGO_BIN_EXE_gpubox"), &binary).unwrap();
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&binary);
        cmd
    } else {
        Command::new(env!("CARGO_BIN_EXE_gpubox"))
    };
    cmd.env("GPUBOX_CACHE_DIR", work.path().join("cache"))
        .env("HOME", work.path())
        .current_dir(work.path());
    let err = run_fails(
        cmd.arg("build")
            .arg(&spec)
            .args(["-o", "oci-archive:out/image.tar"]),
    );
    assert!(
        err.contains("secret.txt") && err.contains("ermission denied"),
        "{err}"
    );
    assert!(!work.path().join("out/image.tar").exists());
}

#[test]
fn two_sources_writing_one_path_differently_is_an_error() {
    let err = build_fails(
        "name = \"x\"\ncopyToRoot = [{ src = \"a.txt\", dst = \"/etc/app.conf\" }, { src = \"b.txt\", dst = \"/etc/app.conf\" }]\n",
        |dir| {
            out_dir(dir);
            fs::write(dir.join("a.txt"), "one").unwrap();
            fs::write(dir.join("b.txt"), "two").unwrap();
        },
    );
    assert!(
        err.contains("/etc/app.conf")
            && err.contains("copyToRoot[0]")
            && err.contains("copyToRoot[1]"),
        "{err}"
    );
}

#[test]
fn sockets_and_devices_are_refused() {
    let err = build_fails(
        "name = \"x\"\ncopyToRoot = [{ src = \"tree\", dst = \"/tree\" }]\n",
        |dir| {
            out_dir(dir);
            fs::create_dir_all(dir.join("tree")).unwrap();
            std::os::unix::net::UnixListener::bind(dir.join("tree/control.sock")).unwrap();
        },
    );
    assert!(
        err.contains("control.sock") && err.contains("socket"),
        "{err}"
    );

    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| stdout(&o).trim() == "0");
    if is_root {
        let err = build_fails(
            "name = \"x\"\ncopyToRoot = [{ src = \"dev\", dst = \"/dev2\" }]\n",
            |dir| {
                out_dir(dir);
                fs::create_dir_all(dir.join("dev")).unwrap();
                run_ok(
                    Command::new("mknod")
                        .arg(dir.join("dev/null0"))
                        .args(["c", "1", "3"]),
                );
            },
        );
        assert!(err.contains("null0") && err.contains("device"), "{err}");
    }
}

#[test]
fn unwritable_output_fails_before_building_and_names_only_the_output() {
    let work = tempdir();
    let spec = write_spec(work.path(), "gpubox.toml", "name = \"x\"\n");
    // A folder that cannot be: its parent is a file.
    fs::write(work.path().join("afile"), "x").unwrap();
    let err = unwrapped(&run_fails(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .args(["-o", "oci-archive:afile/image.tar"])
            .current_dir(work.path()),
    ));
    assert!(
        err.contains("cannot write the output afile/image.tar: Not a directory"),
        "{err}"
    );
    assert!(!err.contains(".tmp"), "no temporary file name: {err}");
    assert_eq!(
        err.matches("Not a directory").count(),
        1,
        "said once: {err}"
    );
    let err = run_fails(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .args(["-o", "tarball:x"]),
    );
    assert!(err.contains("tarball"), "{err}");
    // A path without a transport: the likely one is suggested.
    let err = unwrapped(&run_fails(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .args(["-o", "out/m.tar"]),
    ));
    assert!(err.contains("did you mean oci-archive:out/m.tar"), "{err}");
}

#[test]
fn an_output_in_missing_folders_creates_them_once_the_image_is_built() {
    let work = tempdir();
    let good = write_spec(work.path(), "good.toml", "name = \"x\"\n");
    let bad = write_spec(
        work.path(),
        "bad.toml",
        "name = \"x\"\ncmd = [\"nothing-here\"]\n",
    );
    // A failed build leaves no folder behind.
    run_fails(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&bad)
            .args([
                "-o",
                "oci-archive:new/deeper/image.tar",
                "--sbom",
                "sbom/x.spdx.json",
            ])
            .current_dir(work.path()),
    );
    assert!(!work.path().join("new").exists());
    assert!(!work.path().join("sbom").exists());
    for output in [
        "oci-archive:new/deeper/image.tar",
        "docker-archive:other/image.tar",
    ] {
        run_ok(
            gpubox(&work.path().join("cache"))
                .arg("build")
                .arg(&good)
                .args(["-q", "-o", output, "--sbom", "sbom/x.spdx.json"])
                .current_dir(work.path()),
        );
    }
    for file in [
        "new/deeper/image.tar",
        "other/image.tar",
        "sbom/x.spdx.json",
    ] {
        assert!(work.path().join(file).is_file(), "{file}");
    }
}

#[test]
fn a_missing_copy_to_root_source_is_reported_once() {
    let err = unwrapped(&build_fails(
        "name = \"x\"\ncopyToRoot = [{ src = \"missing\", dst = \"/app\" }]\n",
        out_dir,
    ));
    assert!(
        err.contains("copyToRoot[0] cannot be placed in the image"),
        "{err}"
    );
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains("gpubox.toml:2:15"), "{err}");
}
