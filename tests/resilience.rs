//! Faults and quiet: secrets never leave the Secret, Twilio going away and coming back, deletion
//! without credentials, and an idle operator that makes no writes.

use twilio_operator_testkit as support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::{AUTH_TOKEN, Operator, TestEnv, wait_until};
use twilio_operator::api::TwilioApiKey;

#[tokio::test]
async fn a_full_lifecycle_at_trace_level_shows_no_secret_in_logs_events_or_status() {
    use base64::Engine;
    let mut env = TestEnv::new("tracelog").await;
    env.operator = Some(Operator::start_with_log(&env.namespace, &env.fake.url(), &[], "trace"));
    let mut secrets = vec![AUTH_TOKEN.to_string()];
    env.create_key("std", json!({"rotation": {"gracePeriod": "1s"}})).await;
    env.create_key("restricted", json!({"keyType": "Restricted", "policy": {"allow": ["/twilio/voice/calls/read"]}}))
        .await;
    for name in ["std", "restricted"] {
        env.wait_ready(name).await;
        secrets.push(env.delivered_pair(name).await.2);
    }
    // A rotation (a second secret), a refused credential (an error path), then deletion.
    let first = env.keys().get("std").await.unwrap().status.unwrap().key_sid.unwrap();
    env.patch_spec("std", json!({"rotation": {"trigger": "again"}})).await;
    wait_until("std to rotate", || async {
        let sid = env.keys().get("std").await.ok()?.status?.key_sid?;
        (sid != first).then_some(())
    })
    .await;
    secrets.push(env.delivered_pair("std").await.2);
    env.create_secret("bad", &[("TWILIO_AUTH_TOKEN", "refused-token-value")]).await;
    env.create_account("bad", "bad").await;
    env.create_key("refused", json!({"accountRef": {"name": "bad"}})).await;
    env.wait_for_condition("refused", "False", "TwilioAuthFailed").await;
    secrets.push("refused-token-value".into());
    for name in ["std", "restricted", "refused"] {
        env.delete_key(name).await;
    }
    env.wait_gone("std").await;
    env.wait_gone("restricted").await;

    let log = env.operator.as_ref().unwrap().output();
    assert!(log.contains("TRACE"), "trace logging was on");
    let events = serde_json::to_string(&env.events().await).unwrap();
    let statuses = serde_json::to_string(&env.keys().list(&ListParams::default()).await.unwrap().items).unwrap();
    for secret in &secrets {
        let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
        for (place, text) in [("operator output", &log), ("Events", &events), ("status", &statuses)] {
            assert!(!text.contains(secret.as_str()), "a secret value appears in the {place}");
            assert!(!text.contains(&encoded), "a base64-encoded secret appears in the {place}");
        }
    }
    println!("checked {} secrets against {} bytes of trace output", secrets.len(), log.len());
}

#[tokio::test]
async fn twilio_going_away_for_a_while_loses_nothing() {
    let mut env = TestEnv::with_operator("twiliodown").await;
    env.create_key("before", json!({})).await;
    let before = env.wait_ready("before").await.status.unwrap().key_sid.unwrap();

    env.fake.stop_serving().await;
    env.create_key("during", json!({})).await;
    env.delete_key("before").await;
    let key = env.wait_for_condition("during", "False", "Retrying").await;
    let ready = key.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Reconciling").unwrap();
    assert_eq!(ready.status, "True", "the key shows it is still being worked on");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(env.keys().get_opt("before").await.unwrap().is_some(), "deletion waits for Twilio");

    env.fake.resume_serving().await.unwrap();
    let during = env.wait_ready("during").await.status.unwrap().key_sid.unwrap();
    env.wait_gone("before").await;
    assert!(env.fake.key(&before).is_none());
    let sids: Vec<String> = env.fake.keys().into_iter().map(|k| k.sid).collect();
    assert_eq!(sids, vec![during], "exactly the wanted key exists");
}

