//! Two operator processes with --leader-elect: only the leader reconciles, a standby takes over
//! when the leader dies, and a clean shutdown releases the lease.

use twilio_operator_testkit as support;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;
use support::{Operator, TestEnv, wait_until};

async fn holder(env: &TestEnv) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.namespace);
    leases.get_opt("twilio-operator").await.ok()??.spec?.holder_identity.filter(|h| !h.is_empty())
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let env = TestEnv::new("leader").await;
    let args = ["--leader-elect", "--leader-election-namespace", env.namespace.as_str()];
    let start =
        |name: &str| Operator::start_with_env(&env.namespace, &env.fake.url(), &args, "info", &[("POD_NAME", name)]);
    let first = start("op-a");
    wait_until("op-a to hold the lease", || async { (holder(&env).await.as_deref() == Some("op-a")).then_some(()) })
        .await;
    let mut second = start("op-b");
    wait_until("op-b to wait for the lease", || async {
        second.output().contains("waiting to become the leader").then_some(())
    })
    .await;

    env.create_key("one", json!({})).await;
    env.wait_ready("one").await;
    assert!(first.output().contains("created Twilio key"), "the leader reconciles");
    assert!(!second.output().contains("created Twilio key"), "the standby does not");
    assert!(!second.output().contains("became the leader"));

    drop(first); // SIGKILL: the lease is not released and expires
    wait_until("op-b to take over", || async { (holder(&env).await.as_deref() == Some("op-b")).then_some(()) }).await;
    env.create_key("two", json!({})).await;
    env.wait_ready("two").await;
    assert!(second.output().contains("created Twilio key"), "the new leader reconciles");
    assert_eq!(env.fake.keys().len(), 2, "one key per resource across the handover");

    let status = second.terminate().expect("terminate op-b");
    assert!(status.success(), "a clean shutdown exits 0: {status:?}");
    assert_eq!(holder(&env).await, None, "a clean shutdown releases the lease");
}
