//! Faults between the operator and the API server that a healthy server does not produce on
//! demand, injected by a proxy in front of the real one: a Secret write carried out but answered
//! with an error, and a Secret deletion that fails after a rotation's status was written.

use twilio_operator_testkit as support;

use std::collections::BTreeSet;

use serde_json::json;
use support::kube_proxy::{FaultMode, KubeProxy};
use support::{TestEnv, control_plane, wait_until};

async fn operator_behind(env: &mut TestEnv, proxy: &KubeProxy) {
    let kubeconfig = proxy.kubeconfig.to_string_lossy().to_string();
    env.operator = Some(support::Operator::start_with_env(
        &env.namespace,
        &env.fake.url(),
        &[],
        "info,twilio_operator=debug",
        &[("KUBECONFIG", &kubeconfig)],
    ));
}

fn creates(env: &TestEnv) -> u64 {
    env.fake.request_counts().get("create_key 201").copied().unwrap_or(0)
}

#[tokio::test]
async fn a_secret_write_carried_out_but_answered_with_an_error_keeps_the_key_it_delivered() {
    let mut env = TestEnv::new("ambiguouswrite").await;
    let proxy = KubeProxy::start(control_plane()).await;
    let secrets = format!("/api/v1/namespaces/{}/secrets", env.namespace);
    // The first write of the delivered Secret, whether created or applied, is carried out and
    // answered with an error.
    proxy.inject("POST", &secrets, FaultMode::CommitThenFail, 1);
    proxy.inject("PATCH", &format!("{secrets}/k"), FaultMode::CommitThenFail, 1);
    operator_behind(&mut env, &proxy).await;

    env.create_key("k", json!({})).await;
    let sid = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();
    assert_eq!(proxy.faults_served(), 1, "the Secret write was answered with an error");
    assert_eq!(creates(&env), 1, "the delivered key was kept, not deleted and replaced");
    let (account, delivered, secret) = env.delivered_pair("k").await;
    assert_eq!(delivered, sid);
    assert!(env.twilio_accepts(&account, &delivered, &secret).await, "the delivered pair works");
}

#[tokio::test]
async fn a_failure_after_a_rotations_status_write_does_not_undo_it() {
    let mut env = TestEnv::new("stalereport").await;
    let proxy = KubeProxy::start(control_plane()).await;
    operator_behind(&mut env, &proxy).await;
    env.create_key("k", json!({"rotation": {"gracePeriod": "2s"}})).await;
    let first = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();

    // Rotate and move the Secret in one change; deleting the old Secret fails once.
    let old_secret = format!("/api/v1/namespaces/{}/secrets/k", env.namespace);
    proxy.inject("DELETE", &old_secret, FaultMode::FailBeforeSending, 1);
    env.patch_spec("k", json!({"secret": {"name": "moved"}, "rotation": {"gracePeriod": "2s", "trigger": "t1"}})).await;
    env.wait_secret_gone("k").await;
    let key = env.wait_ready("k").await;
    let status = key.status.unwrap();
    assert_eq!(proxy.faults_served(), 1, "the old Secret's deletion failed once");
    assert_eq!(creates(&env), 2, "exactly one rotation: the failure did not undo it and cause another");
    let second = status.key_sid.unwrap();
    assert_ne!(second, first);
    assert_eq!(status.secret_name.as_deref(), Some("moved"));
    assert_eq!(env.delivered_pair("moved").await.1, second);
    wait_until("only the current key to remain in Twilio", || async {
        let live: BTreeSet<String> = env.fake.keys().into_iter().map(|k| k.sid).collect();
        (live == BTreeSet::from([second.clone()])).then_some(())
    })
    .await;
}
