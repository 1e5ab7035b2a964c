//! Tests of the spec parser through its public API: values, defaults, merges,
//! and every kind of error with its message and the span it points at.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gpubox_spec::{
    created_epoch, load, parse, Compression, CopyToRoot, HostBinary, HostBinarySrc, Location,
    PackageRef, Platform, Spec, SpecError, DEFAULT_PATH,
};
use miette::{Diagnostic, SourceSpan};

const TOML_FILE: &str = "/specs/app/gpubox.toml";
const JSON_FILE: &str = "/specs/app/gpubox.json";

fn toml(text: &str) -> Spec {
    parse(text, Path::new(TOML_FILE)).unwrap_or_else(|error| panic!("{error}"))
}

fn json(text: &str) -> Spec {
    parse(text, Path::new(JSON_FILE)).unwrap_or_else(|error| panic!("{error}"))
}

fn toml_error(text: &str) -> SpecError {
    parse(text, Path::new(TOML_FILE)).expect_err("the spec should be rejected")
}

fn json_error(text: &str) -> SpecError {
    parse(text, Path::new(JSON_FILE)).expect_err("the spec should be rejected")
}

/// The one label's span as (offset, length).
fn label(error: &SpecError) -> (usize, usize) {
    let labels: Vec<_> = error
        .labels()
        .expect("a positioned error has a label")
        .collect();
    assert_eq!(labels.len(), 1, "{error}");
    (labels[0].offset(), labels[0].len())
}

/// The span of the first occurrence of `needle` in `text`.
fn span_of(text: &str, needle: &str) -> (usize, usize) {
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    (offset, needle.len())
}

fn spanned(text: &str, span: Option<SourceSpan>) -> &str {
    let span = span.expect("items carry spans");
    &text[span.offset()..span.offset() + span.len()]
}

fn help(error: &SpecError) -> String {
    error
        .help()
        .map(|help| help.to_string())
        .unwrap_or_default()
}

#[test]
fn minimal_spec_gets_the_defaults() {
    let spec = toml("name = \"app\"\n");
    assert_eq!(spec.file, PathBuf::from(TOML_FILE));
    assert_eq!(spec.dir, PathBuf::from("/specs/app"));
    assert_eq!(spec.name, "app");
    assert_eq!(spec.tag, "latest");
    assert!(spec.system_packages.is_empty());
    assert!(spec.copy_to_root.is_empty());
    assert!(spec.host_binaries.is_empty());
    assert_eq!(
        spec.env,
        BTreeMap::from([("PATH".to_owned(), DEFAULT_PATH.to_owned())])
    );
    assert!(spec.labels.is_empty());
    assert!(spec.exposed_ports.is_empty());
    assert_eq!(spec.user, None);
    assert_eq!(spec.working_dir, None);
    assert_eq!(spec.from_image, None);
    assert!(!spec.env_sets_path);
    assert!(spec.cmd.is_empty());
    assert_eq!(spec.entrypoint, None);
    assert_eq!(spec.max_layers, 50);
    assert_eq!(spec.created, None);
    assert_eq!(spec.compression, Compression::Gzip);
}

#[test]
fn relative_spec_file_is_made_absolute() {
    let spec = parse("name = \"app\"\n", Path::new("sub/gpubox.toml")).expect("valid spec");
    let cwd = std::env::current_dir().expect("current dir");
    assert_eq!(spec.file, cwd.join("sub/gpubox.toml"));
    assert_eq!(spec.dir, cwd.join("sub"));
    assert_eq!(spec.source().name(), "sub/gpubox.toml");
}

const FULL_TOML: &str = r#"
name = "team/app"
tag = "v1.2"
systemPackages = [
  "nixpkgs#hello",
  "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12",
  { file = "pkgs.nix", attr = "tool" },
  { file = "/abs/other.nix" },
]
hostBinaries = ["nvidia-smi", "./bin/tool", { src = "/usr/bin/ldd", dst = "/usr/local/bin/ldd" }]
env = { LANG = "C.UTF-8", PATH = "/bin" }
extraEnv = { PATH = "/usr/bin:/bin", EXTRA = "1" }
labels = { "org.opencontainers.image.title" = "app", owner = "a" }
extraLabels = { owner = "b" }
exposedPorts = ["22/tcp", "53/UDP", "8080", "8080/tcp", "9/sctp"]
user = "1000:1000"
workingDir = "/srv"
cmd = ["serve", "--port", "8080"]
entrypoint = ["/bin/sh", "-c"]
maxLayers = 125
created = "2024-01-02T03:04:05Z"
compression = "zstd"

[[copyToRoot]]
src = "etc/app.conf"
dst = "/etc/app.conf"
mode = "0644"
uid = 1000
gid = 100

[[copyToRoot]]
src = "./static/../www"
dst = "/srv/www/"
mode = 0o755
"#;

const FULL_JSON: &str = r#"{
  "name": "team/app",
  "tag": "v1.2",
  "systemPackages": [
    "nixpkgs#hello",
    "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12",
    {"file": "pkgs.nix", "attr": "tool"},
    {"file": "/abs/other.nix", "attr": null}
  ],
  "copyToRoot": [
    {"src": "etc/app.conf", "dst": "/etc/app.conf", "mode": "0644", "uid": 1000, "gid": 100},
    {"src": "./static/../www", "dst": "/srv/www/", "mode": 493}
  ],
  "hostBinaries": ["nvidia-smi", "./bin/tool", {"src": "/usr/bin/ldd", "dst": "/usr/local/bin/ldd"}],
  "env": {"LANG": "C.UTF-8", "PATH": "/bin"},
  "extraEnv": {"PATH": "/usr/bin:/bin", "EXTRA": "1"},
  "labels": {"org.opencontainers.image.title": "app", "owner": "a"},
  "extraLabels": {"owner": "b"},
  "exposedPorts": ["22/tcp", "53/UDP", "8080", "8080/tcp", "9/sctp"],
  "user": "1000:1000",
  "workingDir": "/srv",
  "cmd": ["serve", "--port", "8080"],
  "entrypoint": ["/bin/sh", "-c"],
  "maxLayers": 125,
  "created": 1704164645,
  "compression": "zstd"
}"#;

