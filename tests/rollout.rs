//! Rotation that waits for the consumers (spec.rolloutRestartTargets), on the real control plane
//! with the real operator binary. This control plane has no node: a workload with replicas
//! never finishes rolling out (its Pods are never scheduled), one with none finishes at once,
//! which is what these tests use. tests/consumers.rs runs real consumers on a node.

use twilio_operator_testkit as support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
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
    // Restarts at once (no --rollout-restart-delay), within the 3 s rollout deadline.
    env.start_operator(&["--rollout-deadline", "3s", "--rollout-restart-delay", "0s"]);
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
    env.start_operator(&["--rollout-deadline", "1s", "--rollout-restart-delay", "0s"]);
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

/// Installs Argo Rollouts' Rollout CRD (tests/fixtures/argo-rollouts) and waits until it serves.
async fn install_argo_rollout_crd(env: &TestEnv) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let path = support::repo_root().join("tests/fixtures/argo-rollouts/rollout-crd.yaml");
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&std::fs::read_to_string(path).expect("the Rollout CRD")).expect("CRD YAML");
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    crds.patch("rollouts.argoproj.io", &PatchParams::apply("twilio-operator-tests").force(), &Patch::Apply(&crd))
        .await
        .expect("apply the Rollout CRD");
    wait_until("the Rollout CRD established", || async {
        let crd = crds.get("rollouts.argoproj.io").await.ok()?;
        let established = crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True");
        established.then_some(())
    })
    .await;
}

fn argo_rollouts(env: &TestEnv) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Rollout".into(),
        plural: "rollouts".into(),
    };
    Api::namespaced_with(env.client.clone(), &env.namespace, &resource)
}

/// Writes a Rollout's status as the Argo Rollouts controller would (no such controller runs on
/// the test control plane): its observed generation (a string there), the restart it finished
/// (status.restartedAt, set once every Pod is newer than spec.restartAt) and its phase.
async fn write_argo_status(rollouts: &Api<DynamicObject>, name: &str, restarted_at: Option<&str>, phase: &str) {
    let rollout = rollouts.get(name).await.expect("the Rollout");
    let generation = rollout.metadata.generation.unwrap_or(1).to_string();
    let status = json!({"status": {
        "observedGeneration": generation, "phase": phase, "restartedAt": restarted_at,
        "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2
    }});
    rollouts
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("write the Rollout's status");
}

