//! Rotation that waits for its consumers, proven with real ones: a Deployment of two Pods on a
//! real node (hack/control-plane.sh up-node) reads the key from its Secret into its environment
//! at start, as most applications do, and calls the fake Twilio with it twice a second
//! (hack/consumer/consume.sh on a static BusyBox image built here).
//!
//! - With `rolloutRestartTargets`, through five rotations: Twilio refuses none of the
//!   consumers' calls, and each old key is deleted only after the Deployment rolled out (its
//!   Event timeline is printed, for the notes).
//! - Without them, and a short grace period: the Pods keep calling with the deleted key, and
//!   Twilio refuses them. That is the failure the targets prevent.
//!
//! It needs root (containerd, a bridge, iptables); without root it is skipped, except in CI.

use twilio_operator_testkit as support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fake_twilio::{Authentications, FakeTwilio};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, LogParams, Patch, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::{
    ACCOUNT_SID, AUTH_TOKEN, Operator, create_key, node_cluster, operator_binary, poll_until, repo_root,
    setup_namespace, start_fake_twilio_on, wait_up_to,
};
use twilio_operator::api::{TwilioAccount, TwilioApiKey};

/// The node cluster, the consumer image imported into it, a namespace with an account of the
/// fake Twilio (listening on the node's address, where Pods reach it), and the operator.
struct Setup {
    /// The consumer image, one per test (the tests build theirs at the same time).
    image: String,
    client: Client,
    namespace: String,
    fake: FakeTwilio,
    _operator: Operator,
}

async fn setup(test: &str) -> Setup {
    let cluster = node_cluster();
    let script = repo_root().join("hack/consumer/consume.sh");
    let image = format!("twilio-consumer:{test}");
    cluster
        .load_busybox_image(&image, &[(&script, "/consume.sh")], &["/bin/sh", "/consume.sh"])
        .expect("build and import the consumer image");
    let client = cluster.client().await.expect("a client of the node cluster");
    let namespace = format!("{test}-{:04x}", rand::random::<u16>());
    setup_namespace(&client, &namespace, ACCOUNT_SID, AUTH_TOKEN).await.expect("set up the namespace");
    let fake = start_fake_twilio_on(cluster.node_ip.into(), ACCOUNT_SID, AUTH_TOKEN).await.expect("fake Twilio");
    let log = repo_root().join("target/test-logs").join(format!("{namespace}.log"));
    let args = ["--watch-namespace", namespace.as_str(), "--metrics-addr", "127.0.0.1:0", "--rollout-deadline", "2m"];
    let env = [("RUST_LOG", "info,twilio_operator=debug")];
    let operator = Operator::launch(&operator_binary(), &cluster.kubeconfig, &fake.url(), &args, &env, &log)
        .expect("start the operator");
    Setup { image, client, namespace, fake, _operator: operator }
}

/// A Deployment of two consumers of Secret `secret`, each calling the fake Twilio.
async fn create_consumers(setup: &Setup, name: &str, secret: &str) {
    create_multi_consumers(setup, name, json!({}), &[secret]).await;
}

/// How the consumers' calls authenticated, per key SID (the operator's own calls are made with the
/// account SID and are left out).
fn consumer_calls(fake: &FakeTwilio) -> BTreeMap<String, Authentications> {
    fake.authentications().into_iter().filter(|(user, _)| user.starts_with("SK")).collect()
}

fn refused(calls: &BTreeMap<String, Authentications>) -> u64 {
    calls.values().map(|a| a.refused).sum()
}

async fn key(setup: &Setup, name: &str) -> TwilioApiKey {
    let keys: Api<TwilioApiKey> = Api::namespaced(setup.client.clone(), &setup.namespace);
    keys.get(name).await.expect("the TwilioApiKey")
}

async fn wait_key_sid(setup: &Setup, name: &str, not: Option<&str>) -> String {
    wait_up_to(Duration::from_secs(60), &format!("{name}: a Ready key other than {not:?}"), || async {
        let key = key(setup, name).await;
        let sid = support::ready_sid(&key)?.to_string();
        (Some(sid.as_str()) != not).then_some(sid)
    })
    .await
}