#[tokio::test]
async fn deletion_without_credentials_waits_visibly_and_finishes_when_they_return() {
    let env = TestEnv::with_operator("nocreds").await;
    env.create_key("k", json!({})).await;
    let sid = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();
    // The credential is taken out of its Secret (deleting the Secret would leave it Terminating
    // and readable: it carries a finalizer while keys need it).
    let token = env.secrets().get("twilio-credentials").await.unwrap();
    let emptied = json!({"data": {"TWILIO_AUTH_TOKEN": null}});
    env.secrets().patch("twilio-credentials", &PatchParams::default(), &Patch::Merge(&emptied)).await.unwrap();
    env.delete_key("k").await;

    let key = env.wait_for_condition("k", "False", "CredentialsNotFound").await;
    assert!(key.metadata.deletion_timestamp.is_some(), "the resource waits, finalizer in place");
    assert!(env.fake.key(&sid).is_some(), "the key is not forgotten");
    env.wait_for_event("k", "CredentialsNotFound").await;

    let restored = json!({"data": token.data.unwrap()});
    env.secrets().patch("twilio-credentials", &PatchParams::default(), &Patch::Merge(&restored)).await.unwrap();
    env.wait_gone("k").await;
    assert!(env.fake.key(&sid).is_none(), "deleted in Twilio once credentials returned");
}

/// resourceVersions of everything the operator could write in the namespace, and the Events.
async fn kube_state(env: &TestEnv) -> BTreeMap<String, String> {
    let mut state = BTreeMap::new();
    let keys: Api<TwilioApiKey> = env.keys();
    for key in keys.list(&ListParams::default()).await.unwrap() {
        state.insert(format!("key/{}", key.name_any()), key.resource_version().unwrap());
    }
    for secret in env.secrets().list(&ListParams::default()).await.unwrap() {
        state.insert(format!("secret/{}", secret.name_any()), secret.resource_version().unwrap());
    }
    for account in env.accounts().list(&ListParams::default()).await.unwrap() {
        state.insert(format!("account/{}", account.name_any()), account.resource_version().unwrap());
    }
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.namespace);
    for event in events.list(&ListParams::default()).await.unwrap() {
        state.insert(format!("event/{}", event.name_any()), event.resource_version().unwrap());
    }
    state
}

#[tokio::test]
async fn a_hundred_ready_keys_idle_for_drift_intervals_cost_no_writes_and_only_list_calls() {
    const KEYS: usize = 100;
    let mut env = TestEnv::new("idle").await;
    env.start_operator(&["--resync-interval", "4s"]);
    for n in 0..KEYS {
        env.create_key(&format!("k{n}"), json!({})).await;
    }
    for n in 0..KEYS {
        env.wait_ready(&format!("k{n}")).await;
    }
    // One full interval for the last passes to settle, then measure two more.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let kube_before = kube_state(&env).await;
    let twilio_before = env.fake.request_counts();
    tokio::time::sleep(Duration::from_secs(9)).await;
    let kube_after = kube_state(&env).await;
    let twilio_after = env.fake.request_counts();

    let changed: Vec<&String> =
        kube_after.iter().filter(|(k, v)| kube_before.get(*k) != Some(*v)).map(|(k, _)| k).collect();
    let calls: BTreeMap<&String, u64> = twilio_after
        .iter()
        .map(|(k, v)| (k, v - twilio_before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    println!("idle window of 9s with {KEYS} keys: kube objects written {changed:?}, Twilio calls {calls:?}");
    assert!(changed.is_empty(), "no writes to the API server while idle: {changed:?}");
    assert!(calls.keys().all(|op| op.starts_with("list_keys")), "only list calls: {calls:?}");
    let lists: u64 = calls.values().sum();
    // Per interval: one drift listing for the account, and one verification of the account.
    assert!(lists <= 3 * 2, "a few scheduled lists, not one per key: {lists}");
    assert!(lists >= 1, "the drift check ran");
}
