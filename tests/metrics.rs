//! Observability: after a lifecycle, /metrics holds the named series with the expected counts
//! and only bounded labels, and `--log-format json` logs carry one span per reconciliation that
//! names the resource.

use twilio_operator_testkit as support;

use std::collections::BTreeMap;

use serde_json::json;
use support::{TestEnv, free_port, wait_until};

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples.get(series).unwrap_or_else(|| panic!("no series {series} in {samples:#?}"))
}

#[tokio::test]
async fn metrics_count_a_lifecycle_and_logs_name_each_reconciliation() {
    let mut env = TestEnv::new("metrics").await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    env.start_operator(&["--metrics-addr", &addr, "--log-format", "json"]);

    env.create_key("a", json!({})).await;
    env.create_key("b", json!({})).await;
    let first = env.wait_ready("a").await.status.unwrap().key_sid.unwrap();
    env.wait_ready("b").await;
    env.request_rotation("a", "now").await;
    env.wait_new_key("a", &first).await;
    env.create_key("c", json!({"accountRef": {"name": "missing"}})).await;
    env.wait_for_condition("c", "False", "AccountNotFound").await;
    env.delete_key("b").await;
    env.wait_gone("b").await;

    // b's key is gone from Twilio once its deletion finished; a holds its new and retiring keys.
    wait_until("b's key deleted in Twilio", || async { (env.fake.keys().len() == 2).then_some(()) }).await;
    let metrics = env.operator.as_ref().unwrap().metrics().await.expect("scrape /metrics");
    println!("{metrics:#?}");
    assert_eq!(value(&metrics, r#"twilio_operator_key_operations_total{operation="created"}"#), 3.0);
    assert_eq!(value(&metrics, r#"twilio_operator_twilio_requests_total{operation="create_key",status="201"}"#), 3.0);
    assert_eq!(value(&metrics, r#"twilio_operator_twilio_requests_total{operation="delete_key",status="204"}"#), 1.0);
    assert_eq!(value(&metrics, r#"twilio_operator_key_operations_total{operation="deleted"}"#), 1.0);
    assert_eq!(value(&metrics, r#"twilio_operator_rotations_total{cause="rotate_annotation"}"#), 1.0);
    assert_eq!(value(&metrics, "twilio_operator_managed_keys"), 1.0, "a holds a key; b is gone; c has none");
    let oldest = value(&metrics, "twilio_operator_oldest_key_age_seconds");
    assert!((0.0..300.0).contains(&oldest), "the oldest key is a's new one, seconds old: {oldest}");
    assert_eq!(value(&metrics, "twilio_operator_leaked_keys_found_total"), 0.0);
    assert!(
        value(&metrics, r#"twilio_operator_reconcile_errors_total{kind="TwilioApiKey",reason="account_not_found"}"#)
            >= 1.0
    );
    let ok = value(&metrics, r#"twilio_operator_reconciles_total{kind="TwilioApiKey",result="ok"}"#);
    assert!(ok >= 4.0, "reconciliations counted: {ok}");
    assert!(value(&metrics, r#"twilio_operator_reconcile_duration_seconds_count{kind="TwilioApiKey"}"#) >= ok);
    assert!(value(&metrics, r#"twilio_operator_reconciles_total{kind="TwilioAccount",result="ok"}"#) >= 1.0);
    assert_eq!(value(&metrics, "twilio_operator_leader"), 1.0);
    assert!(value(&metrics, r#"twilio_operator_kube_requests_total{verb="patch"}"#) >= 6.0);
    // Bounded labels: no namespace, resource name or key SID appears in any series.
    for series in metrics.keys() {
        assert!(!series.contains(&env.namespace) && !series.contains("SK") && !series.contains("\"a\""), "{series}");
    }

    // One span per reconciliation, naming the resource, in every JSON line logged inside it.
    let output = env.operator.as_ref().unwrap().output();
    let lines: Vec<serde_json::Value> = output.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(!lines.is_empty(), "the logs are JSON lines:\n{output}");
    let created: Vec<&serde_json::Value> = lines.iter().filter(|l| l["message"] == "created Twilio key").collect();
    assert_eq!(created.len(), 3, "three keys created:\n{output}");
    for line in created {
        let span = &line["span"];
        assert_eq!(span["name"], "reconcile", "{line}");
        assert_eq!(span["kind"], "TwilioApiKey", "{line}");
        assert_eq!(span["namespace"], env.namespace.as_str(), "{line}");
        assert!(span["object"] == "a" || span["object"] == "b", "{line}");
    }
    env.stop_operator();
}