async fn request_rotation(setup: &Setup, name: &str, value: &str) {
    let keys: Api<TwilioApiKey> = Api::namespaced(setup.client.clone(), &setup.namespace);
    let patch = json!({"metadata": {"annotations": {"twilio-operator.dev/rotate": value}}});
    keys.patch(name, &Default::default(), &kube::api::Patch::Merge(&patch)).await.expect("annotate");
}

/// The Events about `name`, oldest first: (time, reason, note).
async fn timeline(setup: &Setup, name: &str) -> Vec<(Timestamp, String, String)> {
    let events: Api<Event> = Api::namespaced(setup.client.clone(), &setup.namespace);
    let mut list: Vec<(Timestamp, String, String)> = events
        .list(&ListParams::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            // The operator names an Event "<object>.<nanoseconds since the epoch, in hex>": its
            // time to the nanosecond (core/v1 Events carry whole seconds).
            let nanos = e
                .metadata
                .name
                .as_deref()
                .and_then(|n| n.rsplit('.').next())
                .and_then(|hex| i128::from_str_radix(hex, 16).ok());
            let at = nanos.and_then(|n| Timestamp::from_nanosecond(n).ok()).expect("an Event named by the operator");
            (at, e.reason.unwrap_or_default(), e.note.unwrap_or_default())
        })
        .collect();
    list.sort_by_key(|(at, _, _)| *at);
    list
}

/// The first and last lines each consumer Pod printed.
async fn consumer_logs(setup: &Setup, app: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(setup.client.clone(), &setup.namespace);
    let list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await.expect("list Pods");
    let mut text = String::new();
    for pod in list.items {
        let log = pods.logs(&pod.name_any(), &LogParams::default()).await.unwrap_or_else(|e| format!("(no log: {e})"));
        let lines: Vec<&str> = log.lines().collect();
        let shown = [&lines[..lines.len().min(3)], &lines[lines.len().saturating_sub(5)..]].concat().join("\n    ");
        text.push_str(&format!("  {}:\n    {shown}\n", pod.name_any()));
    }
    text
}

/// The consumer Pods: name, phase, ready, restarts.
async fn pod_statuses(setup: &Setup, app: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(setup.client.clone(), &setup.namespace);
    let list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await.expect("list Pods");
    list.items
        .iter()
        .map(|pod| {
            let status = pod.status.clone().unwrap_or_default();
            let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
            let restarts: i32 = status.container_statuses.iter().flatten().map(|c| c.restart_count).sum();
            let terminating = if pod.metadata.deletion_timestamp.is_some() { " terminating" } else { "" };
            let phase = status.phase.unwrap_or_default();
            format!("{} phase={phase} ready={ready} restarts={restarts}{terminating}", pod.name_any())
        })
        .collect()
}