#[test]
fn full_toml_spec_is_read_and_merged() {
    let spec = toml(FULL_TOML);
    assert_eq!(spec.name, "team/app");
    assert_eq!(spec.tag, "v1.2");
    let packages: Vec<_> = spec
        .system_packages
        .iter()
        .map(|item| item.value.clone())
        .collect();
    assert_eq!(
        packages,
        [
            PackageRef::Installable("nixpkgs#hello".to_owned()),
            PackageRef::StorePath(
                "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12".to_owned()
            ),
            PackageRef::NixFile {
                file: "/specs/app/pkgs.nix".into(),
                attr: Some("tool".to_owned()),
                system: None,
            },
            PackageRef::NixFile {
                file: "/abs/other.nix".into(),
                attr: None,
                system: None,
            },
        ]
    );
    assert_eq!(
        spanned(FULL_TOML, spec.system_packages[0].span),
        "\"nixpkgs#hello\""
    );
    assert_eq!(
        spanned(FULL_TOML, spec.system_packages[2].span),
        "{ file = \"pkgs.nix\", attr = \"tool\" }"
    );
    let copies: Vec<_> = spec
        .copy_to_root
        .iter()
        .map(|item| item.value.clone())
        .collect();
    assert_eq!(
        copies,
        [
            CopyToRoot {
                src: "/specs/app/etc/app.conf".into(),
                dst: "/etc/app.conf".to_owned(),
                mode: Some(0o644),
                uid: Some(1000),
                gid: Some(100),
            },
            CopyToRoot {
                src: "/specs/app/static/../www".into(),
                dst: "/srv/www/".to_owned(),
                mode: Some(0o755),
                uid: None,
                gid: None,
            },
        ]
    );
    let binaries: Vec<_> = spec
        .host_binaries
        .iter()
        .map(|item| item.value.clone())
        .collect();
    assert_eq!(
        binaries,
        [
            HostBinary {
                src: HostBinarySrc::Command("nvidia-smi".to_owned()),
                dst: None
            },
            HostBinary {
                src: HostBinarySrc::Path("/specs/app/bin/tool".into()),
                dst: None
            },
            HostBinary {
                src: HostBinarySrc::Path("/usr/bin/ldd".into()),
                dst: Some("/usr/local/bin/ldd".to_owned()),
            },
        ]
    );
    // `env` replaced the default PATH; `extraEnv` overrode PATH again.
    assert_eq!(
        spec.env,
        BTreeMap::from([
            ("EXTRA".to_owned(), "1".to_owned()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
        ])
    );
    assert_eq!(
        spec.labels,
        BTreeMap::from([
            (
                "org.opencontainers.image.title".to_owned(),
                "app".to_owned()
            ),
            ("owner".to_owned(), "b".to_owned()),
        ])
    );
    assert_eq!(
        spec.exposed_ports,
        ["22/tcp", "53/udp", "8080/tcp", "9/sctp"]
    );
    assert_eq!(spec.user.as_deref(), Some("1000:1000"));
    assert_eq!(spec.working_dir.as_deref(), Some("/srv"));
    assert_eq!(spec.cmd, ["serve", "--port", "8080"]);
    assert_eq!(
        spec.entrypoint,
        Some(vec!["/bin/sh".to_owned(), "-c".to_owned()])
    );
    assert_eq!(spec.max_layers, 125);
    assert_eq!(spec.created, Some(1_704_164_645));
    assert_eq!(spec.compression, Compression::Zstd);
}

/// Everything but positions and the file: what a spec means.
fn meaning(spec: &Spec) -> impl PartialEq + std::fmt::Debug {
    let values = |spans: Vec<Option<SourceSpan>>| spans.iter().all(Option::is_some);
    assert!(values(
        spec.system_packages.iter().map(|item| item.span).collect()
    ));
    assert!(values(
        spec.copy_to_root.iter().map(|item| item.span).collect()
    ));
    assert!(values(
        spec.host_binaries.iter().map(|item| item.span).collect()
    ));
    (
        (
            spec.dir.clone(),
            spec.name.clone(),
            spec.tag.clone(),
            spec.system_packages
                .iter()
                .map(|item| item.value.clone())
                .collect::<Vec<_>>(),
            spec.copy_to_root
                .iter()
                .map(|item| item.value.clone())
                .collect::<Vec<_>>(),
            spec.host_binaries
                .iter()
                .map(|item| item.value.clone())
                .collect::<Vec<_>>(),
            spec.env.clone(),
            spec.labels.clone(),
        ),
        (
            spec.exposed_ports.clone(),
            spec.user.clone(),
            spec.working_dir.clone(),
            spec.cmd.clone(),
            spec.entrypoint.clone(),
            spec.max_layers,
            spec.created,
            spec.compression,
        ),
    )
}

#[test]
fn toml_and_json_give_the_same_spec() {
    let from_toml = toml(FULL_TOML);
    let from_json = json(FULL_JSON);
    assert_eq!(meaning(&from_toml), meaning(&from_json));
    assert_eq!(
        spanned(FULL_JSON, from_json.copy_to_root[1].span),
        r#"{"src": "./static/../www", "dst": "/srv/www/", "mode": 493}"#
    );
}

#[test]
fn json_is_detected_by_content_and_null_means_unset() {
    let spec = parse(
        "\n  {\"name\": \"app\", \"tag\": null, \"entrypoint\": null}",
        Path::new("/specs/spec.conf"),
    )
    .expect("valid JSON spec");
    assert_eq!(spec.tag, "latest");
    assert_eq!(spec.entrypoint, None);
}

#[test]
fn env_absent_keeps_default_path_and_extra_env_adds() {
    let spec = toml("name = \"app\"\nextraEnv = { LANG = \"C.UTF-8\" }\n");
    assert_eq!(spec.env["PATH"], DEFAULT_PATH);
    assert_eq!(spec.env["LANG"], "C.UTF-8");
    let spec = toml("name = \"app\"\n[env]\nLANG = \"C\"\n");
    assert_eq!(
        spec.env,
        BTreeMap::from([("LANG".to_owned(), "C".to_owned())])
    );
}

#[test]
fn bad_env_names_point_at_the_key() {
    let text = "name = \"app\"\nenv = { \"A=B\" = \"x\" }\n";
    let error = toml_error(text);
    assert!(
        error.to_string().contains("invalid `env.\"A=B\"`"),
        "{error}"
    );
    assert_eq!(label(&error), span_of(text, "\"A=B\""));
    let text = "name = \"app\"\nextraEnv = { \"\" = \"x\" }\n";
    let error = toml_error(text);
    assert!(
        error.to_string().contains("is not a valid variable name"),
        "{error}"
    );
    let error = toml_error("name = \"app\"\nlabels = { a = 1 }\n");
    assert!(
        error
            .to_string()
            .contains("`labels.a` must be a string, found an integer"),
        "{error}"
    );
}

#[test]
fn unknown_top_level_key_suggests_the_close_one() {
    let text = "name = \"app\"\nmax_layers = 3\n";
    let error = toml_error(text);
    assert_eq!(
        error.to_string(),
        "/specs/app/gpubox.toml:2:1: unknown key `max_layers` (did you mean `maxLayers`?)"
    );
    assert_eq!(label(&error), span_of(text, "max_layers"));
    assert!(help(&error).contains("maxLayers"));
    assert!(
        matches!(&error, SpecError::UnknownKey { suggestion: Some(s), .. } if s == "maxLayers")
    );

    let error = toml_error("name = \"app\"\nzzzz = 1\n");
    assert_eq!(
        error.to_string(),
        "/specs/app/gpubox.toml:2:1: unknown key `zzzz`"
    );
}

#[test]
fn unknown_key_inside_tables_names_the_path() {
    let text = "name = \"app\"\n[[copyToRoot]]\nsrc = \"a\"\ndest = \"/a\"\n";
    let error = toml_error(text);
    assert_eq!(
        error.to_string(),
        "/specs/app/gpubox.toml:4:1: unknown key `copyToRoot[0].dest` (did you mean `dst`?)"
    );
    assert_eq!(label(&error), span_of(text, "dest"));

    let text = r#"{"name": "app", "hostBinaries": [{"src": "x", "dts": "/x"}]}"#;
    let error = json_error(text);
    assert!(
        error
            .to_string()
            .ends_with("unknown key `hostBinaries[0].dts` (did you mean `dst`?)"),
        "{error}"
    );
    assert_eq!(label(&error), span_of(text, "\"dts\""));

    let error =
        toml_error("name = \"app\"\nsystemPackages = [{ file = \"a.nix\", atr = \"x\" }]\n");
    assert!(
        error
            .to_string()
            .contains("`systemPackages[0].atr` (did you mean `attr`?)"),
        "{error}"
    );
}

#[test]
fn wrong_type_names_key_path_expected_and_found() {
    let text = "name = \"app\"\n[[copyToRoot]]\nsrc = \"a\"\ndst = \"/a\"\n\n[[copyToRoot]]\nsrc = \"b\"\ndst = \"/b\"\nmode = true\n";
    let error = toml_error(text);
    assert_eq!(
        error.to_string(),
        "/specs/app/gpubox.toml:9:8: `copyToRoot[1].mode` must be an octal string like \"0755\" or an integer, found a boolean"
    );
    assert_eq!(label(&error), span_of(text, "true"));
    assert!(matches!(
        &error,
        SpecError::WrongType { path, found: "a boolean", location: Location { line: 9, column: 8 }, .. }
            if path == "copyToRoot[1].mode"
    ));

    let text = "{\n  \"name\": \"app\",\n  \"maxLayers\": \"3\"\n}";
    let error = json_error(text);
    assert_eq!(
        error.to_string(),
        "/specs/app/gpubox.json:3:16: `maxLayers` must be an integer, found a string"
    );
    assert_eq!(label(&error), span_of(text, "\"3\""));

    let error = toml_error("name = \"app\"\nmaxLayers = 3.0\n");
    assert!(
        error
            .to_string()
            .ends_with("`maxLayers` must be an integer, found a float"),
        "{error}"
    );
    let error = toml_error("name = \"app\"\ncmd = \"serve\"\n");
    assert!(
        error
            .to_string()
            .ends_with("`cmd` must be an array of strings, found a string"),
        "{error}"
    );
    let error = toml_error("name = \"app\"\ncmd = [\"a\", 1]\n");
    assert!(
        error
            .to_string()
            .ends_with("`cmd[1]` must be a string, found an integer"),
        "{error}"
    );
    let error = json_error(r#"{"name": "app", "copyToRoot": [7]}"#);
    assert!(
        error
            .to_string()
            .ends_with("`copyToRoot[0]` must be an object, found an integer"),
        "{error}"
    );
    let error = toml_error("name = \"app\"\nsystemPackages = [true]\n");
    assert!(
        error.to_string().ends_with(
            "`systemPackages[0]` must be a string (installable or store path) or a table { file, attr, system }, found a boolean"
        ),
        "{error}"
    );
    let error = json_error("[1, 2]");
    assert!(
        error
            .to_string()
            .contains("must be an object, found an array"),
        "{error}"
    );
}

#[test]
fn missing_keys_are_reported() {
    let error = toml_error("tag = \"x\"\n");
    assert_eq!(
        error.to_string(),
        "/specs/app/gpubox.toml:1:1: missing required key `name`"
    );
    assert!(help(&error).contains("name = \"my-app\""));
    let text = "name = \"app\"\ncopyToRoot = [{ src = \"a\" }]\n";
    let error = toml_error(text);
    assert!(
        error
            .to_string()
            .ends_with("missing required key `copyToRoot[0].dst`"),
        "{error}"
    );
    assert_eq!(label(&error).0, text.find("{ src").expect("table in text"));
    let error = json_error(r#"{"name": "app", "hostBinaries": [{"dst": "/x"}]}"#);
    assert!(
        error
            .to_string()
            .ends_with("missing required key `hostBinaries[0].src`"),
        "{error}"
    );
    let error = toml_error("name = \"app\"\nsystemPackages = [{ attr = \"x\" }]\n");
    assert!(
        error
            .to_string()
            .ends_with("missing required key `systemPackages[0].file`"),
        "{error}"
    );
}

#[test]
fn toml_syntax_errors_have_line_and_column() {
    let text = "name = \"app\"\nmaxLayers = \n";
    let error = toml_error(text);
    let SpecError::Syntax {
        location, format, ..
    } = &error
    else {
        panic!("{error}")
    };
    assert_eq!(*format, "TOML");
    assert_eq!(location.line, 2);
    assert!(
        error.to_string().starts_with("/specs/app/gpubox.toml:2:"),
        "{error}"
    );
    assert!(label(&error).0 >= text.find("maxLayers").expect("key in text"));

    let error = toml_error("name = \"app\"\nname = \"b\"\n");
    assert!(
        error
            .to_string()
            .starts_with("/specs/app/gpubox.toml:2:1: invalid TOML syntax: duplicate key"),
        "{error}"
    );
}

#[test]
fn json_syntax_errors_have_line_and_column() {
    let text = "{\n  \"name\": \"app\",\n  \"maxLayers\": 3,,\n}";
    let error = json_error(text);
    assert_eq!(
        error.to_string(),
        "/specs/app/gpubox.json:3:18: invalid JSON syntax: key must be a string"
    );
    assert_eq!(label(&error), (text.find(",,").expect("commas") + 1, 0));
    let error = json_error("{\"name\": \"app\"");
    assert!(
        error
            .to_string()
            .contains("invalid JSON syntax: EOF while parsing an object"),
        "{error}"
    );
    let error = json_error("{\"name\": \"app\"} x");
    assert!(error.to_string().contains("trailing characters"), "{error}");
}

/// A hostile or generated spec nested 100,000 levels deep once overflowed the stack
/// and aborted gpubox; it is now a syntax error at the first bracket past the limit, as
/// TOML's parser reports its own limit. Brackets inside strings do not count.
#[test]
fn deeply_nested_json_is_a_syntax_error_not_a_crash() {
    let depth = 100_000;
    let text = format!(
        "{{\"name\": \"app\", \"env\": {}{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let error = json_error(&text);
    let message = error.to_string();
    assert!(
        message.starts_with("/specs/app/gpubox.json:1:")
            && message.contains("nest more than 128 levels deep"),
        "{message}"
    );
    let first_bracket = text.find('[').expect("bracket");
    assert_eq!(label(&error), (first_bracket + 127, 1));

    let toml = format!(
        "name = \"app\"\nenv = {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert!(toml_error(&toml).to_string().contains("recursion"));

    // 200 brackets inside a string are text, not nesting.
    let quoted = format!(
        "{{\"name\": \"app\", \"cmd\": [\"{}\\\"\"]}}",
        "[".repeat(200)
    );
    assert_eq!(json(&quoted).cmd[0].len(), 201);
}

#[test]
fn json_duplicate_keys_are_rejected() {
    let text = "{\"name\": \"app\",\n \"name\": \"b\"}";
    let error = json_error(text);
    assert_eq!(
        error.to_string(),
        "/specs/app/gpubox.json:2:2: key `name` is given twice"
    );
    assert_eq!(label(&error), (text.rfind("\"name\"").expect("key"), 6));
}

#[test]
fn image_name_and_tag_are_checked() {
    for good in ["app", "team/app", "a.b_c__d--e", "x9/y-1"] {
        assert_eq!(toml(&format!("name = \"{good}\"\n")).name, good);
    }
    for (bad, problem) in [
        ("App", "'A' is not allowed in an image name"),
        ("app:1", "':' is not allowed"),
        (
            "-app",
            "must start and end with a lowercase letter or digit",
        ),
        ("team//app", "has an empty path component"),
        ("a._b", "\"._\" in \"a._b\" is not a valid separator"),
        ("a___b", "is not a valid separator"),
        ("", "the image name is empty"),
    ] {
        let text = format!("name = \"{bad}\"\n");
        let error = toml_error(&text);
        assert!(error.to_string().contains(problem), "{bad}: {error}");
        assert_eq!(label(&error), span_of(&text, &format!("\"{bad}\"")));
    }
    let long = "a".repeat(128);
    assert_eq!(
        toml(&format!("name = \"app\"\ntag = \"{long}\"\n")).tag,
        long
    );
    for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129)] {
        let error = toml_error(&format!("name = \"app\"\ntag = \"{bad}\"\n"));
        assert!(
            error.to_string().contains("invalid `tag`"),
            "{bad}: {error}"
        );
    }
    assert_eq!(toml("name = \"app\"\ntag = \"_1.0-rc\"\n").tag, "_1.0-rc");
}

#[test]
fn system_package_strings_are_checked() {
    for (bad, problem) in [
        ("/nix/store/short-hello", "is not a store path"),
        (
            "/nix/store/0123456789abcdfghijklmnpqrsvwxyz",
            "is not a store path",
        ),
        (
            "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello/bin/hello",
            "is a path inside a store path",
        ),
        // `e` is not in Nix's base-32 alphabet.
        (
            "/nix/store/e123456789abcdfghijklmnpqrsvwxyz-hello",
            "is not a store path",
        ),
        ("nixpkgs#hello nixpkgs#git", "is not a Nix installable"),
        ("", "is not a Nix installable"),
    ] {
        let text = format!("name = \"app\"\nsystemPackages = [\"nixpkgs#ok\", \"{bad}\"]\n");
        let error = toml_error(&text);
        assert!(
            error.to_string().contains("invalid `systemPackages[1]`"),
            "{error}"
        );
        assert!(error.to_string().contains(problem), "{bad}: {error}");
        let offset = text.rfind(&format!("\"{bad}\"")).expect("value in text");
        assert_eq!(label(&error), (offset, bad.len() + 2));
    }
    let error = toml_error("name = \"app\"\nsystemPackages = [{ file = \"\" }]\n");
    assert!(
        error
            .to_string()
            .contains("invalid `systemPackages[0].file`: the path is empty"),
        "{error}"
    );
    let error =
        toml_error("name = \"app\"\nsystemPackages = [{ file = \"a.nix\", attr = \"\" }]\n");
    assert!(
        error
            .to_string()
            .contains("invalid `systemPackages[0].attr`"),
        "{error}"
    );
}

#[test]
fn copy_destinations_are_checked() {
    for (bad, problem) in [
        ("etc/app", "is not an absolute path"),
        ("/etc/../app", "contains `..`"),
        ("/nix/store/abc-x", "is inside /nix/store"),
        ("/nix/store", "is inside /nix/store"),
        ("//nix/./store/x", "is inside /nix/store"),
    ] {
        let text = format!("name = \"app\"\ncopyToRoot = [{{ src = \"a\", dst = \"{bad}\" }}]\n");
        let error = toml_error(&text);
        assert!(
            error.to_string().contains("invalid `copyToRoot[0].dst`"),
            "{error}"
        );
        assert!(error.to_string().contains(problem), "{bad}: {error}");
        assert_eq!(label(&error), span_of(&text, &format!("\"{bad}\"")));
    }
    let error = toml_error("name = \"app\"\nhostBinaries = [{ src = \"ls\", dst = \"bin/ls\" }]\n");
    assert!(
        error
            .to_string()
            .contains("invalid `hostBinaries[0].dst`: \"bin/ls\" is not an absolute path"),
        "{error}"
    );
    assert!(help(&error).contains("\"/bin/ls\""));
    assert_eq!(
        toml("name = \"app\"\ncopyToRoot = [{ src = \"a\", dst = \"/nix/storage\" }]\n")
            .copy_to_root[0]
            .value
            .dst,
        "/nix/storage"
    );
}

#[test]
fn copy_mode_forms() {
    let mode = |value: &str| {
        toml(&format!(
            "name = \"app\"\ncopyToRoot = [{{ src = \"a\", dst = \"/a\", mode = {value} }}]\n"
        ))
        .copy_to_root[0]
            .value
            .mode
    };
    assert_eq!(mode("\"0755\""), Some(0o755));
    assert_eq!(mode("\"755\""), Some(0o755));
    assert_eq!(mode("\"0o4755\""), Some(0o4755));
    assert_eq!(mode("0o7777"), Some(0o7777));
    assert_eq!(mode("0"), Some(0));
    assert_eq!(mode("7"), Some(7));
    assert_eq!(
        json(r#"{"name": "app", "copyToRoot": [{"src": "a", "dst": "/a", "mode": 420}]}"#)
            .copy_to_root[0]
            .value
            .mode,
        Some(0o644)
    );

    let text = "name = \"app\"\ncopyToRoot = [{ src = \"a\", dst = \"/a\", mode = 755 }]\n";
    let error = toml_error(text);
    assert!(
        error
            .to_string()
            .contains("invalid `copyToRoot[0].mode`: 755 is a decimal number (octal 1363)"),
        "{error}"
    );
    assert!(help(&error).contains("0o755"));
    assert_eq!(label(&error), span_of(text, "755"));

    for (bad, problem) in [
        ("0o17777", "mode 0o17777 is not between 0 and 0o7777"),
        ("\"10000\"", "mode \"10000\" is not between 0 and 0o7777"),
        ("\"0759\"", "\"0759\" is not an octal mode"),
        ("\"+755\"", "is not an octal mode"),
        ("\"rwx\"", "is not an octal mode"),
        ("-1", "mode -1 is not between 0 and 0o7777"),
        ("\"\"", "\"\" is not an octal mode"),
    ] {
        let error = toml_error(&format!(
            "name = \"app\"\ncopyToRoot = [{{ src = \"a\", dst = \"/a\", mode = {bad} }}]\n"
        ));
        assert!(error.to_string().contains(problem), "{bad}: {error}");
    }
}

#[test]
fn copy_ids_must_fit() {
    let error =
        toml_error("name = \"app\"\ncopyToRoot = [{ src = \"a\", dst = \"/a\", uid = -1 }]\n");
    assert!(
        error
            .to_string()
            .contains("invalid `copyToRoot[0].uid`: -1 is not a valid id"),
        "{error}"
    );
    let error = json_error(
        r#"{"name": "app", "copyToRoot": [{"src": "a", "dst": "/a", "gid": 4294967296}]}"#,
    );
    assert!(
        error.to_string().contains("invalid `copyToRoot[0].gid`"),
        "{error}"
    );
    let error =
        toml_error("name = \"app\"\ncopyToRoot = [{ src = \"a\", dst = \"/a\", gid = \"0\" }]\n");
    assert!(
        error
            .to_string()
            .contains("`copyToRoot[0].gid` must be a non-negative integer, found a string"),
        "{error}"
    );
    let error = toml_error("name = \"app\"\ncopyToRoot = [{ src = \"\", dst = \"/a\" }]\n");
    assert!(
        error
            .to_string()
            .contains("invalid `copyToRoot[0].src`: the path is empty"),
        "{error}"
    );
}

#[test]
fn host_binary_sources() {
    let spec = toml("name = \"app\"\nhostBinaries = [\"/usr/bin/env\", \"tools/x\", \"../y\", { src = \"ldd\" }]\n");
    let sources: Vec<_> = spec
        .host_binaries
        .iter()
        .map(|item| item.value.src.clone())
        .collect();
    assert_eq!(
        sources,
        [
            HostBinarySrc::Path("/usr/bin/env".into()),
            HostBinarySrc::Path("/specs/app/tools/x".into()),
            HostBinarySrc::Path("/specs/app/../y".into()),
            HostBinarySrc::Command("ldd".to_owned()),
        ]
    );
    for bad in ["", ".."] {
        let error = toml_error(&format!("name = \"app\"\nhostBinaries = [\"{bad}\"]\n"));
        assert!(
            error.to_string().contains("invalid `hostBinaries[0]`"),
            "{error}"
        );
    }
    let error = toml_error("name = \"app\"\nhostBinaries = [3]\n");
    assert!(
        error.to_string().contains(
            "`hostBinaries[0]` must be a string or a table { src, dst }, found an integer"
        ),
        "{error}"
    );
}

#[test]
fn exposed_ports_are_normalised_and_checked() {
    let spec = toml("name = \"app\"\nexposedPorts = [\"1\", \"65535/udp\"]\n");
    assert_eq!(spec.exposed_ports, ["1/tcp", "65535/udp"]);
    for (bad, problem) in [
        ("0", "\"0\" is not a port number from 1 to 65535"),
        ("65536/tcp", "\"65536\" is not a port number"),
        ("+22", "is not a port number"),
        ("22/icmp", "unknown protocol \"icmp\""),
        ("", "is not a port number"),
    ] {
        let text = format!("name = \"app\"\nexposedPorts = [\"22\", \"{bad}\"]\n");
        let error = toml_error(&text);
        assert!(
            error.to_string().contains("invalid `exposedPorts[1]`"),
            "{error}"
        );
        assert!(error.to_string().contains(problem), "{bad}: {error}");
    }
    let error = toml_error("name = \"app\"\nexposedPorts = [22]\n");
    assert!(
        error
            .to_string()
            .contains("`exposedPorts[0]` must be a string, found an integer"),
        "{error}"
    );
}

#[test]
fn volumes_are_normalised_in_spec_order_with_their_spans() {
    let text = "name = \"app\"\nvolumes = [\"/workspace\", \"/data/\", \"//srv/./models//\"]\n";
    let spec = toml(text);
    let volumes: Vec<&str> = spec.volumes.iter().map(|v| v.value.as_str()).collect();
    assert_eq!(volumes, ["/workspace", "/data", "/srv/models"]);
    assert_eq!(spanned(text, spec.volumes[1].span), "\"/data/\"");
    assert!(toml("name = \"app\"\n").volumes.is_empty());
    let spec = json(r#"{"name": "app", "volumes": ["/workspace"]}"#);
    assert_eq!(spec.volumes[0].value, "/workspace");
}

#[test]
fn bad_volumes_are_named_with_their_position() {
    for (bad, message) in [
        (
            "workspace",
            "/specs/app/gpubox.toml:2:26: invalid `volumes[1]`: \"workspace\" is not an absolute path",
        ),
        (
            "/data/../etc",
            "/specs/app/gpubox.toml:2:26: invalid `volumes[1]`: \"/data/../etc\" contains `..`",
        ),
        (
            "/",
            "/specs/app/gpubox.toml:2:26: invalid `volumes[1]`: \"/\" is the container's root folder",
        ),
        (
            "//./",
            "/specs/app/gpubox.toml:2:26: invalid `volumes[1]`: \"//./\" is the container's root folder",
        ),
        (
            "/workspace",
            "/specs/app/gpubox.toml:2:26: invalid `volumes[1]`: \"/workspace\" is listed twice, first as `volumes[0]`",
        ),
        (
            "/workspace/",
            "/specs/app/gpubox.toml:2:26: invalid `volumes[1]`: \"/workspace/\" is the same folder as \"/workspace\" (`volumes[0]`)",
        ),
    ] {
        let text = format!("name = \"app\"\nvolumes = [\"/workspace\", \"{bad}\"]\n");
        let error = toml_error(&text);
        assert_eq!(error.to_string(), message, "{bad}");
        let offset = text.rfind(&format!("\"{bad}\"")).expect("the bad entry");
        assert_eq!(label(&error), (offset, bad.len() + 2), "{bad}");
    }
    let error = toml_error("name = \"app\"\nvolumes = \"/workspace\"\n");
    assert!(
        error
            .to_string()
            .contains("`volumes` must be an array of strings, found a string"),
        "{error}"
    );
    let error = toml_error("name = \"app\"\nvolume = [\"/workspace\"]\n");
    assert!(
        error.to_string().contains("(did you mean `volumes`?)"),
        "{error}"
    );
}

#[test]
fn a_platform_table_may_set_its_own_volumes() {
    let text = "name = \"app\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\nvolumes = [\"/workspace\"]\n[platform.\"linux/arm64\"]\nvolumes = [\"/workspace\", \"/data\"]\n";
    let spec = toml(text);
    let volumes = |platform| -> Vec<String> {
        spec.for_platform(platform)
            .volumes
            .iter()
            .map(|v| v.value.clone())
            .collect()
    };
    assert_eq!(volumes(Platform::Amd64), ["/workspace"]);
    assert_eq!(volumes(Platform::Arm64), ["/workspace", "/data"]);
}

#[test]
fn user_and_working_dir_are_checked() {
    for good in ["root", "1000", "app:app", "1000:100", "svc-user.x"] {
        assert_eq!(
            toml(&format!("name = \"app\"\nuser = \"{good}\"\n"))
                .user
                .as_deref(),
            Some(good)
        );
    }
    for bad in ["", "a b", "1000:", ":1", "a:b:c", "-x"] {
        let error = toml_error(&format!("name = \"app\"\nuser = \"{bad}\"\n"));
        assert!(
            error.to_string().contains("invalid `user`"),
            "{bad}: {error}"
        );
    }
    let error = toml_error("name = \"app\"\nworkingDir = \"srv\"\n");
    assert!(
        error
            .to_string()
            .contains("invalid `workingDir`: \"srv\" is not an absolute path"),
        "{error}"
    );
}

#[test]
fn max_layers_range() {
    assert_eq!(toml("name = \"app\"\nmaxLayers = 2\n").max_layers, 2);
    assert_eq!(toml("name = \"app\"\nmaxLayers = 125\n").max_layers, 125);
    for bad in ["1", "126", "-5"] {
        let text = format!("name = \"app\"\nmaxLayers = {bad}\n");
        let error = toml_error(&text);
        assert!(
            error.to_string().contains(&format!(
                "invalid `maxLayers`: {bad} is out of range 2..=125"
            )),
            "{error}"
        );
        assert_eq!(label(&error), span_of(&text, bad));
        assert!(help(&error).contains("default 50"));
    }
}

#[test]
fn created_forms() {
    let created = |value: &str| toml(&format!("name = \"app\"\ncreated = {value}\n")).created;
    assert_eq!(created("\"2024-01-02T03:04:05Z\""), Some(1_704_164_645));
    assert_eq!(created("2024-01-02T03:04:05Z"), Some(1_704_164_645));
    assert_eq!(created("2024-01-02T05:04:05+02:00"), Some(1_704_164_645));
    assert_eq!(created("0"), Some(0));
    for (bad, problem) in [
        ("2024-01-02T03:04:05", "is not an RFC 3339 time"),
        ("\"yesterday\"", "is not an RFC 3339 time"),
        ("-1", "-1 is before 1970 or too large"),
        ("\"1969-12-31T23:59:59Z\"", "is before 1970"),
    ] {
        let error = toml_error(&format!("name = \"app\"\ncreated = {bad}\n"));
        assert!(
            error.to_string().contains("invalid `created`"),
            "{bad}: {error}"
        );
        assert!(error.to_string().contains(problem), "{bad}: {error}");
    }
    let error = toml_error("name = \"app\"\ncreated = true\n");
    assert!(
        error
            .to_string()
            .contains("`created` must be an RFC 3339 time string or Unix seconds, found a boolean"),
        "{error}"
    );
}

#[test]
fn compression_values() {
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let text = format!(
            "name = \"app\"\ncompression = \"{}\"\n",
            compression.as_str()
        );
        assert_eq!(toml(&text).compression, compression);
        assert_eq!(compression.as_str().parse::<Compression>(), Ok(compression));
    }
    let error = toml_error("name = \"app\"\ncompression = \"xz\"\n");
    assert!(
        error
            .to_string()
            .contains("invalid `compression`: unknown compression \"xz\""),
        "{error}"
    );
    assert!(help(&error).contains("zstd"));
}

#[test]
fn created_epoch_prefers_source_date_epoch() {
    assert_eq!(
        created_epoch(Some(5), Some("1700000000")).expect("valid"),
        1_700_000_000
    );
    assert_eq!(created_epoch(Some(5), None).expect("valid"), 5);
    assert_eq!(created_epoch(Some(5), Some("")).expect("valid"), 5);
    assert_eq!(created_epoch(None, None).expect("valid"), 1);
    for bad in ["yesterday", "-1", "1.5", "+3", " 3"] {
        let error = created_epoch(None, Some(bad)).expect_err("invalid SOURCE_DATE_EPOCH");
        assert!(
            error.to_string().starts_with("SOURCE_DATE_EPOCH="),
            "{error}"
        );
        assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
    }
}

#[test]
fn spec_source_and_location_point_into_the_text() {
    let text = "name = \"app\"\nsystemPackages = [\n  \"nixpkgs#hello\",\n  \"nixpkgs#git\",\n]\n";
    let spec = toml(text);
    let source = spec.source();
    assert_eq!(source.name(), TOML_FILE);
    assert_eq!(source.inner(), text);
    let span = spec.system_packages[1].span.expect("span");
    assert_eq!(spec.location(span), Location { line: 4, column: 3 });
}

#[test]
fn load_reads_files_and_detects_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let toml_path = dir.path().join("gpubox.toml");
    std::fs::write(
        &toml_path,
        "name = \"app\"\ncopyToRoot = [{ src = \"files\", dst = \"/etc/x\" }]\n",
    )
    .expect("write spec");
    let spec = load(&toml_path).expect("valid spec");
    assert_eq!(spec.dir, dir.path());
    assert_eq!(spec.copy_to_root[0].value.src, dir.path().join("files"));

    let json_path = dir.path().join("image.JSON");
    std::fs::write(&json_path, "{\"name\": \"app\", \"maxLayers\": 7}").expect("write spec");
    assert_eq!(load(&json_path).expect("valid spec").max_layers, 7);

    let missing = dir.path().join("missing.toml");
    let error = load(&missing).expect_err("missing file");
    let message = error.to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(message.contains("No such file or directory"), "{message}");
    assert!(matches!(error, SpecError::Read { .. }));
}

#[test]
fn errors_render_with_source_code() {
    let text = "name = \"app\"\nmaxLayers = 500\n";
    let error = toml_error(text);
    let source = error
        .source_code()
        .expect("positioned errors carry the text");
    let span = SourceSpan::from(span_of(text, "500").0..span_of(text, "500").0 + 3);
    let contents = source.read_span(&span, 0, 0).expect("span in text");
    assert_eq!(contents.name(), Some(TOML_FILE));
    assert_eq!((contents.line(), contents.column()), (1, 12));
    assert_eq!(std::str::from_utf8(contents.data()).expect("utf-8"), "500");
}

#[test]
fn columns_count_characters_not_bytes() {
    let error = toml_error("name = \"app\"\ncmd = [\"é\", 1]\n");
    assert!(
        error
            .to_string()
            .starts_with("/specs/app/gpubox.toml:2:13: `cmd[1]`"),
        "{error}"
    );
    let text = "{\"name\": \"é\", x}";
    let error = json_error(text);
    assert!(
        error
            .to_string()
            .starts_with("/specs/app/gpubox.json:1:15: invalid JSON syntax"),
        "{error}"
    );
    assert_eq!(label(&error), (text.find('x').expect("x in text"), 0));
    // A span from elsewhere (past the end, or inside a character) does not panic.
    let spec = toml("name = \"app\"\n# é\n");
    assert_eq!(
        spec.location(SourceSpan::from(16..17)),
        Location { line: 2, column: 3 }
    );
    assert_eq!(
        spec.location(SourceSpan::from(900..901)),
        Location { line: 3, column: 1 }
    );
}

#[test]
fn cuda_table_defaults_and_values() {
    let spec = toml("name = \"x\"\n");
    assert!(spec.cuda.enable);
    assert_eq!(spec.cuda.capabilities, "compute,utility");
    assert_eq!(spec.cuda.version, None);
    assert!(!spec.cuda.allow_mixed_versions);

    let text = "name = \"x\"\n[cuda]\nenable = false\nversion = \"12.4\"\ncapabilities = \"compute,utility,video\"\nallowMixedVersions = true\n";
    let spec = toml(text);
    assert!(!spec.cuda.enable);
    assert_eq!(spec.cuda.version.as_deref(), Some("12.4"));
    assert_eq!(spec.cuda.capabilities, "compute,utility,video");
    assert!(spec.cuda.allow_mixed_versions);
    let same = json(
        r#"{"name": "x", "cuda": {"enable": false, "version": "12.4", "capabilities": "compute,utility,video", "allowMixedVersions": true}}"#,
    );
    assert_eq!(same.cuda, spec.cuda);
}

#[test]
fn cuda_table_errors_point_at_the_value() {
    let text = "name = \"x\"\ncuda.version = \"twelve\"\n";
    let error = toml_error(text);
    assert!(error.to_string().contains("cuda.version"), "{error}");
    assert_eq!(label(&error), span_of(text, "\"twelve\""));

    let text = "name = \"x\"\ncuda.capabilities = \"compute,gaming\"\n";
    let error = toml_error(text);
    assert!(error.to_string().contains("gaming"), "{error}");

    let text = "name = \"x\"\ncuda.enable = \"yes\"\n";
    let error = toml_error(text);
    assert!(error.to_string().contains("boolean"), "{error}");

    let text = "name = \"x\"\ncuda.allowMixedVersion = true\n";
    let error = toml_error(text);
    assert!(error.to_string().contains("allowMixedVersions"), "{error}");
}

#[test]
fn from_image_takes_local_and_registry_transports() {
    for good in [
        "oci:base",
        "oci:/images/base:v1",
        "oci-archive:base.tar",
        "docker-archive:/tmp/base.tar",
        "docker://registry.example/team/base:1",
    ] {
        let spec = toml(&format!("name = \"app\"\nfromImage = \"{good}\"\n"));
        let item = spec.from_image.expect("fromImage is set");
        assert_eq!(item.value, good);
        assert!(item.span.is_some());
    }
    let spec = json(r#"{"name": "app", "fromImage": "oci:base:v2"}"#);
    assert_eq!(
        spec.from_image.map(|item| item.value).as_deref(),
        Some("oci:base:v2")
    );
}

#[test]
fn from_image_without_a_known_transport_or_image_is_rejected() {
    for (bad, says) in [
        ("ubuntu:22.04", "names no transport"),
        ("podman:base", "names no transport"),
        ("oci:", "names no image after `oci:`"),
        ("docker://", "names no image after `docker://`"),
    ] {
        let error = toml_error(&format!("name = \"app\"\nfromImage = \"{bad}\"\n"));
        let text = error.to_string();
        assert!(
            text.contains("invalid `fromImage`") && text.contains(says),
            "{bad}: {text}"
        );
    }
    let error = toml_error("name = \"app\"\nfromImage = [\"oci:base\"]\n");
    assert!(error.to_string().contains("fromImage"), "{error}");
}

#[test]
fn env_sets_path_only_when_the_spec_writes_path() {
    assert!(!toml("name = \"app\"\nenv = { HOME = \"/h\" }\n").env_sets_path);
    assert!(!toml("name = \"app\"\nextraEnv = { A = \"b\" }\n").env_sets_path);
    assert!(toml("name = \"app\"\nenv = { PATH = \"/bin\" }\n").env_sets_path);
    assert!(toml("name = \"app\"\nextraEnv = { PATH = \"/opt/bin\" }\n").env_sets_path);
}

#[test]
fn registries_are_registry_images_in_spec_order() {
    let spec = toml(
        "name = \"app\"\nregistries = [\"docker://ghcr.io/me/app:v1\", \"docker://127.0.0.1:5000/app\"]\n",
    );
    let registries: Vec<_> = spec.registries.iter().map(|r| r.value.as_str()).collect();
    assert_eq!(
        registries,
        ["docker://ghcr.io/me/app:v1", "docker://127.0.0.1:5000/app"]
    );
    assert!(spec.registries.iter().all(|r| r.span.is_some()));
    for (bad, says) in [
        ("oci:out", "is not a registry image"),
        ("docker://app", "names no repository"),
    ] {
        let error = toml_error(&format!("name = \"app\"\nregistries = [\"{bad}\"]\n"));
        let text = error.to_string();
        assert!(
            text.contains("registries[0]") && text.contains(says),
            "{bad}: {text}"
        );
    }
}

const MACHINE_SPEC: &str = r#"name = "box"
user = "dev"
stopTimeout = 2.5
extraStartupScript = "export MODE=prod\n"
sshdConfig = "Port 2222\n"
nixConfig = { experimental-features = ["nix-command", "flakes"], sandbox = false, cores = 2 }
nix = { enable = true }
home = { file = "home.nix", attr = "activationPackage" }

[users.dev]
uid = 1001
groups = ["wheel"]

[users.ci]
uid = 1002
gid = 100
group = "users"
home = "/srv/ci"
shell = "/bin/bash"

[ssh]
enable = true
port = 2022
authorizedKeys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey me@laptop"]
hostKeyDir = "/keys"
rsaHostKey = true
passwordLogin = true

[age]
identityPaths = ["/keys/id"]
secrets.db = { file = "secrets/db.age" }
secrets.token = { file = "/abs/token.age", path = "/etc/token", mode = "0440", owner = "dev", group = "ci", symlink = false, optional = true }

[tailscale]
enable = true
authKeyFile = "/run/ts-key"
hostname = "box-1"
stateDir = "/state/ts"
extraUpFlags = ["--ssh"]
extraDaemonFlags = ["--verbose=1"]

[services.db]
argv = ["postgres", "-D", "/data"]
readiness = { tcp = 5432, timeout = 60 }

[services.web]
argv = ["/bin/server"]
env = { PORT = "8000" }
workingDir = "/srv"
user = "dev"
restart = "always"
restartDelay = 0.25
maxRestarts = 5
after = ["db"]
readiness = { exec = ["/bin/check"] }
logFile = "/var/log/web.log"
"#;

#[test]
fn machine_keys_are_read_with_their_values() {
    use gpubox_initplan::{ReadinessCheck, Restart};
    let spec = toml(MACHINE_SPEC);
    let machine = &spec.machine;
    assert!(machine.needs_init());
    assert_eq!(machine.stop_timeout_ms, 2500);
    assert_eq!(
        machine.extra_startup_script.as_deref(),
        Some("export MODE=prod\n")
    );
    assert_eq!(machine.sshd_config.as_ref().unwrap().value, "Port 2222\n");
    assert_eq!(
        machine.nix_config.as_deref(),
        Some("experimental-features = nix-command flakes\nsandbox = false\ncores = 2\n")
    );
    assert!(machine.nix_enable);
    assert_eq!(
        machine.home.as_ref().unwrap().value,
        PackageRef::NixFile {
            file: PathBuf::from("/specs/app/home.nix"),
            attr: Some("activationPackage".to_owned()),
            system: None,
        }
    );

    // Sorted by name, whatever order the spec writes them in.
    let names: Vec<&str> = machine
        .users
        .iter()
        .map(|u| u.value.name.as_str())
        .collect();
    assert_eq!(names, ["ci", "dev"]);
    let dev = &machine.users[1].value;
    assert_eq!((dev.name.as_str(), dev.uid, dev.gid), ("dev", 1001, 1001));
    assert_eq!(
        (dev.group.as_str(), dev.home.as_str(), dev.shell.as_str()),
        ("dev", "/home/dev", "/bin/sh")
    );
    assert_eq!(dev.groups, ["wheel"]);
    let ci = &machine.users[0].value;
    assert_eq!((ci.uid, ci.gid, ci.group.as_str()), (1002, 100, "users"));
    assert_eq!(
        (ci.home.as_str(), ci.shell.as_str()),
        ("/srv/ci", "/bin/bash")
    );

    let ssh = &machine.ssh;
    assert!(ssh.enable && ssh.rsa_host_key && ssh.password_login);
    assert_eq!((ssh.port, ssh.host_key_dir.as_str()), (2022, "/keys"));
    assert_eq!(ssh.authorized_keys.len(), 1);
    assert_eq!(spanned(MACHINE_SPEC, ssh.span), "true");

    assert_eq!(machine.age.identity_paths, ["/keys/id"]);
    let db = &machine.age.secrets[0].value;
    assert_eq!(db.name, "db");
    assert_eq!(db.file.value, PathBuf::from("/specs/app/secrets/db.age"));
    assert_eq!(spanned(MACHINE_SPEC, db.file.span), "\"secrets/db.age\"");
    assert_eq!(
        (db.path.as_str(), db.mode, db.owner.value.as_str()),
        ("/run/agenix/db", 0o400, "root")
    );
    assert!(db.symlink && !db.optional && db.group.is_none());
    let token = &machine.age.secrets[1].value;
    assert_eq!(
        (token.path.as_str(), token.mode, token.owner.value.as_str()),
        ("/etc/token", 0o440, "dev")
    );
    assert_eq!(token.group.as_ref().unwrap().value, "ci");
    assert!(!token.symlink && token.optional);

    let ts = &machine.tailscale;
    assert!(ts.enable);
    assert_eq!(ts.auth_key_file.as_deref(), Some("/run/ts-key"));
    assert_eq!(ts.hostname.as_deref(), Some("box-1"));
    assert_eq!(ts.state_dir, "/state/ts");
    assert_eq!(
        (
            ts.extra_up_flags.as_slice(),
            ts.extra_daemon_flags.as_slice()
        ),
        (&["--ssh".to_owned()][..], &["--verbose=1".to_owned()][..])
    );

    let db = &machine.services[0].value;
    assert_eq!(db.argv, ["postgres", "-D", "/data"]);
    assert_eq!(db.restart, Restart::OnFailure);
    assert_eq!(db.restart_delay_ms, 1000);
    let readiness = db.readiness.as_ref().unwrap();
    assert_eq!(
        (&readiness.check, readiness.timeout_ms),
        (&ReadinessCheck::Tcp(5432), 60_000)
    );
    let web = &machine.services[1].value;
    assert_eq!(web.env["PORT"], "8000");
    assert_eq!(web.working_dir.as_deref(), Some("/srv"));
    assert_eq!(web.user.as_ref().unwrap().value, "dev");
    assert_eq!(
        spanned(MACHINE_SPEC, web.user.as_ref().unwrap().span),
        "\"dev\""
    );
    assert_eq!(
        (web.restart, web.restart_delay_ms, web.max_restarts),
        (Restart::Always, 250, Some(5))
    );
    assert_eq!(web.after, ["db"]);
    let readiness = web.readiness.as_ref().unwrap();
    assert_eq!(
        (&readiness.check, readiness.timeout_ms),
        (&ReadinessCheck::Exec(vec!["/bin/check".to_owned()]), 30_000)
    );
    assert_eq!(web.log_file.as_deref(), Some("/var/log/web.log"));
}

#[test]
fn machine_keys_default_to_nothing_and_json_reads_the_same() {
    let spec = toml("name = \"app\"\n");
    assert!(!spec.machine.needs_init());
    assert_eq!(spec.machine.stop_timeout_ms, 10_000);
    assert_eq!(spec.machine.ssh.port, 22);
    assert_eq!(spec.machine.ssh.host_key_dir, "/etc/ssh/host-keys");
    assert_eq!(spec.machine.tailscale.state_dir, "/var/lib/tailscale");

    let spec = json(
        r#"{"name": "app", "nixConfig": "sandbox = false\n", "stopTimeout": 3,
            "services": {"a": {"argv": ["x"], "restartDelay": 2}},
            "home": "nixpkgs#home"}"#,
    );
    assert_eq!(
        spec.machine.nix_config.as_deref(),
        Some("sandbox = false\n")
    );
    assert_eq!(spec.machine.stop_timeout_ms, 3000);
    assert_eq!(spec.machine.services[0].value.restart_delay_ms, 2000);
    assert_eq!(
        spec.machine.home.unwrap().value,
        PackageRef::Installable("nixpkgs#home".to_owned())
    );
}

/// Every bad machine value: (spec, key path named, text the error points at, words in it).
#[test]
fn bad_machine_values_name_the_key_and_point_at_it() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("[services.a]\nargv = []\n", "services.a.argv", "[]", "no program"),
        ("[services.a]\nargv = [\"\"]\n", "services.a.argv", "[\"\"]", "no program"),
        ("[services.a]\nenv = {}\n", "services.a.argv", "", "missing"),
        ("[services.a]\nargv = [\"x\"]\nafter = [\"b\"]\n", "services.a.after[0]", "\"b\"", "no service is named \"b\""),
        (
            "[services.a]\nargv = [\"x\"]\nafter = [\"b\"]\n[services.b]\nargv = [\"x\"]\nafter = [\"c\"]\n[services.c]\nargv = [\"x\"]\nafter = [\"a\"]\n",
            "services.a.after",
            "[\"b\"]",
            "cycle: a -> b -> c -> a",
        ),
        ("[services.a]\nargv = [\"x\"]\nafter = [\"a\"]\n", "services.a.after", "[\"a\"]", "cycle: a -> a"),
        ("[services.a]\nargv = [\"x\"]\nreadiness = { tcp = 0 }\n", "services.a.readiness.tcp", "0", "not a port"),
        ("[services.a]\nargv = [\"x\"]\nreadiness = { tcp = 70000 }\n", "services.a.readiness.tcp", "70000", "not a port"),
        ("[services.a]\nargv = [\"x\"]\nreadiness = { timeout = 3 }\n", "services.a.readiness.tcp", "", "missing"),
        ("[services.a]\nargv = [\"x\"]\nreadiness = { tcp = 1, exec = [\"y\"] }\n", "services.a.readiness", "{ tcp = 1, exec = [\"y\"] }", "both"),
        ("[services.a]\nargv = [\"x\"]\nreadiness = { tcp = 1, timeout = 0 }\n", "services.a.readiness.timeout", "0", "seconds"),
        ("[services.a]\nargv = [\"x\"]\nrestart = \"sometimes\"\n", "services.a.restart", "\"sometimes\"", "unknown restart"),
        ("[services.a]\nargv = [\"x\"]\nrestartDelay = -1\n", "services.a.restartDelay", "-1", "seconds"),
        ("[services.a]\nargv = [\"x\"]\nmaxRestarts = -1\n", "services.a.maxRestarts", "-1", "restarts"),
        ("[services.a]\nargv = [\"x\"]\nuser = \"Bad User\"\n", "services.a.user", "\"Bad User\"", "not an account"),
        ("[services.a]\nargv = [\"x\"]\nworkingDir = \"srv\"\n", "services.a.workingDir", "\"srv\"", "absolute"),
        ("[services.a]\nargv = [\"x\"]\nlogFile = \"../x\"\n", "services.a.logFile", "\"../x\"", "absolute"),
        ("[services.\"a b\"]\nargv = [\"x\"]\n", "services.\"a b\"", "\"a b\"", "not a service name"),
        ("[services.a]\nargv = [\"x\"]\nargs = []\n", "services.a.args", "args", "unknown key"),
        ("[age.secrets.db]\nfile = \"db.age\"\nmode = \"0999\"\n", "age.secrets.db.mode", "\"0999\"", "octal"),
        ("[age.secrets.db]\nfile = \"db.age\"\nmode = 400\n", "age.secrets.db.mode", "400", "decimal"),
        ("[age.secrets.db]\npath = \"/x\"\n", "age.secrets.db.file", "", "missing"),
        ("[age.secrets.db]\nfile = \"db.age\"\npath = \"x\"\n", "age.secrets.db.path", "\"x\"", "absolute"),
        ("[age.secrets.db]\nfile = \"db.age\"\nowner = \"\"\n", "age.secrets.db.owner", "\"\"", "not an account"),
        ("[age.secrets.\"a/b\"]\nfile = \"db.age\"\n", "age.secrets.\"a/b\"", "\"a/b\"", "cannot name a file"),
        ("[age]\nidentityPaths = [\"id\"]\n", "age.identityPaths[0]", "\"id\"", "absolute"),
        ("[ssh]\nport = 0\n", "ssh.port", "0", "not a port"),
        ("[ssh]\nhostKeyDir = \"keys\"\n", "ssh.hostKeyDir", "\"keys\"", "absolute"),
        ("[ssh]\nauthorizedKeys = [\"hello\"]\n", "ssh.authorizedKeys[0]", "\"hello\"", "not an SSH public key"),
        ("[ssh]\nauthorizedKeys = [\"ssh-ed25519 A\\nssh-rsa B\"]\n", "ssh.authorizedKeys[0]", "\"ssh-ed25519 A\\nssh-rsa B\"", "more than one line"),
        ("[ssh]\nenable = \"yes\"\n", "ssh.enable", "\"yes\"", "must be a boolean"),
        ("[tailscale]\nhostname = \"my host\"\n", "tailscale.hostname", "\"my host\"", "not a host name"),
        ("[tailscale]\nauthKeyFile = \"key\"\n", "tailscale.authKeyFile", "\"key\"", "absolute"),
        ("[tailscale]\nstateDir = \"state\"\n", "tailscale.stateDir", "\"state\"", "absolute"),
        ("[users.Dev]\nuid = 1000\n", "users.Dev", "Dev", "not an account name"),
        ("[users.root]\nuid = 1000\n", "users.root", "root", "always creates"),
        ("[users.dev]\ngid = 1000\n", "users.dev.uid", "", "missing"),
        ("[users.dev]\nuid = 0\n", "users.dev.uid", "0", "root or nobody"),
        ("[users.a]\nuid = 1000\n[users.b]\nuid = 1000\n", "users.b.uid", "1000", "users.a's"),
        ("[users.dev]\nuid = 1000\nhome = \"home\"\n", "users.dev.home", "\"home\"", "absolute"),
        ("[users.dev]\nuid = 1000\ngroups = [\"A\"]\n", "users.dev.groups[0]", "\"A\"", "not an account name"),
        ("stopTimeout = 0\n", "stopTimeout", "0", "seconds"),
        ("stopTimeout = \"10s\"\n", "stopTimeout", "\"10s\"", "number of seconds"),
        ("extraStartupScript = \"  \"\n", "extraStartupScript", "\"  \"", "empty"),
        ("nixConfig = { \"bad key\" = 1 }\n", "nixConfig.\"bad key\"", "\"bad key\"", "not a nix.conf setting"),
        ("nixConfig = { cores = 1.5 }\n", "nixConfig.cores", "1.5", "must be a string, integer"),
        ("nix = { enabled = true }\n", "nix.enabled", "enabled", "unknown key"),
        ("home = \"\"\n", "home", "\"\"", "not a Nix installable"),
        ("home = 3\n", "home", "3", "must be a string"),
    ];
    for (body, key, pointed, words) in cases {
        let text = format!("name = \"app\"\n{body}");
        let error = toml_error(&text);
        let message = format!("{error} {}", help(&error));
        assert!(message.contains(&format!("`{key}`")), "{body}: {message}");
        assert!(message.contains(words), "{body}: {message}");
        if !pointed.is_empty() {
            let start = text.find("\n").unwrap() + 1 + body.rfind(pointed).unwrap();
            assert_eq!(label(&error), (start, pointed.len()), "{body}: {message}");
        }
    }
}

#[test]
fn store_paths_are_kept_and_anything_else_is_refused() {
    let good = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-redis-7.2";
    let text = format!("name = \"a\"\nstorePaths = [\"{good}\"]\n");
    let spec = toml(&text);
    let paths: Vec<&str> = spec.store_paths.iter().map(|p| p.value.as_str()).collect();
    assert_eq!(paths, [good]);
    assert_eq!(
        spanned(&text, spec.store_paths[0].span),
        format!("\"{good}\"")
    );
    assert!(toml("name = \"a\"").store_paths.is_empty());

    for (bad, says) in [
        ("nixpkgs#redis", "is not a store path"),
        (
            "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-redis-7.2/bin/redis",
            "inside a store path",
        ),
        ("/nix/store/short-redis", "is not a store path"),
    ] {
        let text = format!("name = \"a\"\nstorePaths = [\"{bad}\"]\n");
        let error = toml_error(&text);
        assert!(
            error.to_string().contains("invalid `storePaths[0]`"),
            "{error}"
        );
        assert!(error.to_string().contains(says), "{error}");
        assert_eq!(label(&error), span_of(&text, &format!("\"{bad}\"")));
    }
}

#[test]
fn platforms_and_per_platform_overrides() {
    let text = r#"
name = "multi"
platforms = ["linux/amd64", "linux/arm64/v8"]
systemPackages = ["nixpkgs#hello", { file = "pkgs.nix", attr = "tool", system = "aarch64-linux" }]
env = { GREETING = "hi" }
cmd = ["hello"]

[platform."linux/arm64"]
systemPackages = ["nixpkgs#legacyPackages.aarch64-linux.hello"]
env = { GREETING = "hi from grace" }
"#;
    let spec = toml(text);
    let platforms: Vec<Platform> = spec.platforms.iter().map(|p| p.value).collect();
    assert_eq!(platforms, [Platform::Amd64, Platform::Arm64]);
    assert_eq!(spec.platforms_to_build(), Some(platforms.clone()));
    assert_eq!(spanned(text, spec.platforms[1].span), "\"linux/arm64/v8\"");
    // The top-level file package says which system it is for.
    assert_eq!(
        spec.system_packages[1].value.system(),
        Some("aarch64-linux")
    );
    assert_eq!(spec.system_packages[0].value.system(), None);

    // amd64 sees the top level as written.
    let amd = spec.for_platform(Platform::Amd64);
    assert_eq!(amd.system_packages.len(), 2);
    assert_eq!(amd.env["GREETING"], "hi");
    // arm64's table replaces the keys it names and keeps the others.
    let arm = spec.for_platform(Platform::Arm64);
    assert_eq!(arm.name, "multi");
    assert_eq!(arm.cmd, ["hello"]);
    assert_eq!(arm.env["GREETING"], "hi from grace");
    assert_eq!(
        arm.system_packages
            .iter()
            .map(|p| p.value.clone())
            .collect::<Vec<_>>(),
        [PackageRef::Installable(
            "nixpkgs#legacyPackages.aarch64-linux.hello".to_owned()
        )]
    );
    assert_eq!(arm.system_packages[0].value.system(), Some("aarch64-linux"));
    // Its values still point into the spec where they were written.
    assert_eq!(
        spanned(text, arm.system_packages[0].span),
        "\"nixpkgs#legacyPackages.aarch64-linux.hello\""
    );

    // The same document in JSON reads the same.
    let json_spec = json(
        r#"{"name": "multi", "platforms": ["linux/arm64"],
            "platform": {"linux/arm64": {"cmd": ["uname", "-m"]}}}"#,
    );
    assert_eq!(json_spec.for_platform(Platform::Arm64).cmd, ["uname", "-m"]);
    assert!(json_spec.cmd.is_empty());

    // Without `platforms`, the build machine's platform is built.
    assert_eq!(
        toml("name = \"x\"").platforms_to_build(),
        Platform::build_machine().map(|p| vec![p])
    );
}

