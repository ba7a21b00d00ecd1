//! `--json` of `list`, `resolve`, `doctor` and `update`: real output of
//! each is checked against its schema in docs/json/, and README's tables
//! against the schemas, so the three cannot drift apart. The schemas use a
//! small part of JSON Schema (type, enum, properties, required,
//! additionalProperties, items, oneOf), checked by [`validate`] here.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::archive::{pkg, NativeArchive};
use crate::common::{ok, text, Zchroot};

/// The commands with `--json`, as docs/json/ names their schemas.
const COMMANDS: [&str; 4] = ["list", "resolve", "doctor", "update"];

fn schema(command: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/json")
        .join(format!("{command}.schema.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn type_ok(v: &Value, t: &str) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => panic!("a type the schemas do not use: {t}"),
    }
}

/// Checks `v` against the schema `s`; the first mismatch, at `at`.
fn validate(v: &Value, s: &Value, at: &str) -> Result<(), String> {
    if let Some(variants) = s.get("oneOf").and_then(Value::as_array) {
        let n = variants
            .iter()
            .filter(|x| validate(v, x, at).is_ok())
            .count();
        if n != 1 {
            return Err(format!("{at}: matches {n} of the oneOf variants: {v}"));
        }
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
            _ => panic!("bad type in schema at {at}"),
        };
        if !types.iter().any(|t| type_ok(v, t)) {
            return Err(format!("{at}: {v} is not {}", types.join(" or ")));
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return Err(format!("{at}: {v} is none of {e:?}"));
        }
    }
    if let (Some(obj), Some(props)) = (
        v.as_object(),
        s.get("properties").and_then(Value::as_object),
    ) {
        for r in s["required"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap();
            if !obj.contains_key(r) {
                return Err(format!("{at}: no '{r}' in {v}"));
            }
        }
        for (k, x) in obj {
            match props.get(k) {
                Some(p) => validate(x, p, &format!("{at}.{k}"))?,
                None if s["additionalProperties"] == Value::Bool(false) => {
                    return Err(format!("{at}: '{k}' is not in the schema"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(schema)) = (v.as_array(), s.get("items")) {
        for (i, x) in items.iter().enumerate() {
            validate(x, schema, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// A schema node's type as README writes it.
fn type_name(p: &Value) -> String {
    if let Some(vs) = p.get("oneOf").and_then(Value::as_array) {
        let mut out: Vec<String> = Vec::new();
        for t in vs.iter().map(type_name) {
            if !out.contains(&t) {
                out.push(t);
            }
        }
        return out.join(" or ");
    }
    match &p["type"] {
        Value::Array(ts) => ts
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(" or "),
        Value::String(t) if t == "array" && p.get("items").is_some() => {
            format!("array of {}", type_name(&p["items"]))
        }
        Value::String(t) => t.clone(),
        _ => panic!("no type: {p}"),
    }
}

/// (field, type, meaning) of an object schema's properties, nested ones
/// as `a.b` and `a[].b`.
fn rows(o: &Value, prefix: &str, out: &mut Vec<(String, String, String)>) {
    let required: Vec<&str> = o["required"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r.as_str().unwrap())
        .collect();
    for (k, p) in o["properties"].as_object().unwrap() {
        let path = format!("{prefix}{k}");
        let mut t = type_name(p);
        if !required.contains(&k.as_str()) {
            t.push_str(" (optional)");
        }
        let meaning = p["description"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: no description"));
        out.push((path.clone(), t, meaning.to_string()));
        if p["type"] == "object" && p.get("properties").is_some() {
            rows(p, &format!("{path}."), out);
        }
        if p["type"] == "array" && p["items"].get("properties").is_some() {
            rows(&p["items"], &format!("{path}[]."), out);
        }
    }
}

/// What README's tables must say of a command's output.
fn schema_rows(command: &str) -> Vec<(String, String, String)> {
    let s = schema(command);
    let top = if s["type"] == "array" {
        &s["items"]
    } else {
        &s
    };
    let variants = match top.get("oneOf").and_then(Value::as_array) {
        Some(v) => v.clone(),
        None => vec![top.clone()],
    };
    let mut out = Vec::new();
    for v in &variants {
        rows(v, "", &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// The rows of README's table(s) for `zchroot COMMAND --json`.
fn readme_rows(command: &str) -> Vec<(String, String, String)> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("\n### JSON output\n")
        .nth(1)
        .expect("README has a '### JSON output' section");
    let section = section.split("\n### ").next().unwrap();
    let heading = format!("#### `zchroot {command} --json`");
    let part = section
        .split("\n#### ")
        .map(|p| format!("#### {p}"))
        .find(|p| p.starts_with(&heading))
        .unwrap_or_else(|| panic!("README's JSON output has no {heading}"));
    let mut out: Vec<(String, String, String)> = part
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l
                .trim_start_matches("| ")
                .trim_end_matches(" |")
                .splitn(3, " | ")
                .collect();
            let [field, t, meaning] = cells[..] else {
                panic!("README row with fewer than 3 cells: {l}")
            };
            (
                field.trim_matches('`').to_string(),
                t.to_string(),
                meaning.to_string(),
            )
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn readme_documents_each_field_of_each_schema_as_the_schema_does() {
    for c in COMMANDS {
        let want = schema_rows(c);
        assert!(want.len() >= 4, "{c}: {want:?}");
        assert_eq!(readme_rows(c), want, "README's table for {c} --json");
    }
}

/// Parses zchroot's stdout as JSON, checked against the command's schema
/// (other modules' tests check what they get too).
pub(crate) fn json_of(o: &std::process::Output, command: &str) -> Value {
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{command} --json: {e}: {}", text(o)));
    if let Err(e) = validate(&v, &schema(command), command) {
        panic!("{command} --json does not match docs/json/{command}.schema.json: {e}\n{v:#}");
    }
    v
}

#[test]
fn the_checker_refuses_what_the_schemas_do_not_allow() {
    let s = schema("doctor");
    let good = serde_json::json!([{"name": "kernel", "status": "ok", "detail": "6.18"}]);
    validate(&good, &s, "doctor").unwrap();
    for bad in [
        serde_json::json!([{"name": "kernel", "status": "ok"}]),
        serde_json::json!([{"name": "kernel", "status": "fine", "detail": ""}]),
        serde_json::json!([{"name": "kernel", "status": "ok", "detail": "", "extra": 1}]),
        serde_json::json!([{"name": 1, "status": "ok", "detail": ""}]),
        serde_json::json!({"name": "kernel"}),
    ] {
        assert!(validate(&bad, &s, "doctor").is_err(), "{bad}");
    }
    let u = schema("update");
    // Both shapes at once match neither.
    let both = serde_json::json!([{"target": "a", "error": "x", "seen": 1}]);
    assert!(validate(&both, &u, "update").is_err());
}

#[test]
fn doctor_json_matches_its_schema() {
    let h = tempfile::tempdir().unwrap();
    let o = Zchroot::new(h.path()).run(&["doctor", "--json"]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", text(&o));
    let v = json_of(&o, "doctor");
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"kernel"), "{names:?}");
    assert!(names.contains(&"writable"), "{names:?}");
}

#[test]
fn resolve_json_matches_its_schema() {
    let na = NativeArchive::serve(
        "json resolve",
        vec![
            pkg("base-files", "13").essential().depends("libfoo"),
            pkg("libfoo", "1.0"),
            pkg("required-tool", "2.0").field("Priority", "required"),
            pkg("extra", "3.0"),
        ],
    );
    let h = tempfile::tempdir().unwrap();
    let m = na.manifests.to_str().unwrap();
    let args = [
        "-q",
        "--manifests",
        m,
        "resolve",
        "amd64",
        "--suite",
        "test",
        "--include",
        "extra",
        "--json",
    ];
    let o = Zchroot::new(h.path()).run(&args);
    assert!(o.status.success(), "{}", text(&o));
    let v = json_of(&o, "resolve");
    let reasons: Vec<String> = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["reason"].to_string())
        .collect();
    // Every form of `reason`.
    assert_eq!(
        reasons,
        [
            "\"essential\"",
            "\"requested\"",
            r#"{"dependency":{"by":"base-files","relation":"libfoo"}}"#,
            r#"{"priority":"required"}"#,
        ],
        "{v:#}"
    );
    assert!(v["packages"][0]["cached"].is_null());
    let mut download = args.to_vec();
    download.push("--download");
    let o = Zchroot::new(h.path()).run(&download);
    assert!(o.status.success(), "{}", text(&o));
    let v = json_of(&o, "resolve");
    let cached = PathBuf::from(v["packages"][0]["cached"].as_str().unwrap());
    assert!(cached.starts_with(h.path().join("cache")), "{cached:?}");
}

#[test]
fn list_json_matches_its_schema() {
    let h = tempfile::tempdir().unwrap();
    let dirs = zchroot::paths::DataDirs {
        state: h.path().join("state"),
        cache: h.path().join("cache"),
    };
    // Two roots' records as create writes them (one used since, one not).
    let roots = zchroot::rootfs::Roots::new(&dirs);
    for (name, mirror) in [
        ("a", None),
        ("b", Some("http://127.0.0.1/debian".to_string())),
    ] {
        std::fs::create_dir_all(roots.tree(name)).unwrap();
        let meta = zchroot::rootfs::RootMeta {
            name: name.into(),
            arch: "arm64".into(),
            release: "trixie".into(),
            variant: "minbase".into(),
            include: vec!["hello".into()],
            mirror,
            keyring: None,
            created: 1_700_000_000,
            packages: 100,
            owner: 0,
        };
        roots.write_meta(&roots.path(name), &meta).unwrap();
    }
    roots.touch("b");
    let o = Zchroot::new(h.path()).run(&["list", "--json"]);
    let v = json_of(&o, "list");
    assert!(o.status.success(), "{}", text(&o));
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert!(v[0]["last_used"].is_null() && v[1]["last_used"].is_u64());
}

#[test]
fn update_json_has_every_target_the_failed_ones_with_their_error() {
    let na = NativeArchive::serve("json update", vec![pkg("hello-dkms", "1.0-1")]);
    let h = tempfile::tempdir().unwrap();
    let m = na.manifests.to_str().unwrap();
    let z = |args: &[&str]| {
        let mut all = vec!["-q", "--manifests", m];
        all.extend(args);
        Zchroot::new(h.path()).run(&all)
    };
    let add = ["target", "add", "--arch", "amd64", "--release", "test"];
    let mut good = add.to_vec();
    good.extend(["good", "--module", "hello-dkms"]);
    ok(z(&good));
    // A module the archive lacks, added offline: update finds out.
    let mut bad = add.to_vec();
    bad.extend(["bad", "--module", "nope-dkms", "--no-archive-check"]);
    ok(z(&bad));
    let o = z(&["update", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v = json_of(&o, "update");
    let [bad, good] = v.as_array().unwrap().as_slice() else {
        panic!("two targets expected: {v:#}");
    };
    assert_eq!(bad["target"], "bad");
    let error = bad["error"].as_str().unwrap();
    assert!(
        error.contains("module: unknown module 'nope-dkms': no package nope-dkms in test"),
        "{error}"
    );
    assert_eq!(good["target"], "good");
    // The archive has no amd64 kernel: nothing to build, published.
    assert_eq!(good["seen"], 0, "{good}");
    assert_eq!(good["published"], true, "{good}");
    // On stderr too.
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("error: bad: "),
        "{}",
        text(&o)
    );
}
