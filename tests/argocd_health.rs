//! Argo CD and Flux read a resource's state from its conditions, without knowing the operator.
//!
//! Argo CD: `argocd/resource_customizations` holds a health check for each kind and a "rotate"
//! action for TwilioApiKey, in Argo CD's own layout. Every case of their `health_test.yaml` and
//! `action_test.yaml` passes under Lua 5.1, run by `argocd/test.lua` as Argo CD runs them; the
//! harness fails when a rule is broken; its YAML reader reads every fixture as serde_yaml does;
//! `argocd/argocd-cm.yaml` installs exactly those scripts; and the status the operator builds
//! shows in Argo CD as intended.
//!
//! kstatus (Flux, kpt, Helm 4's `--wait`): the conditions `conditions_for` writes for every
//! `Health`, and for every reason docs/behaviour.md lists, keep kstatus' rules and mean what the
//! docs say; the status they make is computed by the kstatus library itself (hack/tools/kstatus).
//!
//! The Lua tests need `lua5.1` (hack/test.sh installs it). Without it they are skipped with a
//! message, unless the CI variable is set: then they fail.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use regex::Regex;
use serde_json::{Value, json};
use twilio_operator::api::conditions::{Health, READY, RECONCILING, STALLED, conditions_for};
use twilio_operator::api::{ROTATE_ANNOTATION, TwilioApiKey, TwilioApiKeyStatus};
use twilio_operator::keys::status;
use twilio_operator_testkit as support;

const KINDS: [&str; 4] = ["TwilioApiKey", "TwilioAccount", "ClusterTwilioAccount", "TwilioSubaccount"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn customizations() -> PathBuf {
    repo().join("argocd/resource_customizations")
}

fn kind_dir(kind: &str) -> PathBuf {
    customizations().join("twilio-operator.dev").join(kind)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Whether `lua5.1` runs. Without it a Lua test is skipped, with a message, unless CI is set.
fn lua_available(test: &str) -> bool {
    let found = Command::new("lua5.1").arg("-v").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: lua5.1 is not installed and CI is set; install it (`apt-get install lua5.1`, as hack/test.sh does)"
        );
        eprintln!("SKIPPED {test}: lua5.1 is not installed (`apt-get install lua5.1`, or run hack/test.sh)");
    }
    found
}

