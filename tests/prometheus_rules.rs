//! The chart's alerts (charts/twilio-operator/files/prometheus-rules.yaml): valid rules, unit
//! tests that pass under `promtool test rules` (Debian's prometheus package; hack/test.sh
//! installs it), and no rule that names a metric the operator does not export.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use std::time::Duration;

use twilio_operator::runtime::metrics::{KeyOperation, Metrics, Resources, RestartOutcome};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const RULES: &str = "charts/twilio-operator/files/prometheus-rules.yaml";
const RULE_TESTS: &str = "tests/prometheus/rules_test.yaml";

/// Runs promtool; None when it is not installed outside CI (in CI a missing promtool fails).
fn promtool(args: &[&str]) -> Option<(bool, String)> {
    let output = match Command::new("promtool").args(args).current_dir(repo()).output() {
        Ok(output) => output,
        Err(error) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: promtool is not installed ({error}); apt-get install prometheus");
            return None;
        }
        Err(error) => panic!("promtool is needed in CI (apt-get install prometheus): {error}"),
    };
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    Some((output.status.success(), text))
}

#[test]
fn the_rules_are_valid_prometheus_rules() {
    if let Some((ok, text)) = promtool(&["check", "rules", RULES]) {
        assert!(ok, "promtool check rules {RULES}:\n{text}");
    }
}

#[test]
fn every_alert_fires_when_it_should_and_only_then() {
    if let Some((ok, text)) = promtool(&["test", "rules", RULE_TESTS]) {
        assert!(ok, "promtool test rules {RULE_TESTS}:\n{text}");
    }
}

#[test]
fn every_alert_has_unit_tests() {
    let rules = std::fs::read_to_string(repo().join(RULES)).unwrap();
    let tests = std::fs::read_to_string(repo().join(RULE_TESTS)).unwrap();
    let alert = regex::Regex::new(r"(?m)^\s*- alert: (\w+)").unwrap();
    for name in alert.captures_iter(&rules).map(|c| c[1].to_string()) {
        let firing = regex::Regex::new(&format!(r"alertname: {name}\n\s+exp_alerts:\n")).unwrap();
        assert!(firing.is_match(&tests), "{RULE_TESTS} has no case where {name} fires");
        assert!(
            tests.contains(&format!("alertname: {name}, exp_alerts: []")),
            "{RULE_TESTS} has no case where {name} stays quiet"
        );
    }
}

#[test]
fn the_rules_name_only_metrics_the_operator_exports() {
    // Families with labels show up once a sample exists: record one of each.
    let metrics = Metrics::with_options(false);
    let reconciliation = metrics.reconcile.timed("TwilioApiKey", async { Ok::<(), ()>(()) }, |_| "ok");
    futures::executor::block_on(reconciliation).unwrap();
    metrics.reconcile.error("TwilioApiKey", "kube");
    twilio_operator::twilio::RequestObserver::request_done(&metrics, "create_key", "201", Duration::from_millis(5));
    metrics.keys.operation(KeyOperation::Created);
    metrics.keys.rotation("interval_elapsed");
    metrics.keys.rollout_restart(twilio_operator::api::WorkloadKind::Deployment, RestartOutcome::Shared);
    metrics.process.kube_request(&http::Request::get("/api/v1/secrets").body(()).unwrap());
    let resources = Resources { keys: vec![], accounts: vec![("TwilioAccount", vec![])], ..Default::default() };
    let exposition = metrics.render(&resources);
    let exported: BTreeSet<String> = exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(exported.contains("twilio_operator_leader"), "{exposition}");
    for file in [RULES, DASHBOARD] {
        for used in metrics_in(file) {
            // A counter's samples carry _total, a histogram's _bucket; their TYPE lines do not.
            let family = ["_total", "_bucket"].iter().find_map(|suffix| used.strip_suffix(suffix)).unwrap_or(&used);
            assert!(exported.contains(family), "{file} uses {used}, which the operator does not export: {exported:?}");
        }
    }
}

const DASHBOARD: &str = "charts/twilio-operator/dashboards/twilio-operator.json";

fn metrics_in(file: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    let metric = regex::Regex::new(r"twilio_operator_\w+").unwrap();
    metric.find_iter(&text).map(|m| m.as_str().to_string()).collect()
}

#[test]
fn the_dashboard_shows_what_the_alerts_watch() {
    let shown = metrics_in(DASHBOARD);
    for watched in metrics_in(RULES) {
        assert!(shown.contains(&watched), "{DASHBOARD} has no panel on {watched}, which an alert watches");
    }
}
