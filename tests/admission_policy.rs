//! The chart's optional ValidatingAdmissionPolicies (`admissionPolicy.enabled`): installed with the
//! `helm` CLI, the API server itself refuses a TwilioApiKey that asks for more than its namespace
//! may have (key type, Restricted permissions, accounts, adoption), with the policy's message, and
//! admits what is allowed; namespaces the binding does not select are not affected, and the
//! operator's own metadata writes to a key that a later policy would refuse still go through.

use twilio_operator_testkit as support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{client, control_plane, repo_root, wait_up_to};
use twilio_operator::api::TwilioApiKey;

/// A TwilioApiKey `name` with `spec` (accountRef: the ClusterTwilioAccount `shared` unless set).
fn key(name: &str, spec: Value) -> DynamicObject {
    let mut full = json!({"accountRef": {"kind": "ClusterTwilioAccount", "name": "shared"}});
    for (k, v) in spec.as_object().unwrap() {
        full[k] = v.clone();
    }
    let object = json!({"apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioApiKey",
        "metadata": {"name": name}, "spec": full});
    serde_json::from_value(object).unwrap()
}

fn keys(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &ApiResource::erase::<TwilioApiKey>(&()))
}

/// None when the API server admits the create of `name` with `spec`, or its refusal.
async fn refusal(client: &Client, namespace: &str, name: &str, spec: Value) -> Option<String> {
    match keys(client, namespace).create(&PostParams::default(), &key(name, spec)).await {
        Ok(_) => None,
        Err(kube::Error::Api(status)) => Some(format!("{} {}", status.code, status.message)),
        Err(other) => panic!("create TwilioApiKey {name}: {other}"),
    }
}

async fn labelled_namespace(client: &Client, name: &str, labels: Value) {
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.expect("a namespace");
}

/// `helm install` of the chart as `release` in the namespace of that name, with these values and
/// no CRDs (the control plane has them); returns the kubeconfig it used.
fn install_chart(release: &str, values: Value) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let values_file = scratch.path().join("values.yaml");
    std::fs::write(&values_file, serde_yaml::to_string(&values).unwrap()).unwrap();
    let chart = repo_root().join("charts/twilio-operator");
    let kubeconfig = control_plane().kubeconfig.to_str().unwrap().to_string();
    let (installed, out) = support::helm(&[
        "install",
        release,
        chart.to_str().unwrap(),
        "--namespace",
        release,
        "--kubeconfig",
        &kubeconfig,
        "--set",
        "crds.enabled=false",
        "--values",
        values_file.to_str().unwrap(),
    ]);
    assert!(installed && out.contains("deployed"), "helm install:\n{out}");
    kubeconfig
}