#[tokio::test]
async fn an_argo_rollout_is_restarted_through_restart_at_and_the_old_key_waits_until_it_is_healthy() {
    let mut env = TestEnv::new("argo-rollout").await;
    install_argo_rollout_crd(&env).await;
    env.start_operator(&["--rollout-restart-delay", "0s"]);
    let rollouts = argo_rollouts(&env);
    let rollout: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "checkout"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": pod_template("checkout"),
            "strategy": {"canary": {"steps": [{"setWeight": 50}]}}
        }
    }))
    .unwrap();
    rollouts.create(&PostParams::default(), &rollout).await.expect("create the Rollout");
    write_argo_status(&rollouts, "checkout", None, "Healthy").await;
    let spec = json!({
        "rotation": {"gracePeriod": "1s", "maxGracePeriod": "10m"},
        "rolloutRestartTargets": [{"kind": "Rollout", "name": "checkout"}]
    });
    env.create_key("k", spec).await;
    let old = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();
    env.request_rotation("k", "1").await;
    let new_key = env.wait_new_key("k", &old).await;
    let delivered_at: Timestamp = new_key.status.unwrap().key_created_at.unwrap().parse().unwrap();
    let restart_at = wait_until("the Rollout's spec.restartAt set", || async {
        let r = rollouts.get("checkout").await.ok()?;
        r.data["spec"]["restartAt"].as_str().map(str::to_string)
    })
    .await;
    let at: Timestamp = restart_at.parse().unwrap();
    println!("delivered at {delivered_at}, spec.restartAt {restart_at}");
    assert!(at >= delivered_at, "restartAt {at} is after the delivery {delivered_at}");
    let patched = rollouts.get("checkout").await.unwrap();
    let made_for = patched.metadata.annotations.unwrap_or_default();
    assert!(made_for["twilio-operator.dev/restartedFor"].contains("TwilioApiKey k"), "{made_for:?}");
    env.wait_for_event("k", "RolloutRestarted").await;

    // Until its controller reports every Pod replaced and the Rollout healthy, the old key stays.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(env.fake.key(&old).is_some(), "kept: the Rollout has not restarted its Pods");
    let status = key(&env, "k").await.status.unwrap();
    assert!(status.rollout[0].message.as_deref().unwrap_or("").contains("controller"), "{:?}", status.rollout);
    // The controller saw the new spec, but has not replaced every Pod (no status.restartedAt).
    write_argo_status(&rollouts, "checkout", None, "Progressing").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(env.fake.key(&old).is_some(), "kept: Pods older than the restart remain");
    let status = key(&env, "k").await.status.unwrap();
    assert!(status.rollout[0].message.as_deref().unwrap_or("").contains("restartedAt"), "{:?}", status.rollout);
    write_argo_status(&rollouts, "checkout", Some(&restart_at), "Progressing").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(env.fake.key(&old).is_some(), "kept: the Rollout is Progressing");
    let status = key(&env, "k").await.status.unwrap();
    assert!(status.rollout[0].message.as_deref().unwrap_or("").contains("Progressing"), "{:?}", status.rollout);

    write_argo_status(&rollouts, "checkout", Some(&restart_at), "Healthy").await;
    wait_until("the old key deleted", || async { env.fake.key(&old).is_none().then_some(()) }).await;
    env.wait_for_event("k", "KeyDeleted").await;
    let complete = notes(&env, "k", "RolloutComplete").await;
    assert!(complete.iter().any(|n| n.starts_with("Rollout/checkout rolled out")), "{complete:?}");
    let deleted = notes(&env, "k", "KeyDeleted").await;
    assert!(deleted.iter().any(|n| n.contains(&old) && n.contains("once the rollout restart targets had rolled out")));
    env.stop_operator();
}

#[tokio::test]
async fn the_history_lists_the_last_keys_of_a_resource_and_no_more() {
    let env = TestEnv::with_operator("history").await;
    let spec = json!({"rotation": {"gracePeriod": "0s", "historyLimit": 3}});
    env.create_key("k", spec).await;
    let mut sids = vec![env.wait_ready("k").await.status.unwrap().key_sid.unwrap()];
    // historyLimit + 2 rotations.
    for rotation in 1..=5 {
        env.request_rotation("k", &rotation.to_string()).await;
        let previous = sids.last().unwrap().clone();
        let new = env.wait_new_key("k", &previous).await.status.unwrap().key_sid.unwrap();
        wait_until("the old key deleted", || async { env.fake.key(&previous).is_none().then_some(()) }).await;
        sids.push(new);
    }
    let history = wait_until("the last deletion recorded", || async {
        let history = key(&env, "k").await.status?.history;
        history.iter().filter(|e| e.deleted_at.is_some()).count().eq(&2).then_some(history)
    })
    .await;
    for entry in &history {
        println!("{entry:?}");
    }
    let listed: Vec<&str> = history.iter().map(|e| e.sid.as_str()).collect();
    assert_eq!(listed, sids[3..].iter().map(String::as_str).collect::<Vec<_>>(), "the last 3 of {sids:?}");
    for entry in &history[..2] {
        assert_eq!(entry.reason, "RotateAnnotation");
        assert!(entry.retired_at.is_some() && entry.deleted_at.is_some(), "{entry:?}");
        assert_eq!(entry.deleted_because.as_deref(), Some("GracePeriodEnded"));
    }
    let current = &history[2];
    assert_eq!((current.retired_at.as_ref(), current.deleted_at.as_ref()), (None, None), "{current:?}");
}
