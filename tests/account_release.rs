//! Defect 4 of the abuse round (docs/promises.md, promise 7), in a test binary of its own: every
//! operator running reconciles every ClusterTwilioAccount, and an operator that does not watch the
//! namespace of the key in question would let the account go whatever the one that does decides.

use twilio_operator_testkit as support;

use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use serde_json::json;
use support::{TestEnv, gone, wait_up_to};
use twilio_operator::api::ClusterTwilioAccount;

/// Defect 4: a key in a namespace the ClusterTwilioAccount does not allow, naming the account,
/// kept the account (and its credentials Secret) from being deleted, forever. A key that holds a
/// key of the account still holds it, until it is deleted. (One test: a second operator in this
/// binary would release the accounts of this one.)
#[tokio::test]
async fn a_cluster_account_waits_for_the_keys_it_issued_and_no_other() {
    let env = TestEnv::with_operator("hostage").await;
    let accounts: Api<ClusterTwilioAccount> = Api::all(env.client.clone());
    let finalized = |name: String| {
        let accounts = accounts.clone();
        async move {
            wait_up_to(Duration::from_secs(60), "the account's finalizer", || async {
                let account = accounts.get(&name).await.ok()?;
                account.finalizers().iter().any(|f| f == "twilio-operator.dev/cleanup").then_some(())
            })
            .await
        }
    };

    let elsewhere = env.create_cluster_account(json!({"namespaces": ["somewhere-else"]})).await;
    env.create_key("outsider", json!({"accountRef": {"kind": "ClusterTwilioAccount", "name": elsewhere}})).await;
    env.wait_for_condition("outsider", "False", "AccountNotAllowed").await;
    finalized(elsewhere.clone()).await;
    accounts.delete(&elsewhere, &DeleteParams::default()).await.expect("delete the account");
    wait_up_to(Duration::from_secs(60), "the account that allows not the namespace to be gone", || {
        gone(&accounts, &elsewhere)
    })
    .await;

    let here: ClusterTwilioAccount = serde_json::from_value(json!({
        "apiVersion": "twilio-operator.dev/v1alpha1", "kind": "ClusterTwilioAccount",
        "metadata": {"name": format!("{}-here", env.namespace)},
        "spec": {
            "accountSid": support::ACCOUNT_SID,
            "credentialsSecretRef": {"name": "twilio-credentials", "namespace": env.namespace},
            "allowedNamespaces": {"namespaces": [env.namespace]},
        },
    }))
    .unwrap();
    let here = accounts.create(&Default::default(), &here).await.expect("create").name_any();
    env.create_key("user", json!({"accountRef": {"kind": "ClusterTwilioAccount", "name": here}})).await;
    let sid = env.wait_ready("user").await.status.unwrap().key_sid.unwrap();
    finalized(here.clone()).await;
    accounts.delete(&here, &DeleteParams::default()).await.expect("delete the account");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let waiting = accounts.get(&here).await.expect("the account waits for its key");
    let ready = waiting.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason, "InUse", "{}", ready.message);
    env.delete_key("user").await;
    env.wait_gone("user").await;
    assert!(env.fake.key(&sid).is_none(), "the key was deleted with the account's credential");
    wait_up_to(Duration::from_secs(60), "the account that issued the key to be gone", || gone(&accounts, &here)).await;
}
