//! kstatus (sigs.k8s.io/cli-utils/pkg/kstatus, what Flux, kpt and Helm 4's `--wait` use to decide
//! that a resource is done) reads the operator's conditions as meant, through the real library
//! (hack/tools/kstatus): `Current` once Ready, `InProgress` while it works (a transient failure
//! retried), `Failed` when it stalls and a human must act.

use twilio_operator_testkit as support;

use fake_twilio::Faults;
use kube::ResourceExt;
use serde_json::{Value, json};
use support::TestEnv;

/// The kstatus status and message of a resource, as the API server holds it now.
async fn kstatus_of<K>(api: &kube::Api<K>, name: &str) -> (String, String)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object = api.get(name).await.expect("the object");
    let mut value = serde_json::to_value(&object).unwrap();
    // kstatus needs apiVersion and kind, which a typed object may not serialize.
    value["apiVersion"] = Value::String(K::api_version(&()).into_owned());
    value["kind"] = Value::String(K::kind(&()).into_owned());
    let mut answers = support::kstatus(&[value]);
    assert_eq!(answers.len(), 1, "one answer for {}", object.name_any());
    answers.remove(0)
}

#[tokio::test]
async fn kstatus_sees_current_in_progress_and_failed() {
    let env = TestEnv::with_operator("kstatus").await;
    env.create_key("steady", json!({})).await;
    env.wait_ready("steady").await;
    let steady = kstatus_of(&env.keys(), "steady").await;
    println!("kstatus of a Ready key: {steady:?}");
    assert_eq!(steady.0, "Current", "{steady:?}");
    let account = env.accounts().list(&Default::default()).await.unwrap().items[0].name_any();
    let ready_account = kstatus_of(&env.accounts(), &account).await;
    println!("kstatus of a Ready account: {ready_account:?}");
    assert_eq!(ready_account.0, "Current");

    // Twilio answers 429/503 to everything: the new key is retried, Reconciling.
    env.fake.set_faults(Faults { error_rate: 1.0, ..Default::default() });
    env.create_key("busy", json!({})).await;
    env.wait_for_condition("busy", "False", "Retrying").await;
    let busy = kstatus_of(&env.keys(), "busy").await;
    println!("kstatus of a key whose creation is retried: {busy:?}");
    assert_eq!(busy.0, "InProgress", "{busy:?}");
    env.fake.set_faults(Faults::default());
    env.wait_ready("busy").await;
    assert_eq!(kstatus_of(&env.keys(), "busy").await.0, "Current");

    // A label key the Secret cannot carry: Stalled, InvalidSpec.
    env.create_key("stuck", json!({"secret": {"labels": {"bad key!": "x"}}})).await;
    env.wait_for_condition("stuck", "False", "InvalidSpec").await;
    let stuck = kstatus_of(&env.keys(), "stuck").await;
    println!("kstatus of a stalled key: {stuck:?}");
    assert_eq!(stuck.0, "Failed", "{stuck:?}");
    assert!(stuck.1.contains("spec.secret.labels"), "kstatus passes the Stalled message on: {stuck:?}");
}