/// `lua5.1 argocd/test.lua ARGS`, with `stdin` as its input.
fn harness<S: AsRef<std::ffi::OsStr>>(args: &[S], stdin: &str) -> Output {
    let mut child = Command::new("lua5.1")
        .arg(repo().join("argocd/test.lua"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lua5.1 starts");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Where `actual` first differs from `expected`, by line; None if they are equal.
fn first_difference(expected: &str, actual: &str) -> Option<String> {
    if expected == actual {
        return None;
    }
    let (mut expected_lines, mut actual_lines) = (expected.lines(), actual.lines());
    for number in 1.. {
        match (expected_lines.next(), actual_lines.next()) {
            (Some(e), Some(a)) if e == a => continue,
            (None, None) => return Some("the same lines, but not the same line endings".into()),
            (e, a) => return Some(format!("line {number}: expected {e:?}, found {a:?}")),
        }
    }
    unreachable!()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn argo_cd_customizations_pass_their_tests() {
    if !lua_available("argo_cd_customizations_pass_their_tests") {
        return;
    }
    let output = harness::<&str>(&[], "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(output.status.success(), "argocd/test.lua failed:\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("for 4 kinds"), "every kind is tested");
}

/// Argo CD wants one health.lua per kind, with no way to share code between them; the four kinds
/// carry the same kstatus conditions, so the four scripts are one script, kept so by this test (an
/// edit to one copy alone fails it).
#[test]
fn the_health_checks_of_every_kind_are_one_script() {
    let read = |kind: &str| std::fs::read_to_string(kind_dir(kind).join("health.lua")).unwrap();
    let first = read(KINDS[0]);
    for kind in &KINDS[1..] {
        assert!(read(kind) == first, "{kind}/health.lua differs from {}/health.lua: edit all four alike", KINDS[0]);
    }
}

/// Copies the directory `from` to `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn a_broken_rule_fails_the_tests() {
    if !lua_available("a_broken_rule_fails_the_tests") {
        return;
    }
    // (file under twilio-operator.dev, text, its broken version, a case that must fail)
    let breaks = [
        (
            "TwilioApiKey/health.lua",
            r#"{ status = "Degraded", message = describe(current.Stalled) }"#,
            r#"{ status = "Healthy", message = describe(current.Stalled) }"#,
            "TwilioApiKey health testdata/account-not-found.yaml",
        ),
        (
            "TwilioAccount/health.lua",
            "not same(status.observedGeneration, generation)",
            "false",
            "TwilioAccount health testdata/generation-not-observed.yaml",
        ),
        (
            "TwilioApiKey/health.lua",
            "obj.spec.suspend == true then",
            "false then",
            "TwilioApiKey health testdata/suspended.yaml",
        ),
        (
            "TwilioApiKey/health.lua",
            r#"ready.reason == "Revoked""#,
            "false",
            "TwilioApiKey health testdata/revoked.yaml",
        ),
        (
            "TwilioApiKey/actions/discovery.lua",
            "obj.spec.revoked == true",
            "false",
            "TwilioApiKey discovery testdata/key-revoked.yaml",
        ),
        (
            "TwilioApiKey/actions/rotate/action.lua",
            "while taken[value] do",
            "while false do",
            "TwilioApiKey action rotate testdata/key-rotated-this-second.yaml",
        ),
    ];
    for (file, rule, broken, case) in breaks {
        let root = tempfile::tempdir().unwrap();
        copy_dir(&customizations(), &root.path().join("resource_customizations"));
        let path = root.path().join("resource_customizations/twilio-operator.dev").join(file);
        let script = read(&path);
        assert!(script.contains(rule), "{file} no longer contains {rule:?}; update this test");
        std::fs::write(&path, script.replacen(rule, broken, 1)).unwrap();
        let output = harness(&[root.path()], "");
        let printed = text(&output);
        assert!(!output.status.success(), "{file} with {rule:?} broken still passes:\n{printed}");
        let failure = format!("FAIL  twilio-operator.dev/{case}");
        assert!(printed.contains(&failure), "{file} broken: expected {failure:?} in:\n{printed}");
    }
}

/// `value` without null entries in mappings: Lua has no null, a missing key reads the same.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
}

#[test]
fn the_harness_reads_every_fixture_as_serde_yaml_does() {
    if !lua_available("the_harness_reads_every_fixture_as_serde_yaml_does") {
        return;
    }
    let mut files = Vec::new();
    yaml_files(&customizations(), &mut files);
    assert!(files.len() > 30, "the fixtures are found: {files:?}");
    let mut args = vec![PathBuf::from("--dump")];
    args.extend(files.iter().cloned());
    let output = harness(&args, "");
    assert!(output.status.success(), "argocd/test.lua --dump failed:\n{}", text(&output));
    let read_by_lua: BTreeMap<String, Value> = serde_json::from_slice(&output.stdout).expect("--dump prints JSON");
    for file in &files {
        let expected: Value = serde_yaml::from_str(&read(file)).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let by_lua = &read_by_lua[&file.display().to_string()];
        assert_eq!(by_lua, &without_nulls(expected), "{}: argocd/test.lua reads it otherwise", file.display());
    }
}

/// The argocd-cm data each script is installed under, with the script's file.
fn installed_scripts() -> Vec<(String, PathBuf)> {
    KINDS
        .iter()
        .map(|kind| {
            (format!("resource.customizations.health.twilio-operator.dev_{kind}"), kind_dir(kind).join("health.lua"))
        })
        .collect()
}

#[test]
fn argocd_cm_installs_exactly_the_scripts() {
    let patch: serde_yaml::Value = serde_yaml::from_str(&read(&repo().join("argocd/argocd-cm.yaml"))).unwrap();
    assert_eq!(patch["metadata"]["name"].as_str(), Some("argocd-cm"));
    let data = patch["data"].as_mapping().expect("data");
    let actions_key = "resource.customizations.actions.twilio-operator.dev_TwilioApiKey";
    let mut expected_keys: BTreeSet<String> = installed_scripts().into_iter().map(|(key, _)| key).collect();
    expected_keys.insert(actions_key.to_string());
    let keys: BTreeSet<String> = data.keys().map(|k| k.as_str().unwrap().to_string()).collect();
    assert_eq!(keys, expected_keys);
    let actions: serde_yaml::Value = serde_yaml::from_str(data[actions_key].as_str().unwrap()).unwrap();
    let definitions = actions["definitions"].as_sequence().unwrap();
    assert_eq!(definitions.len(), 1);
    assert_eq!(definitions[0]["name"].as_str(), Some("rotate"));
    let key_actions = kind_dir("TwilioApiKey").join("actions");
    let mut scripts: Vec<(String, Option<&str>, PathBuf)> =
        installed_scripts().into_iter().map(|(key, file)| (key.clone(), data[key.as_str()].as_str(), file)).collect();
    scripts.push(("discovery.lua".into(), actions["discovery.lua"].as_str(), key_actions.join("discovery.lua")));
    scripts.push((
        "rotate's action.lua".into(),
        definitions[0]["action.lua"].as_str(),
        key_actions.join("rotate/action.lua"),
    ));
    for (key, installed, file) in scripts {
        if let Some(difference) = first_difference(&read(&file), installed.unwrap_or_default()) {
            panic!(
                "argocd/argocd-cm.yaml: {key} is not {} ({difference}); regenerate it with {REGENERATE}",
                file.display()
            );
        }
    }
}

const REGENERATE: &str = "`lua5.1 argocd/test.lua --argocd-cm > argocd/argocd-cm.yaml`";

#[test]
fn argocd_cm_is_regenerated_from_the_scripts() {
    if !lua_available("argocd_cm_is_regenerated_from_the_scripts") {
        return;
    }
    let output = harness(&["--argocd-cm"], "");
    assert!(output.status.success(), "{}", text(&output));
    let committed = read(&repo().join("argocd/argocd-cm.yaml"));
    if let Some(difference) = first_difference(&String::from_utf8_lossy(&output.stdout), &committed) {
        panic!("argocd/argocd-cm.yaml is stale ({difference}): regenerate it with {REGENERATE}");
    }
}

#[test]
fn each_kind_has_a_health_check_tested_for_each_status() {
    let script = read(&kind_dir("TwilioApiKey").join("health.lua"));
    for kind in KINDS {
        // One script for the three kinds: a fix reaches all of them.
        if let Some(difference) = first_difference(&script, &read(&kind_dir(kind).join("health.lua"))) {
            panic!("{kind}/health.lua is not TwilioApiKey's ({difference}): copy the one you fixed to the others");
        }
        let tests: serde_yaml::Value = serde_yaml::from_str(&read(&kind_dir(kind).join("health_test.yaml"))).unwrap();
        let statuses: BTreeSet<&str> = tests["tests"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|t| t["healthStatus"]["status"].as_str().unwrap())
            .collect();
        let mut expected = BTreeSet::from(["Degraded", "Healthy", "Progressing"]);
        if kind == "TwilioApiKey" {
            expected.insert("Suspended");
        }
        assert_eq!(statuses, expected, "{kind}: the statuses its health_test.yaml shows");
    }
    let action = read(&kind_dir("TwilioApiKey").join("actions/rotate/action.lua"));
    assert!(action.contains(&format!("\"{ROTATE_ANNOTATION}\"")), "the rotate action sets {ROTATE_ANNOTATION}");
}

// ------------------------------------------------------------------------------------------
// kstatus
// ------------------------------------------------------------------------------------------

/// What kstatus makes of TwilioApiKeys with these conditions, generation and observedGeneration:
/// the real library (sigs.k8s.io/cli-utils/pkg/kstatus/status, through hack/tools/kstatus), one
/// status per case.
fn kstatus(cases: &[(Vec<Condition>, Option<i64>, Option<i64>)]) -> Vec<String> {
    let objects: Vec<Value> = cases
        .iter()
        .map(|(conditions, generation, observed_generation)| {
            let mut object = json!({
                "apiVersion": "twilio-operator.dev/v1alpha1",
                "kind": "TwilioApiKey",
                "metadata": {"name": "k", "namespace": "ns"},
                "status": {"conditions": conditions},
            });
            if let Some(generation) = generation {
                object["metadata"]["generation"] = json!(generation);
            }
            if let Some(observed) = observed_generation {
                object["status"]["observedGeneration"] = json!(observed);
            }
            object
        })
        .collect();
    support::kstatus(&objects).into_iter().map(|(status, _)| status).collect()
}

/// The kstatus rules `conditions` breaks, as read for a resource at `generation`.
fn kstatus_violations(conditions: &[Condition], generation: Option<i64>) -> Vec<String> {
    // metav1.Condition's own validation (the API server's for type and reason).
    let type_pattern =
        Regex::new(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$")
            .unwrap();
    let reason_pattern = Regex::new(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$").unwrap();
    let mut violations = Vec::new();
    let status_of = |type_: &str| conditions.iter().find(|c| c.type_ == type_).map(|c| c.status.as_str());
    for type_ in [READY, RECONCILING, STALLED] {
        let count = conditions.iter().filter(|c| c.type_ == type_).count();
        if count != 1 {
            violations.push(format!("{count} {type_} conditions"));
        }
    }
    for c in conditions {
        if !["True", "False", "Unknown"].contains(&c.status.as_str()) {
            violations.push(format!("{}: status {:?}", c.type_, c.status));
        }
        if !type_pattern.is_match(&c.type_) || c.type_.len() > 316 {
            violations.push(format!("type {:?}", c.type_));
        }
        if !reason_pattern.is_match(&c.reason) || c.reason.len() > 1024 {
            violations.push(format!("{}: reason {:?} is not CamelCase", c.type_, c.reason));
        }
        if c.message.len() > 32768 {
            violations.push(format!("{}: message too long", c.type_));
        }
        if c.observed_generation != generation {
            violations.push(format!("{}: observedGeneration {:?}, not {generation:?}", c.type_, c.observed_generation));
        }
    }
    let ready = status_of(READY) == Some("True");
    let reconciling = status_of(RECONCILING) == Some("True");
    let stalled = status_of(STALLED) == Some("True");
    if ready && (reconciling || stalled) {
        violations.push("Ready True with Reconciling or Stalled True".into());
    }
    if reconciling && stalled {
        violations.push("Reconciling and Stalled both True".into());
    }
    violations
}

fn healths() -> Vec<(Health, &'static str)> {
    vec![
        (Health::Ready { reason: "KeyReady", message: "Key SK1 delivered in Secret app".into() }, "Current"),
        (Health::Progressing { reason: "Retrying", message: "Twilio server error (HTTP 503)".into() }, "InProgress"),
        (Health::Stalled { reason: "TwilioAuthFailed", message: "Twilio refused the credential".into() }, "Failed"),
        // kstatus has no "deliberately not ready": to Flux a revoked key is InProgress for good.
        (Health::Inactive { reason: "Revoked", message: "spec.revoked is true".into() }, "InProgress"),
    ]
}

#[test]
fn conditions_keep_kstatus_rules_for_every_health() {
    let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let t1: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for (health, current) in healths() {
        for generation in [Some(1), Some(7), Some(i64::MAX)] {
            // From nothing, and from each other health (the same or an older generation).
            let mut previous: Vec<Vec<Condition>> = vec![Vec::new()];
            for (other, _) in healths() {
                previous.push(conditions_for(&[], &other, generation, t0));
                previous.push(conditions_for(&[], &other, generation.map(|g| g - 1), t0));
            }
            for before in previous {
                let conditions = conditions_for(&before, &health, generation, t1);
                let violations = kstatus_violations(&conditions, generation);
                assert!(violations.is_empty(), "{health:?} at {generation:?}: {violations:?}\n{conditions:#?}");
                for c in &conditions {
                    assert_eq!((c.reason.as_str(), c.message.as_str()), (health.reason(), health.message()));
                }
                cases.push((conditions.clone(), generation, generation));
                expected.push(format!("{health:?} at {generation:?}: {current}"));
                // A status for an older generation is InProgress, whatever it says.
                cases.push((conditions, generation, generation.map(|g| g - 1)));
                expected.push(format!("{health:?} at {generation:?}, observed one older: InProgress"));
            }
        }
    }
    let computed = kstatus(&cases);
    assert_eq!(computed.len(), cases.len(), "one kstatus answer per case");
    for (want, got) in expected.iter().zip(&computed) {
        let (case, status) = want.rsplit_once(": ").unwrap();
        assert_eq!(got, status, "kstatus of {case}");
    }
    println!("kstatus computed {} cases", computed.len());
}

#[test]
fn every_documented_reason_produces_its_documented_conditions() {
    let docs = read(&repo().join("docs/behaviour.md"));
    let section = &docs[docs.find("\n## Conditions\n").expect("docs/behaviour.md has ## Conditions")..];
    let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let mut reasons = 0;
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(|c| c.trim().trim_matches('`')).collect();
        let (reason, ready, reconciling, stalled) = (cells[1], cells[3], cells[4], cells[5]);
        let reason: &'static str = String::leak(reason.to_string());
        let message = format!("what {reason} means");
        let health = match (ready, reconciling, stalled) {
            ("True", "False", "False") => Health::Ready { reason, message },
            ("False", "True", "False") => Health::Progressing { reason, message },
            ("False", "False", "True") => Health::Stalled { reason, message },
            ("False", "False", "False") => Health::Inactive { reason, message },
            other => panic!("{reason}: the docs give the conditions {other:?}, which no Health writes"),
        };
        let conditions = conditions_for(&[], &health, Some(3), t0);
        let violations = kstatus_violations(&conditions, Some(3));
        assert!(violations.is_empty(), "{reason}: {violations:?}");
        let written: Vec<(&str, &str)> = conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
        assert_eq!(written, [(READY, ready), (RECONCILING, reconciling), (STALLED, stalled)], "{reason}");
        reasons += 1;
    }
    assert!(reasons >= 14, "the reasons table of docs/behaviour.md is read ({reasons} rows)");
}

// ------------------------------------------------------------------------------------------
// The operator's status, as Argo CD shows it
// ------------------------------------------------------------------------------------------

/// `value` as a Lua table constructor.
fn lua_literal(value: &Value) -> String {
    fn string(text: &str) -> String {
        let mut out = String::from("\"");
        for byte in text.bytes() {
            match byte {
                b'"' | b'\\' => {
                    out.push('\\');
                    out.push(byte as char);
                }
                0x20..=0x7e => out.push(byte as char),
                _ => out.push_str(&format!("\\{byte}")),
            }
        }
        out.push('"');
        out
    }
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(items) => format!("{{{}}}", items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter().map(|(k, v)| format!("[{}] = {}", string(k), lua_literal(v))).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// What Argo CD shows for `resource`: (status, message).
fn argo_cd_health(resource: &TwilioApiKey) -> (String, String) {
    let object = serde_json::to_value(resource).unwrap();
    let script = kind_dir("TwilioApiKey").join("health.lua");
    let output = harness(&[Path::new("--health"), &script], &lua_literal(&object));
    assert!(output.status.success(), "{}", text(&output));
    let health: Value = serde_json::from_slice(&output.stdout).unwrap();
    (health["status"].as_str().unwrap().to_string(), health["message"].as_str().unwrap().to_string())
}

#[test]
fn argo_cd_shows_the_status_the_operator_writes() {
    if !lua_available("argo_cd_shows_the_status_the_operator_writes") {
        return;
    }
    let fixture = kind_dir("TwilioApiKey").join("testdata/no-status.yaml");
    let resource: TwilioApiKey = serde_yaml::from_str(&read(&fixture)).unwrap();
    let generation = resource.metadata.generation;
    let now: Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
    assert_eq!(argo_cd_health(&resource).0, "Progressing", "no status yet");

    // As keys::status and keys::reconcile write it.
    let delivered = TwilioApiKeyStatus {
        key_sid: Some("SK8b1e3c5d7f9a0b2c4d6e8f0a1b3c5d7e".into()),
        friendly_name: Some(resource.desired_friendly_name()),
        ..Default::default()
    };
    let failed = |health: &Health| TwilioApiKeyStatus {
        observed_generation: generation,
        conditions: conditions_for(&[], health, generation, now),
        ..Default::default()
    };
    let mut revoked = resource.clone();
    revoked.spec.revoked = true;
    let retrying = Health::Progressing { reason: "Retrying", message: "rate limited by Twilio (HTTP 429)".into() };
    let stalled =
        Health::Stalled { reason: "AccountNotFound", message: "TwilioAccount payments/main does not exist".into() };
    let cases = [
        (resource.clone(), status::ready(&resource, &delivered, now), "Healthy"),
        (resource.clone(), failed(&retrying), "Progressing"),
        (resource.clone(), failed(&stalled), "Degraded"),
        (revoked.clone(), status::revoked(&revoked, now), "Suspended"),
    ];
    for (mut resource, status, expected) in cases {
        // The message is the reason and message of the condition that is True (Ready's if none).
        let ready = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
        let shown = status.conditions.iter().find(|c| c.status == "True").unwrap_or(ready);
        let message = format!("{}: {}", shown.reason, shown.message);
        resource.status = Some(status);
        assert_eq!(argo_cd_health(&resource), (expected.to_string(), message));
        // Until the operator has seen a change of the spec, Argo CD waits.
        resource.metadata.generation = generation.map(|g| g + 1);
        assert_eq!(argo_cd_health(&resource).0, "Progressing", "{expected}, then the spec changed");
        // Suspended, the operator writes nothing; Argo CD says so.
        resource.spec.suspend = true;
        assert_eq!(argo_cd_health(&resource).0, "Suspended");
    }
}