#[tokio::test]
async fn consumers_roll_to_each_new_key_before_the_old_one_goes_and_no_call_fails() {
    if support::node_tests_skip() {
        return;
    }
    let setup = setup("consumers").await;
    let spec = json!({
        "secret": {"name": "consumer-twilio"},
        "rotation": {"gracePeriod": "2s", "maxGracePeriod": "10m"},
        "rolloutRestartTargets": [{"kind": "Deployment", "name": "consumer"}]
    });
    create_key(&setup.client, &setup.namespace, "consumer-key", spec).await.expect("create the key");
    let mut sid = wait_key_sid(&setup, "consumer-key", None).await;
    create_consumers(&setup, "consumer", "consumer-twilio").await;
    println!("consumers up: {:?}", pod_statuses(&setup, "consumer").await);
    let mut keys = vec![sid.clone()];
    for rotation in 1..=5 {
        let started = Instant::now();
        let before = Timestamp::now();
        request_rotation(&setup, "consumer-key", &rotation.to_string()).await;
        let new = wait_key_sid(&setup, "consumer-key", Some(&sid)).await;
        let old = std::mem::replace(&mut sid, new.clone());
        wait_up_to(Duration::from_secs(180), &format!("rotation {rotation}: old key {old} deleted"), || async {
            setup.fake.key(&old).is_none().then_some(())
        })
        .await;
        let deleted_after = started.elapsed();
        // Each old key went once the Deployment had rolled out, not at the end of its 2 s grace
        // period: the Event says so, after RolloutComplete.
        // The Event is written just after the key is deleted and the status records it.
        let events = wait_up_to(Duration::from_secs(30), &format!("the KeyDeleted Event of {old}"), || async {
            let events: Vec<_> =
                timeline(&setup, "consumer-key").await.into_iter().filter(|(at, _, _)| *at >= before).collect();
            events.iter().any(|(_, reason, note)| reason == "KeyDeleted" && note.contains(&old)).then_some(events)
        })
        .await;
        println!(
            "rotation {rotation}: {old} -> {new}, old key deleted {:.1} s after the request",
            deleted_after.as_secs_f64()
        );
        for (at, reason, note) in &events {
            println!("  +{:>5.1} s  {reason:<17} {note}", at.duration_since(before).as_secs_f64());
        }
        let position = |reason: &str, containing: &str| {
            events
                .iter()
                .position(|(_, r, n)| r == reason && n.contains(containing))
                .unwrap_or_else(|| panic!("rotation {rotation}: no {reason} Event naming {containing}: {events:?}"))
        };
        let rotated = position("KeyRotated", &new);
        let restarted = position("RolloutRestarted", &new);
        let complete = position("RolloutComplete", &new);
        let deleted = position("KeyDeleted", &old);
        assert!(rotated <= restarted && restarted < complete && complete < deleted, "rotation {rotation}: {events:?}");
        assert!(events[deleted].2.contains("once the rollout restart targets had rolled out"), "{:?}", events[deleted]);
        // The grace period (2 s) starts again once the rollout is complete, for Pods still
        // terminating.
        let settled = events[deleted].0.duration_since(events[complete].0).as_secs_f64();
        assert!(settled >= 1.9, "rotation {rotation}: deleted {settled:.1} s after RolloutComplete");
        let calls = consumer_calls(&setup.fake);
        assert_eq!(refused(&calls), 0, "rotation {rotation}: calls refused: {calls:?}");
        keys.push(new);
    }
    // Let the last key's consumers call a while.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = consumer_calls(&setup.fake);
    println!("consumer calls per key (accepted, refused):");
    for sid in &keys {
        let a = calls.get(sid).copied().unwrap_or_default();
        println!("  {sid}: {}, {}", a.accepted, a.refused);
        assert!(a.accepted > 0, "the consumers used key {sid}: {calls:?}");
    }
    assert_eq!(refused(&calls), 0, "no call refused through 5 rotations: {calls:?}");
    let status = key(&setup, "consumer-key").await.status.unwrap();
    assert!(status.retiring_keys.is_empty() && status.rollout.is_empty(), "{status:?}");
    println!("consumer Pods: {:?}", pod_statuses(&setup, "consumer").await);
}

#[tokio::test]
async fn without_restart_targets_a_short_grace_period_cuts_consumers_off() {
    if support::node_tests_skip() {
        return;
    }
    let setup = setup("no-targets").await;
    let spec = json!({"secret": {"name": "plain-twilio"}, "rotation": {"gracePeriod": "3s"}});
    create_key(&setup.client, &setup.namespace, "plain-key", spec).await.expect("create the key");
    let old = wait_key_sid(&setup, "plain-key", None).await;
    create_consumers(&setup, "plain", "plain-twilio").await;
    request_rotation(&setup, "plain-key", "1").await;
    let new = wait_key_sid(&setup, "plain-key", Some(&old)).await;
    wait_up_to(Duration::from_secs(60), "the old key deleted after its grace period", || async {
        setup.fake.key(&old).is_none().then_some(())
    })
    .await;
    // Nothing restarted the consumers: they still hold the deleted key, and Twilio refuses it.
    let refused = poll_until(Duration::from_secs(30), "the consumers' calls refused", || async {
        let old_calls = consumer_calls(&setup.fake).get(&old).copied().unwrap_or_default();
        Ok((old_calls.refused >= 4).then_some(old_calls))
    })
    .await;
    let logs = consumer_logs(&setup, "plain").await;
    let refused_calls = refused.unwrap_or_else(|error| {
        panic!("{error:#}\ncalls per key: {:?}\nconsumer logs:\n{logs}", consumer_calls(&setup.fake))
    });
    assert!(logs.contains(&format!("using key {old}")), "the consumers started with the old key:\n{logs}");
    let calls = consumer_calls(&setup.fake);
    println!(
        "without targets: key {old} (deleted 3 s after the rotation): {refused_calls:?}; key {new}: {:?}",
        calls.get(&new)
    );
    assert_eq!(calls.get(&new).map_or(0, |a| a.accepted), 0, "no consumer picked up the new key");
    println!("consumer Pods: {:?}", pod_statuses(&setup, "plain").await);
}

