//! The first steps (runtime folders, users' homes) and the home-manager activation on
//! a fake image root.

use std::os::unix::fs::PermissionsExt;

use gpubox_initplan::{AccountPlan, HomePlan, InitPlan};

use crate::common::stderr;
use crate::image_root::ImageRoot;

/// A plan with alice (uid and gid 1000, home `/home/alice`) as its one user.
fn plan_with_alice() -> InitPlan {
    let mut plan = InitPlan::new(2000);
    plan.users = vec![AccountPlan {
        name: "alice".to_owned(),
        uid: 1000,
        gid: 1000,
        home: "/home/alice".to_owned(),
    }];
    plan
}

#[test]
fn runtime_folders_and_missing_homes_are_made_before_anything_runs() {
    let root = ImageRoot::new();
    // A /tmp that lost its sticky bit is given its mode back.
    std::fs::create_dir(root.at("/tmp")).unwrap();
    std::fs::set_permissions(root.at("/tmp"), std::fs::Permissions::from_mode(0o755)).unwrap();
    root.set_plan(&plan_with_alice());
    let main = root.script("main.sh", "exit 0");

    let output = root.run(&mut root.init(&main, &[]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(root.owner_and_mode("/tmp"), (0, 0, 0o1777));
    assert_eq!(root.owner_and_mode("/var/tmp"), (0, 0, 0o1777));
    assert_eq!(root.owner_and_mode("/var/empty"), (0, 0, 0o755));
    assert_eq!(root.owner_and_mode("/run/sshd"), (0, 0, 0o755));
    assert_eq!(root.owner_and_mode("/home"), (0, 0, 0o755));
    assert_eq!(root.owner_and_mode("/home/alice"), (1000, 1000, 0o700));
}

/// Records who it runs as, where, and with which variables, in a folder anyone may
/// write to; exits with `$ACTIVATION_EXIT`.
const ACTIVATE: &str = r#"
echo "$(id -u) $(id -g) $(id -G) $HOME $USER $(pwd)" > "$GPUBOX_INIT_ROOT/out/activated"
exit "${ACTIVATION_EXIT:-0}"
"#;

fn home_plan(root: &ImageRoot) -> InitPlan {
    // The activation runs as alice, who must reach the stand-in and its output folder.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(root.at("/out")).unwrap();
    std::fs::set_permissions(root.at("/out"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let mut plan = plan_with_alice();
    plan.home = Some(HomePlan {
        activate: root.program("activate", ACTIVATE),
        user: "alice".to_owned(),
    });
    plan
}

#[test]
fn the_home_activation_runs_as_its_user_before_the_main_command() {
    let root = ImageRoot::new();
    root.set_plan(&home_plan(&root));
    let main = root.script("main.sh", r#"[ -s "$1/out/activated" ] || exit 9"#);

    let output = root.run(&mut root.init(&main, &[]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        root.read("/out/activated"),
        format!(
            "1000 1000 1000 10 /home/alice alice {}\n",
            root.str("/home/alice")
        )
    );
}

#[test]
fn a_failed_home_activation_stops_the_start_naming_the_step() {
    let root = ImageRoot::new();
    root.set_plan(&home_plan(&root));
    let main = root.script("main.sh", r#"touch "$1/out/main.ran""#);

    let output = root.run(&mut root.init(&main, &[("ACTIVATION_EXIT", "4")]));
    assert_ne!(output.status.code(), Some(0), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("start-up step `home` failed"), "{message}");
    assert!(message.contains("as `alice` failed"), "{message}");
    assert!(!root.at("/out/main.ran").exists(), "the main command ran");
}
