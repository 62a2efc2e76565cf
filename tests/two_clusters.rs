//! Two clusters, one Twilio account: the same manifests applied to both (as a GitOps repository
//! rolled out to two clusters does). Each operator keeps its own keys and touches none of the
//! other's, across resyncs, even though every friendly name is the same on both sides.

use twilio_operator_testkit as support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::{ACCOUNT_SID, AUTH_TOKEN, Operator, TestEnv, client_for, start_control_plane, wait_until};
use twilio_operator::api::{TwilioAccount, TwilioApiKey};

const KEYS: [&str; 2] = ["payments", "notifications"];

/// The manifests of the second cluster: the same namespace, credentials, account and keys.
async fn apply_manifests(client: &Client, namespace: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.expect("create namespace");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "twilio-credentials"}, "stringData": {"TWILIO_AUTH_TOKEN": AUTH_TOKEN},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), namespace).create(&PostParams::default(), &secret).await.unwrap();
    let account: TwilioAccount = serde_json::from_value(json!({
        "apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioAccount",
        "metadata": {"name": "main"},
        "spec": {"accountSid": ACCOUNT_SID, "credentialsSecretRef": {"name": "twilio-credentials"}},
    }))
    .unwrap();
    Api::<TwilioAccount>::namespaced(client.clone(), namespace).create(&PostParams::default(), &account).await.unwrap();
    for name in KEYS {
        let key: TwilioApiKey = serde_json::from_value(json!({
            "apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioApiKey",
            "metadata": {"name": name}, "spec": {"accountRef": {"name": "main"}},
        }))
        .unwrap();
        Api::<TwilioApiKey>::namespaced(client.clone(), namespace).create(&PostParams::default(), &key).await.unwrap();
    }
}

/// The key SIDs the resources of one cluster record, once all are Ready.
async fn ready_sids(client: &Client, namespace: &str) -> BTreeSet<String> {
    let keys: Api<TwilioApiKey> = Api::namespaced(client.clone(), namespace);
    wait_until(&format!("every key of {namespace} Ready"), || async {
        let mut sids = BTreeSet::new();
        for name in KEYS {
            let status = keys.get(name).await.ok()?.status?;
            status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())?;
            sids.insert(status.key_sid?);
        }
        Some(sids)
    })
    .await
}

#[tokio::test]
async fn two_clusters_with_the_same_manifests_never_delete_each_others_keys() {
    let resync = 3;
    let mut env = TestEnv::new("twoclusters").await;
    env.start_operator(&["--resync-interval", &format!("{resync}s")]);
    for name in KEYS {
        env.create_key(name, json!({})).await;
    }

    let second = start_control_plane(&format!("{}-second", std::process::id())).expect("second control plane");
    let second_client = client_for(&second).await;
    apply_manifests(&second_client, &env.namespace).await;
    let kubeconfig = second.kubeconfig.to_string_lossy().to_string();
    let _second_operator = Operator::spawn(
        &format!("{}-second-cluster", env.namespace),
        &env.fake.url(),
        &["--watch-namespace", &env.namespace, "--resync-interval", &format!("{resync}s")],
        "info,twilio_operator=debug",
        &[("KUBECONFIG", &kubeconfig)],
    );

    let first_sids = ready_sids(&env.client, &env.namespace).await;
    let second_sids = ready_sids(&second_client, &env.namespace).await;
    assert!(first_sids.is_disjoint(&second_sids), "each cluster has keys of its own");
    let names: BTreeSet<String> = env.fake.keys().into_iter().map(|k| k.friendly_name).collect();
    assert_eq!(names.len(), KEYS.len(), "both clusters use the same friendly names: {names:?}");

    // Five resyncs of each operator, every one of which sweeps for keys an interrupted create left.
    tokio::time::sleep(Duration::from_secs(5 * resync + 2)).await;
    assert_eq!(ready_sids(&env.client, &env.namespace).await, first_sids, "the first cluster kept its keys");
    assert_eq!(ready_sids(&second_client, &env.namespace).await, second_sids, "the second cluster kept its keys");
    let live: BTreeSet<String> = env.fake.keys().into_iter().map(|k| k.sid).collect();
    let expected: BTreeSet<String> = first_sids.union(&second_sids).cloned().collect();
    assert_eq!(live, expected, "no key was deleted by the other cluster, and none leaked");
}
