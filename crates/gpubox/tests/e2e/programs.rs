//! The build's check of what the image runs (`cmd`, `entrypoint`, services): each
//! common mistake fails the build naming the spec item and what is missing, with
//! nothing written; and `gpubox-init` names a missing interpreter at run time when
//! the check is turned off.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::common::*;

/// An `app/` folder with a script whose interpreter is `interpreter`, and a copy of
/// this machine's dynamically linked `/bin/ls`.
fn app(dir: &Path, interpreter: &str) {
    let app = dir.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("run.sh"),
        format!("#!{interpreter}\necho run.sh ran\n"),
    )
    .unwrap();
    std::fs::set_permissions(app.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy("/bin/ls", app.join("ls")).unwrap();
    std::fs::write(app.join("notes.txt"), "not a program\n").unwrap();
}

/// The build's error, whitespace made plain ([`unwrapped`]).
fn build_error(spec: &str, setup: impl FnOnce(&Path)) -> String {
    unwrapped(&build_fails(spec, setup))
}

fn spec(rest: &str) -> String {
    format!("name = \"checked\"\ncopyToRoot = [{{ src = \"app\", dst = \"/app\" }}]\n{rest}")
}

#[test]
fn a_command_missing_from_the_image_fails_the_build_naming_it() {
    let err = build_error(&spec("cmd = [\"python3\", \"app.py\"]\n"), |d| {
        out_dir(d);
        app(d, "/bin/sh");
    });
    assert!(
        err.contains("`cmd` runs `python3`, which is in no folder of PATH"),
        "{err}"
    );
    assert!(err.contains("gpubox.toml:3"), "the spec's line: {err}");
    assert!(err.contains("checkPrograms = false"), "the opt-out: {err}");
}

#[test]
fn a_script_without_its_interpreter_fails_the_build() {
    let err = build_error(&spec("cmd = [\"/app/run.sh\"]\n"), |d| {
        out_dir(d);
        app(d, "/bin/sh");
    });
    assert!(
        err.contains("/app/run.sh, a script whose #! interpreter /bin/sh is not in"),
        "{err}"
    );
    // `#!/usr/bin/env NAME`: the env program is there, the name is not.
    let err = build_error(
        &format!(
            "{}hostBinaries = [\"/usr/bin/env\"]\ncmd = [\"/app/run.sh\"]\n",
            spec("")
        ),
        |d| {
            out_dir(d);
            app(d, "/usr/bin/env python3");
        },
    );
    assert!(
        err.contains("`#!/usr/bin/env python3` finds no python3 in PATH"),
        "{err}"
    );
}

#[test]
fn a_copied_program_without_its_loader_fails_the_build() {
    let err = build_error(&spec("cmd = [\"/app/ls\"]\n"), |d| {
        out_dir(d);
        app(d, "/bin/sh");
    });
    assert!(
        err.contains("/app/ls, an ELF program whose loader /lib"),
        "{err}"
    );
    assert!(err.contains("hostBinaries"), "the fix: {err}");
}

#[test]
fn services_and_entrypoints_are_checked_too() {
    let err = build_error(
        &spec(
            "hostBinaries = [\"/bin/sh\"]\ncmd = [\"/app/run.sh\"]\n\n[services.web]\nargv = [\"/app/notes.txt\"]\n",
        ),
        |d| {
            out_dir(d);
            app(d, "/bin/sh");
        },
    );
    assert!(
        err.contains("`services.web.argv` runs /app/notes.txt, which is not executable"),
        "{err}"
    );
    let err = build_error(&spec("entrypoint = [\"/app\"]\n"), |d| {
        out_dir(d);
        app(d, "/bin/sh");
    });
    assert!(
        err.contains("`entrypoint` runs /app/, which is a folder")
            || err.contains("`entrypoint` runs /app, which is a folder"),
        "{err}"
    );
    // Links are followed inside the image: a dangling one names its chain.
    let err = build_error(&spec("cmd = [\"/app/dangling\"]\n"), |d| {
        out_dir(d);
        app(d, "/bin/sh");
        std::os::unix::fs::symlink("/opt/tool/bin/tool", d.join("app/dangling")).unwrap();
    });
    assert!(err.contains("/app/dangling, which is not in the image (following /app/dangling -> /opt/tool/bin/tool)"), "{err}");
}

#[test]
fn programs_from_the_closure_and_a_base_image_pass() {
    if !have("nix") {
        return;
    }
    let work = tempdir();
    let cache = work.path().join("cache");
    // The base: the bundled example (sh, ls, cat from this machine).
    let base = work.path().join("base");
    run_ok(&mut build_example_to(
        &cache,
        format!("oci:{}", base.display()),
    ));
    let hello = nix_fixture("hello");
    let spec = write_spec(
        work.path(),
        "derived.toml",
        &format!(
            "name = \"derived\"\nfromImage = \"oci:base\"\nsystemPackages = [{}]\ncmd = [\"hello\"]\n\n[services.lister]\nargv = [\"ls\", \"/\"]\n",
            toml_str(&hello)
        ),
    );
    run_ok(
        gpubox(&cache)
            .arg("build")
            .arg(&spec)
            .args(["-o", "oci:derived"])
            .current_dir(work.path()),
    );
    // A name neither the closure nor the base has still fails, after reading the base.
    let missing = write_spec(
        work.path(),
        "missing.toml",
        "name = \"derived\"\nfromImage = \"oci:base\"\ncmd = [\"/bin/sh\"]\n\n[services.x]\nargv = [\"bash\"]\n",
    );
    let err = unwrapped(&run_fails(
        gpubox(&cache)
            .arg("build")
            .arg(&missing)
            .args(["-o", "oci:missing"])
            .current_dir(work.path()),
    ));
    assert!(
        err.contains("`services.x.argv` runs `bash`, which is in no folder of PATH"),
        "{err}"
    );
    assert!(!work.path().join("missing").exists());
}

#[test]
fn without_the_check_the_init_names_the_missing_interpreter_at_run_time() {
    if !have("podman") {
        return;
    }
    let work = tempdir();
    app(work.path(), "/opt/python/bin/python3");
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        &spec("checkPrograms = false\nhostBinaries = [\"/bin/sh\"]\ncmd = [\"/app/run.sh\"]\n"),
    );
    let (_, out) = build_and_try_in_podman(
        &work.path().join("cache"),
        &spec,
        "gpubox-e2e-unchecked:latest",
        &[],
        &[],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("/app/run.sh is there, but it is a script whose #! interpreter /opt/python/bin/python3 is not in the image"),
        "{text}"
    );
}

#[test]
fn a_non_root_user_works_in_a_folder_it_can_write() {
    if !have("podman") {
        return;
    }
    let work = tempdir();
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        "name = \"gpubox-e2e-app-user\"\nhostBinaries = [\"/bin/sh\", \"/usr/bin/id\", \"/bin/cat\"]\nuser = \"app\"\ncmd = [\"/bin/sh\", \"-c\", \"echo written > notes.txt && cat $PWD/notes.txt && echo in $PWD as $(id -un)\"]\n",
    );
    let (_, text) = build_and_run_in_podman(
        &work.path().join("cache"),
        &spec,
        "gpubox-e2e-app-user:latest",
        &[],
        &[],
    );
    assert!(text.contains("written\nin /home/app as app"), "{text}");
}
