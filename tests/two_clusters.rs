//! Two clusters, one Twilio account: the same manifests applied to both (as a GitOps repository
//! rolled out to two clusters does). Each operator keeps its own keys and touches none of the
//! other's, across resyncs, even though every friendly name is the same on both sides.

use twilio_operator_testkit as support;

use std::collections::BTreeSet;
use std::time::Duration;

use kube::Client;
use kube::api::Api;
use serde_json::json;
use support::{
    ACCOUNT_SID, AUTH_TOKEN, Operator, TestEnv, create_key, ready_sid, setup_namespace, start_control_plane, wait_until,
};
use twilio_operator::api::TwilioApiKey;

const KEYS: [&str; 2] = ["payments", "notifications"];

/// The manifests of the second cluster: the same namespace, credentials, account and keys.
async fn apply_manifests(client: &Client, namespace: &str) {
    setup_namespace(client, namespace, ACCOUNT_SID, AUTH_TOKEN).await.expect("set up the namespace");
    for name in KEYS {
        create_key(client, namespace, name, json!({})).await.expect("create TwilioApiKey");
    }
}

/// The key SIDs the resources of one cluster record, once all are Ready.
async fn ready_sids(client: &Client, namespace: &str) -> BTreeSet<String> {
    let keys: Api<TwilioApiKey> = Api::namespaced(client.clone(), namespace);
    wait_until(&format!("every key of {namespace} Ready"), || async {
        let mut sids = BTreeSet::new();
        for name in KEYS {
            sids.insert(ready_sid(&keys.get(name).await.ok()?)?.to_owned());
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
    let second_client = second.client().await.expect("a client of the second control plane");
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