#[tokio::test]
async fn the_chart_policy_refuses_what_a_namespace_may_not_ask_for() {
    let client = client().await;
    let suffix = format!("{:04x}", rand::random::<u16>());
    let sandbox = format!("sandbox-{suffix}");
    let other = format!("other-{suffix}");
    let release = format!("guard-{suffix}");
    labelled_namespace(&client, &sandbox, json!({"tier": format!("sandbox-{suffix}")})).await;
    labelled_namespace(&client, &other, json!({})).await;
    labelled_namespace(&client, &release, json!({})).await;

    // Sandbox namespaces: Restricted keys for messaging only, on the shared account, no adoption.
    let values = json!({"admissionPolicy": {"enabled": true, "tenants": [{
        "name": "sandbox",
        "namespaceSelector": {"matchLabels": {"tier": format!("sandbox-{suffix}")}},
        "keyTypes": ["Restricted"],
        "restrictedPermissionPrefixes": ["/twilio/messaging/"],
        "namespacedAccounts": false,
        "clusterAccounts": ["shared"],
        "anyClusterAccount": false,
        "allowAdoption": false,
    }]}});
    let kubeconfig = install_chart(&release, values);

    let messaging = json!({"keyType": "Restricted", "policy": {"allow": ["/twilio/messaging/messages/create"]}});
    // The policy takes effect once the API server has compiled it: until a forbidden key is refused.
    let standard = wait_up_to(Duration::from_secs(60), "the policy to refuse a Standard key", || async {
        let refused = refusal(&client, &sandbox, "standard", json!({})).await;
        if refused.is_none() {
            keys(&client, &sandbox).delete("standard", &Default::default()).await.expect("delete the admitted key");
        }
        refused
    })
    .await;
    let policy = format!("{release}-twilio-operator-sandbox");
    println!("Standard in {sandbox}: {standard}");
    assert!(standard.starts_with("403 "), "{standard}");
    assert!(standard.contains(&format!("ValidatingAdmissionPolicy '{policy}'")), "{standard}");
    assert!(
        standard.contains(&format!(
            "spec.keyType Standard is not allowed in namespace {sandbox} (policy {policy}): allowed are Restricted"
        )),
        "{standard}"
    );

    assert_eq!(refusal(&client, &sandbox, "allowed", messaging.clone()).await, None, "what the tenant may have");
    for (name, spec, message) in [
        (
            "voice",
            json!({"keyType": "Restricted", "policy": {"allow": ["/twilio/messaging/messages/create", "/twilio/voice/calls/create"]}}),
            "spec.policy.allow may only grant permissions under /twilio/messaging/",
        ),
        (
            "own-account",
            json!({"accountRef": {"kind": "TwilioAccount", "name": "mine"}, "keyType": "Restricted",
                "policy": {"allow": ["/twilio/messaging/messages/create"]}}),
            "spec.accountRef: TwilioAccounts of the namespace are not allowed",
        ),
        (
            "prod-account",
            json!({"accountRef": {"kind": "ClusterTwilioAccount", "name": "prod"}, "keyType": "Restricted",
                "policy": {"allow": ["/twilio/messaging/messages/create"]}}),
            "spec.accountRef: ClusterTwilioAccount prod is not allowed in namespace",
        ),
        (
            "adopting",
            json!({"keyType": "Restricted", "policy": {"allow": ["/twilio/messaging/messages/create"]},
                "secret": {"adopt": true}}),
            "spec.secret.adopt is not allowed in namespace",
        ),
    ] {
        let refused = refusal(&client, &sandbox, name, spec).await.unwrap_or_else(|| panic!("{name} is admitted"));
        println!("{name} in {sandbox}: {refused}");
        assert!(refused.starts_with("403 ") && refused.contains(message), "{name}: {refused}");
    }

    // A spec change is checked too; a metadata change (the operator's finalizer) is not.
    let api = keys(&client, &sandbox);
    let widen = json!({"spec": {"policy": {"allow": ["/twilio/voice/calls/create"]}}});
    match api.patch("allowed", &PatchParams::default(), &Patch::Merge(&widen)).await {
        Err(kube::Error::Api(status)) => {
            assert!(status.message.contains("spec.policy.allow may only grant"), "{status:?}")
        }
        other => panic!("widening the policy of an admitted key is refused: {other:?}"),
    }
    let finalizer = json!({"metadata": {"finalizers": ["twilio-operator.dev/cleanup"]}});
    api.patch("allowed", &PatchParams::default(), &Patch::Merge(&finalizer)).await.expect("a metadata change");
    api.patch("allowed", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .expect("and back");

    // A namespace the binding does not select asks for anything.
    assert_eq!(refusal(&client, &other, "standard", json!({"secret": {"adopt": true}})).await, None);

    let (uninstalled, out) =
        support::helm(&["uninstall", &release, "--namespace", &release, "--kubeconfig", &kubeconfig]);
    assert!(uninstalled, "helm uninstall:\n{out}");
}

#[tokio::test]
async fn a_restricted_key_on_an_account_outside_us1_is_refused_at_admission() {
    let client = client().await;
    let suffix = format!("{:04x}", rand::random::<u16>());
    let team = format!("regions-{suffix}");
    let release = format!("regions-op-{suffix}");
    labelled_namespace(&client, &team, json!({})).await;
    labelled_namespace(&client, &release, json!({})).await;
    // The policy is on by default (restrictedKeysPolicy.enabled).
    let kubeconfig = install_chart(&release, json!({}));
    let account = |name: &str, region: Option<&str>| {
        let mut spec =
            json!({"accountSid": "AC00000000000000000000000000000001", "credentialsSecretRef": {"name": "creds"}});
        if let Some(region) = region {
            spec["region"] = region.into();
        }
        serde_json::from_value::<twilio_operator::api::TwilioAccount>(json!({"metadata": {"name": name}, "spec": spec}))
            .unwrap()
    };
    let accounts: Api<twilio_operator::api::TwilioAccount> = Api::namespaced(client.clone(), &team);
    for (name, region) in [("dublin", Some("ie1")), ("virginia", None), ("explicit", Some("us1"))] {
        accounts.create(&PostParams::default(), &account(name, region)).await.expect("an account");
    }
    let cluster_name = format!("sydney-{suffix}");
    let cluster: twilio_operator::api::ClusterTwilioAccount = serde_json::from_value(json!({
        "metadata": {"name": cluster_name},
        "spec": {"accountSid": "AC00000000000000000000000000000001", "region": "au1",
            "credentialsSecretRef": {"name": "creds", "namespace": team}}
    }))
    .unwrap();
    let clusters: Api<twilio_operator::api::ClusterTwilioAccount> = Api::all(client.clone());
    clusters.create(&PostParams::default(), &cluster).await.expect("a cluster account");

    let restricted = |kind: &str, name: &str| {
        json!({"accountRef": {"kind": kind, "name": name}, "keyType": "Restricted",
            "policy": {"allow": ["/twilio/messaging/messages/create"]}})
    };
    let refused = wait_up_to(Duration::from_secs(60), "the policy to refuse a Restricted key in ie1", || async {
        let refused = refusal(&client, &team, "eu", restricted("TwilioAccount", "dublin")).await;
        if refused.is_none() {
            keys(&client, &team).delete("eu", &Default::default()).await.expect("delete the admitted key");
        }
        refused
    })
    .await;
    println!("Restricted on TwilioAccount dublin (ie1): {refused}");
    assert!(
        refused
            .contains("Restricted keys exist only in Twilio's US1 region, and TwilioAccount dublin is in region ie1"),
        "{refused}"
    );
    let refused = refusal(&client, &team, "au", restricted("ClusterTwilioAccount", &cluster_name))
        .await
        .expect("refused on a ClusterTwilioAccount in au1");
    assert!(refused.contains(&format!("ClusterTwilioAccount {cluster_name} is in region au1")), "{refused}");
    for (name, spec) in [
        ("us-default", restricted("TwilioAccount", "virginia")),
        ("us-explicit", restricted("TwilioAccount", "explicit")),
        ("standard-eu", json!({"accountRef": {"kind": "TwilioAccount", "name": "dublin"}})),
        ("unknown-account", restricted("TwilioAccount", "nowhere")),
    ] {
        assert_eq!(refusal(&client, &team, name, spec).await, None, "{name} is admitted");
    }

    clusters.delete(&cluster_name, &Default::default()).await.expect("delete the cluster account");
    let (uninstalled, out) =
        support::helm(&["uninstall", &release, "--namespace", &release, "--kubeconfig", &kubeconfig]);
    assert!(uninstalled, "helm uninstall:\n{out}");
}