/// A Deployment of two Pods, each running one consumer per Secret in `secrets` (so that every
/// one of those keys feeds it), with these Pod labels and Deployment labels.
async fn create_multi_consumers(setup: &Setup, name: &str, labels: serde_json::Value, secrets: &[&str]) {
    let containers: Vec<serde_json::Value> = secrets
        .iter()
        .enumerate()
        .map(|(i, secret)| {
            json!({
                "name": format!("consumer-{i}"),
                "image": setup.image,
                "imagePullPolicy": "Never",
                "envFrom": [{"secretRef": {"name": secret}}],
                "env": [{"name": "TWILIO_URL", "value": setup.fake.url()}],
                "securityContext": {
                    "runAsUser": 65532, "runAsNonRoot": true, "readOnlyRootFilesystem": true,
                    "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}
                }
            })
        })
        .collect();
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 5, "containers": containers}
            }
        }
    }))
    .unwrap();
    let api: Api<Deployment> = Api::namespaced(setup.client.clone(), &setup.namespace);
    api.create(&PostParams::default(), &deployment).await.expect("create the consumers");
    wait_up_to(Duration::from_secs(120), &format!("{name}: 2 Pods available"), || async {
        let d = api.get(name).await.ok()?;
        (d.status?.available_replicas == Some(2)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn keys_rotated_together_restart_each_workload_they_share_once() {
    if support::node_tests_skip() {
        return;
    }
    let setup = setup("shared").await;
    // Both keys feed both Deployments: "selected" through a label selector, "named" by name.
    let spec = |secret: &str| {
        json!({
            "secret": {"name": secret},
            "rotation": {"gracePeriod": "2s", "maxGracePeriod": "10m"},
            "rolloutRestartTargets": [
                {"kind": "Deployment", "selector": {"matchLabels": {"consumes": "twilio"}}},
                {"kind": "Deployment", "name": "named"}
            ]
        })
    };
    let keys = [("pay-key", "pay-twilio"), ("sms-key", "sms-twilio")];
    let mut old = Vec::new();
    for (key_name, secret) in keys {
        create_key(&setup.client, &setup.namespace, key_name, spec(secret)).await.expect("create the key");
        old.push(wait_key_sid(&setup, key_name, None).await);
    }
    let secrets = ["pay-twilio", "sms-twilio"];
    create_multi_consumers(&setup, "selected", json!({"consumes": "twilio"}), &secrets).await;
    create_multi_consumers(&setup, "named", json!({}), &secrets).await;
    // A Deployment the selector does not match is left alone (it consumes a key of its own, which
    // does not rotate: a consumer of a rotated key that is not a target would be cut off).
    let bystander_spec = json!({"secret": {"name": "bystander-twilio"}});
    create_key(&setup.client, &setup.namespace, "bystander-key", bystander_spec).await.expect("create the key");
    wait_key_sid(&setup, "bystander-key", None).await;
    create_multi_consumers(&setup, "bystander", json!({"consumes": "other"}), &["bystander-twilio"]).await;
    let deployments: Api<Deployment> = Api::namespaced(setup.client.clone(), &setup.namespace);
    let generation = |d: &Deployment| d.metadata.generation.unwrap_or_default();
    let mut before = BTreeMap::new();
    for name in ["selected", "named", "bystander"] {
        before.insert(name, generation(&deployments.get(name).await.unwrap()));
    }

    let started = Timestamp::now();
    for (key_name, _) in keys {
        request_rotation(&setup, key_name, "1").await;
    }
    let mut new = Vec::new();
    for (i, (key_name, _)) in keys.iter().enumerate() {
        new.push(wait_key_sid(&setup, key_name, Some(&old[i])).await);
    }
    // What the selector matched, as the status lists it during the rotation.
    let matched = wait_up_to(Duration::from_secs(60), "pay-key's selector matched", || async {
        let status = key(&setup, "pay-key").await.status?;
        let entries: Vec<String> = status
            .rollout
            .iter()
            .filter(|e| e.selector.is_some())
            .map(|e| {
                format!("{}:{}:{}", e.name, e.selector.as_deref().unwrap_or(""), e.message.as_deref().unwrap_or(""))
            })
            .collect();
        entries.iter().any(|e| e.starts_with("selected:")).then_some(entries)
    })
    .await;
    println!("pay-key status.rollout (selector entries): {matched:#?}");
    assert!(
        matched.iter().any(|e| e.starts_with(":consumes=twilio:matched 1 at the rotation: selected")),
        "{matched:?}"
    );
    assert!(!matched.iter().any(|e| e.contains("bystander")), "{matched:?}");
    for (i, sid) in old.iter().enumerate() {
        wait_up_to(Duration::from_secs(180), &format!("old key {sid} of {} deleted", keys[i].0), || async {
            setup.fake.key(sid).is_none().then_some(())
        })
        .await;
    }
    // Each shared Deployment was restarted once for the two keys: one new generation, one new
    // ReplicaSet; the bystander not at all.
    for (name, restarts) in [("selected", 1), ("named", 1), ("bystander", 0)] {
        let after = generation(&deployments.get(name).await.unwrap());
        assert_eq!(after - before[name], restarts, "{name}: generation {} -> {after}", before[name]);
    }
    let replica_sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(setup.client.clone(), &setup.namespace);
    for (name, count) in [("selected", 2), ("named", 2), ("bystander", 1)] {
        let list = replica_sets.list(&ListParams::default().labels(&format!("app={name}"))).await.unwrap();
        assert_eq!(list.items.len(), count, "{name}: ReplicaSets");
    }
    // The Events: one RolloutRestarted per workload, from whichever key came first; the other
    // key's Events say whose restart served it. Each old key went after both had rolled out.
    let mut restarted = Vec::new();
    let mut shared = Vec::new();
    for (i, (key_name, _)) in keys.iter().enumerate() {
        let events = wait_up_to(Duration::from_secs(30), &format!("{key_name}: KeyDeleted Event"), || async {
            let events: Vec<_> =
                timeline(&setup, key_name).await.into_iter().filter(|(at, _, _)| *at >= started).collect();
            events.iter().any(|(_, reason, note)| reason == "KeyDeleted" && note.contains(&old[i])).then_some(events)
        })
        .await;
        println!("{key_name}:");
        for (at, reason, note) in &events {
            println!("  +{:>5.1} s  {reason:<20} {note}", at.duration_since(started).as_secs_f64());
        }
        let at = |reason: &str, containing: &str| {
            events
                .iter()
                .find(|(_, r, n)| r == reason && n.contains(containing))
                .map(|(at, _, _)| *at)
                .unwrap_or_else(|| panic!("{key_name}: no {reason} Event naming {containing}: {events:?}"))
        };
        let deleted = at("KeyDeleted", &old[i]);
        for workload in ["Deployment/selected", "Deployment/named"] {
            assert!(at("RolloutComplete", workload) < deleted, "{key_name}: {workload} rolled out before the deletion");
        }
        for (_, reason, note) in &events {
            match reason.as_str() {
                "RolloutRestarted" => restarted.push(note.clone()),
                "RolloutRestartShared" => shared.push(note.clone()),
                _ => {}
            }
        }
    }
    assert_eq!(restarted.len(), 2, "one restart per workload: {restarted:?}");
    assert_eq!(shared.len(), 2, "the other key shared each: {shared:?}");
    for workload in ["Deployment/selected", "Deployment/named"] {
        assert_eq!(restarted.iter().filter(|n| n.contains(workload)).count(), 1, "{workload}: {restarted:?}");
        let note = shared.iter().find(|n| n.starts_with(workload)).expect("a shared restart");
        assert!(note.contains("for TwilioApiKey") && note.contains("serves this key too"), "{note}");
    }
    let calls = consumer_calls(&setup.fake);
    for sid in old.iter().chain(&new) {
        assert!(calls.get(sid).is_some_and(|a| a.accepted > 0), "key {sid} was used: {calls:?}");
    }
    assert_eq!(refused(&calls), 0, "no call refused: {calls:?}");
}

/// "HH:MM" in UTC, `hours` from now.
fn clock_in(hours: i64) -> String {
    let at = Timestamp::now().checked_add(k8s_openapi::jiff::SignedDuration::from_hours(hours)).unwrap();
    at.to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC).strftime("%H:%M").to_string()
}

#[tokio::test]
async fn a_scheduled_rotation_waits_for_its_window_and_a_repair_does_not() {
    if support::node_tests_skip() {
        return;
    }
    let setup = setup("windows").await;
    // The only window opens 3 hours from now: a key due every minute is not rotated before then.
    let closed = json!([{"start": clock_in(3), "end": clock_in(4)}]);
    let spec = json!({
        "secret": {"name": "window-twilio"},
        "rotation": {"interval": "1m", "gracePeriod": "1s", "windows": closed}
    });
    create_key(&setup.client, &setup.namespace, "window-key", spec).await.expect("create the key");
    let first = wait_key_sid(&setup, "window-key", None).await;
    let status = key(&setup, "window-key").await.status.unwrap();
    let created: Timestamp = status.key_created_at.clone().unwrap().parse().unwrap();
    let opens: Timestamp = status.next_window_at.clone().expect("status.nextWindowAt").parse().unwrap();
    println!("created {created}; nextWindowAt {opens}; nextRotationAt {:?}", status.next_rotation_at);
    let hours = opens.duration_since(Timestamp::now()).as_secs_f64() / 3600.0;
    assert!((2.9..3.1).contains(&hours), "the window opens in 3 hours, not {hours:.2}");
    assert_eq!(status.next_rotation_at.as_deref(), status.next_window_at.as_deref(), "due before the window");
    // Past the interval, well outside the window: still the first key, and Ready says why.
    let due = created.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(75)).unwrap();
    tokio::time::sleep(Duration::try_from(due.duration_since(Timestamp::now())).unwrap_or_default()).await;
    let held = key(&setup, "window-key").await;
    assert_eq!(
        held.status.as_ref().unwrap().key_sid.as_deref(),
        Some(first.as_str()),
        "not rotated outside its window"
    );
    let ready = held.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Ready").unwrap();
    println!("Ready: {}", ready.message);
    assert!(ready.message.contains("waits for a rotation window"), "{}", ready.message);

    // A repair is never held back: the Secret deleted, a new key at once.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(setup.client.clone(), &setup.namespace);
    secrets.delete("window-twilio", &Default::default()).await.expect("delete the Secret");
    let repaired = wait_key_sid(&setup, "window-key", Some(&first)).await;
    let history = key(&setup, "window-key").await.status.unwrap().history;
    assert_eq!(history.last().map(|e| (e.sid.as_str(), e.reason.as_str())), Some((repaired.as_str(), "SecretDrift")));
    let repaired_at: Timestamp = history.last().unwrap().delivered_at.parse().unwrap();

    // A window open now: the rotation that falls due starts.
    let open = json!([{"start": clock_in(-1), "end": clock_in(1)}]);
    let keys: Api<TwilioApiKey> = Api::namespaced(setup.client.clone(), &setup.namespace);
    let patch = json!({"spec": {"rotation": {"windows": open}}});
    keys.patch("window-key", &Default::default(), &kube::api::Patch::Merge(&patch)).await.expect("open a window");
    let scheduled = wait_up_to(Duration::from_secs(150), "the scheduled rotation", || async {
        let status = key(&setup, "window-key").await.status?;
        let last = status.history.last()?.clone();
        (last.reason == "IntervalElapsed").then_some(last)
    })
    .await;
    let rotated_at: Timestamp = scheduled.delivered_at.parse().unwrap();
    println!("repaired at {repaired_at}; rotated by interval at {rotated_at} in a window open now");
    assert!(rotated_at.duration_since(repaired_at).as_secs_f64() >= 60.0, "due a minute after the repair");
    let history = key(&setup, "window-key").await.status.unwrap().history;
    let reasons: Vec<&str> = history.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["Created", "SecretDrift", "IntervalElapsed"]);
}