#[test]
fn bad_platforms_are_named_with_what_gpubox_builds() {
    let text = "name = \"x\"\nplatforms = [\"linux/amd64\", \"linux/riscv64\"]\n";
    let error = toml_error(text);
    assert!(error.to_string().contains("platforms[1]"), "{error}");
    assert!(
        format!("{error:?}").contains("gpubox builds linux/amd64 and linux/arm64"),
        "{error:?}"
    );
    assert_eq!(label(&error), span_of(text, "\"linux/riscv64\""));

    let text = "name = \"x\"\nplatforms = [\"linux/arm64\", \"linux/arm64/v8\"]\n";
    let error = toml_error(text);
    assert!(format!("{error:?}").contains("listed twice"), "{error:?}");

    // Go's `aarch64` spelling gets a hint.
    let error = toml_error("name = \"x\"\nplatforms = [\"linux/aarch64\"]\n");
    assert!(
        format!("{error:?}").contains("write linux/arm64"),
        "{error:?}"
    );

    // A table for a platform the spec does not build.
    let text = "name = \"x\"\n[platform.\"linux/arm64\"]\ncmd = [\"a\"]\n";
    let error = toml_error(text);
    assert!(
        format!("{error:?}").contains("not among the platforms"),
        "{error:?}"
    );
    assert!(help(&error).contains("add \"linux/arm64\" to `platforms`"));

    // Keys one index shares cannot differ.
    let text =
        "name = \"x\"\nplatforms = [\"linux/arm64\"]\n[platform.\"linux/arm64\"]\ntag = \"v2\"\n";
    let error = toml_error(text);
    assert!(
        format!("{error:?}").contains("`tag` cannot differ between platforms"),
        "{error:?}"
    );
    assert_eq!(label(&error), span_of(text, "tag"));

    // Unknown keys inside an override are unknown keys.
    let text = "name = \"x\"\nplatforms = [\"linux/arm64\"]\n[platform.\"linux/arm64\"]\nsystemPackage = []\n";
    let error = toml_error(text);
    assert!(error.to_string().contains("systemPackage"), "{error}");

    // The same platform under two spellings.
    let text = "name = \"x\"\nplatforms = [\"linux/arm64\"]\n[platform.\"linux/arm64\"]\ncmd = [\"a\"]\n[platform.\"linux/arm64/v8\"]\ncmd = [\"b\"]\n";
    let error = toml_error(text);
    assert!(
        format!("{error:?}").contains("has a table already"),
        "{error:?}"
    );

    // A bad platform name as a table key.
    let error = toml_error("name = \"x\"\n[platform.\"linux/s390x\"]\ncmd = []\n");
    assert!(
        format!("{error:?}").contains("unknown platform"),
        "{error:?}"
    );

    // A file package's system must be one gpubox builds for.
    let text =
        "name = \"x\"\nsystemPackages = [{ file = \"a.nix\", system = \"riscv64-linux\" }]\n";
    let error = toml_error(text);
    assert!(
        format!("{error:?}").contains("not a Nix system gpubox builds for"),
        "{error:?}"
    );
    assert!(help(&error).contains("x86_64-linux, aarch64-linux"));
}
