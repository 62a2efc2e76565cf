//! Rotation that waits for the consumers (spec.rolloutRestartTargets), on the real control plane
//! with the real operator binary. This control plane has no node: a workload with replicas
//! never finishes rolling out (its Pods are never scheduled), one with none finishes at once,
//! which is what these tests use. tests/consumers.rs runs real consumers on a node.

use twilio_operator_testkit as support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use support::{TestEnv, wait_until, wait_up_to};
use twilio_operator::api::{TwilioApiKey, WorkloadKind};

const RESTARTED_AT: &str = "twilio-operator.dev/restartedAt";

fn pod_template(app: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": "consumer:dev"}]}
    })
}

async fn create_deployment(env: &TestEnv, name: &str, replicas: i32) {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": pod_template(name)}
    }))
    .unwrap();
    let api: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &deployment).await.expect("create Deployment");
}

/// The restart annotation on a workload's Pod template.
fn template_annotation(template: &PodTemplateSpec) -> Option<String> {
    template.metadata.as_ref()?.annotations.as_ref()?.get(RESTARTED_AT).cloned()
}

async fn key(env: &TestEnv, name: &str) -> TwilioApiKey {
    env.keys().get(name).await.expect("the TwilioApiKey")
}

/// The Event notes about `object` with this reason.
async fn notes(env: &TestEnv, object: &str, reason: &str) -> Vec<String> {
    env.events()
        .await
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

#[tokio::test]
async fn the_old_key_outlives_its_grace_period_until_the_consumers_rolled_out() {
    let mut env = TestEnv::new("rollout-wait").await;
    env.start_operator(&["--rollout-deadline", "3s"]);
    create_deployment(&env, "web", 1).await;
    create_deployment(&env, "idle", 0).await;
    let spec = json!({
        "rotation": {"gracePeriod": "1s", "maxGracePeriod": "10m"},
        "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}, {"kind": "Deployment", "name": "idle"}]
    });
    env.create_key("k", spec).await;
    let old = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();
    // A first key replaces none: nothing is restarted.
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    let web = deployments.get("web").await.unwrap();
    assert_eq!(template_annotation(&web.spec.template), None, "no restart for a first key");

    env.request_rotation("k", "1").await;
    let new = env.wait_new_key("k", &old).await.status.unwrap().key_sid.unwrap();
    // Both consumers are restarted after the new key is in the Secret.
    wait_until("both Deployments restarted", || async {
        let mut restarted = 0;
        for name in ["web", "idle"] {
            let d = deployments.get(name).await.ok()?;
            restarted += usize::from(template_annotation(&d.spec.template).is_some());
        }
        (restarted == 2).then_some(())
    })
    .await;
    let (_, delivered, _) = env.delivered_pair("k").await;
    assert_eq!(delivered, new);
    // idle rolls out at once; web never does on a control plane without nodes. After the rollout
    // deadline the resource says so, and the old key lives on past its 1 s grace period.
    let delayed = wait_until("RolloutDelayed", || async {
        let k = key(&env, "k").await;
        k.status?.conditions.into_iter().find(|c| c.type_ == "RolloutDelayed")
    })
    .await;
    assert_eq!((delayed.status.as_str(), delayed.reason.as_str()), ("True", "RolloutDeadlineExceeded"));
    assert!(delayed.message.contains("Deployment/web"), "{}", delayed.message);
    assert!(!delayed.message.contains("Deployment/idle"), "idle rolled out: {}", delayed.message);
    env.wait_for_event("k", "RolloutDelayed").await;
    let status = key(&env, "k").await.status.unwrap();
    let rollout: Vec<(WorkloadKind, &str, bool)> =
        status.rollout.iter().map(|e| (e.kind, e.name.as_str(), e.complete)).collect();
    assert_eq!(rollout, [(WorkloadKind::Deployment, "web", false), (WorkloadKind::Deployment, "idle", true)]);
    assert!(status.rollout[0].message.as_deref().unwrap_or("").contains("Pods"), "{:?}", status.rollout[0]);
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True", "the new key is delivered: Ready");
    assert!(ready.message.contains("until Deployment/web rolled out"), "{}", ready.message);
    assert!(env.fake.key(&old).is_some(), "the old key is kept while web has not rolled out");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(env.fake.key(&old).is_some(), "still kept, 5 s past its 1 s grace period");

    // web scales to zero: its rollout is complete, and the old key goes.
    let scale = json!({"spec": {"replicas": 0}});
    deployments.patch("web", &PatchParams::default(), &Patch::Merge(&scale)).await.expect("scale web to 0");
    wait_until("the old key deleted", || async { env.fake.key(&old).is_none().then_some(()) }).await;
    let status = wait_until("the rollout cleared", || async {
        let status = key(&env, "k").await.status?;
        (status.rollout.is_empty() && status.retiring_keys.is_empty()).then_some(status)
    })
    .await;
    assert!(!status.conditions.iter().any(|c| c.type_ == "RolloutDelayed"), "{:?}", status.conditions);
    assert!(env.fake.key(&new).is_some());
    env.wait_for_event("k", "KeyDeleted").await;
    let deleted = notes(&env, "k", "KeyDeleted").await;
    assert!(deleted.iter().any(|n| n.contains(&old) && n.contains("once the rollout restart targets had rolled out")));
    assert_eq!(notes(&env, "k", "RolloutRestarted").await.len(), 2);
    assert_eq!(notes(&env, "k", "RolloutComplete").await.len(), 2, "idle, then web");
    env.stop_operator();
}

#[tokio::test]
async fn a_rollout_that_never_finishes_keeps_the_old_key_until_max_grace_period() {
    let mut env = TestEnv::new("rollout-max").await;
    env.start_operator(&["--rollout-deadline", "1s"]);
    // "ghost" does not exist: it cannot be restarted, so it never rolls out.
    let spec = json!({
        "rotation": {"gracePeriod": "1s", "maxGracePeriod": "8s"},
        "rolloutRestartTargets": [{"kind": "StatefulSet", "name": "ghost"}]
    });
    env.create_key("k", spec).await;
    let old = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();
    env.request_rotation("k", "1").await;
    let rotated_at = Instant::now();
    env.wait_new_key("k", &old).await;
    env.wait_for_event("k", "RolloutRestartFailed").await;
    let failed = notes(&env, "k", "RolloutRestartFailed").await;
    assert!(failed[0].contains("StatefulSet ghost not found"), "{failed:?}");
    let status = key(&env, "k").await.status.unwrap();
    assert_eq!(status.retiring_keys[0].sid, old);
    assert!(status.retiring_keys[0].delete_by.is_some());
    wait_up_to(Duration::from_secs(60), "the old key deleted at maxGracePeriod", || async {
        env.fake.key(&old).is_none().then_some(())
    })
    .await;
    let waited = rotated_at.elapsed();
    assert!(waited >= Duration::from_secs(7), "deleted after {waited:?}, before maxGracePeriod (8s)");
    env.wait_for_event("k", "KeyDeleted").await;
    let deleted = notes(&env, "k", "KeyDeleted").await;
    assert!(deleted.iter().any(|n| n.contains(&old) && n.contains("at its maxGracePeriod")), "{deleted:?}");
    // The restart failure is reported once, not on every poll.
    assert_eq!(notes(&env, "k", "RolloutRestartFailed").await.len(), 1);
    env.stop_operator();
}

#[tokio::test]
async fn every_kind_of_target_is_restarted_and_followed() {
    let env = TestEnv::with_operator("rollout-kinds").await;
    create_deployment(&env, "api", 0).await;
    let stateful_set: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"replicas": 0, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": pod_template("db")}
    }))
    .unwrap();
    let stateful_sets: Api<StatefulSet> = Api::namespaced(env.client.clone(), &env.namespace);
    stateful_sets.create(&PostParams::default(), &stateful_set).await.expect("create StatefulSet");
    // No node: the DaemonSet schedules no Pod, and has rolled out once its controller says so.
    let daemon_set: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": pod_template("agent")}
    }))
    .unwrap();
    let daemon_sets: Api<DaemonSet> = Api::namespaced(env.client.clone(), &env.namespace);
    daemon_sets.create(&PostParams::default(), &daemon_set).await.expect("create DaemonSet");
    let spec = json!({
        "rotation": {"gracePeriod": "2s"},
        "rolloutRestartTargets": [
            {"kind": "Deployment", "name": "api"},
            {"kind": "StatefulSet", "name": "db"},
            {"kind": "DaemonSet", "name": "agent"}
        ]
    });
    env.create_key("k", spec).await;
    let old = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();
    env.request_rotation("k", "1").await;
    env.wait_new_key("k", &old).await;
    wait_until("the old key deleted after its grace period", || async { env.fake.key(&old).is_none().then_some(()) })
        .await;
    let complete = notes(&env, "k", "RolloutComplete").await;
    for target in ["Deployment/api", "StatefulSet/db", "DaemonSet/agent"] {
        assert!(complete.iter().any(|n| n.starts_with(target)), "{target} rolled out: {complete:?}");
    }
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    let api = deployments.get("api").await.unwrap();
    let db = stateful_sets.get("db").await.unwrap();
    let agent = daemon_sets.get("agent").await.unwrap();
    for (name, template) in [("api", &api.spec.template), ("db", &db.spec.template), ("agent", &agent.spec.template)] {
        assert!(template_annotation(template).is_some(), "{name} restarted");
    }
}