/// The account's auth token, rotated with consumers that call Twilio with it (read from their
/// environment at start): each new token is delivered, the Deployment restarted and rolled out,
/// and only then promoted, so that Twilio refuses none of their calls through three rotations.
#[tokio::test]
async fn consumers_of_the_auth_token_roll_to_each_new_one_before_its_promotion_and_no_call_fails() {
    if support::node_tests_skip() {
        return;
    }
    let setup = setup("authtoken").await;
    let accounts: Api<TwilioAccount> = Api::namespaced(setup.client.clone(), &setup.namespace);
    let rotation = json!({"spec": {"credentialRotation": {
        "gracePeriod": "5s",
        "deliverTo": [{"secretName": "app-twilio"}],
        "rolloutRestartTargets": [{"kind": "Deployment", "name": "token-app"}],
    }}});
    accounts.patch("main", &Default::default(), &Patch::Merge(&rotation)).await.expect("patch the account");
    let secrets: Api<Secret> = Api::namespaced(setup.client.clone(), &setup.namespace);
    wait_up_to(Duration::from_secs(60), "app-twilio delivers the auth token", || async {
        secrets.get_opt("app-twilio").await.ok().flatten().map(drop)
    })
    .await;
    create_consumers(&setup, "token-app", "app-twilio").await;
    let started = Instant::now();
    let mut token = AUTH_TOKEN.to_string();
    for round in 1..=3u32 {
        let trigger = json!({"spec": {"credentialRotation": {"trigger": format!("round-{round}")}}});
        accounts.patch("main", &Default::default(), &Patch::Merge(&trigger)).await.expect("ask for a rotation");
        wait_up_to(Duration::from_secs(180), &format!("rotation {round} finished"), || async {
            let rotation = accounts.get("main").await.ok()?.status?.credential_rotation?;
            (rotation.rotations == round && rotation.phase.is_none()).then_some(())
        })
        .await;
        let now = setup.fake.auth_token(ACCOUNT_SID).expect("the account");
        assert_ne!(now, token, "rotation {round} replaced the token");
        token = now;
        println!("rotation {round} finished after {:?}", started.elapsed());
    }
    // The Pods go on calling with the current token.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = setup.fake.authentications().get(ACCOUNT_SID).cloned().unwrap_or_default();
    println!("calls made with the account's auth tokens (consumers and operator): {calls:?}");
    println!("consumer logs:\n{}", consumer_logs(&setup, "token-app").await);
    for (at, reason, note) in timeline(&setup, "main").await {
        println!("  {at} {reason}: {note}");
    }
    assert_eq!(calls.refused, 0, "Twilio refused calls made with an auth token");
    assert!(calls.accepted > 50, "the consumers kept calling: {calls:?}");
    let delivered = secrets.get("app-twilio").await.expect("app-twilio").data.unwrap_or_default();
    assert_eq!(delivered.get("TWILIO_AUTH_TOKEN").map(|v| v.0.clone()), Some(token.clone().into_bytes()));
    assert!(!delivered.contains_key("TWILIO_AUTH_TOKEN_PREVIOUS"), "the old token left after the grace period");
}
