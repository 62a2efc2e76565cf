//! `helm upgrade` from the previous chart version updates the CRDs, keeps the resources, and
//! `helm uninstall` then leaves both in place, on a control plane of this test's own (the test
//! deletes and recreates CRDs, which the other tests of a shared control plane rely on).
//!
//! The previous version is chart 0.1.0's layout, made from today's chart: the CRDs in its crds/
//! directory (which Helm installs on the first install, without ownership metadata, and never
//! upgrades), no templates/crds.yaml, version 0.1.0, and the TwilioApiKey CRD one field short
//! (spec.friendlyName), so that the upgrade has a schema change to bring, and no TwilioSubaccount
//! CRD (chart 0.1.0 had none), so that the upgrade has a CRD to add. The CRDs of chart 0.1.0
//! itself were today's, so a faithful copy of it would leave nothing to check.

use twilio_operator_testkit as support;

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use serde_yaml::Value;
use support::{create_key, create_namespace, repo_root, start_control_plane, wait_until};
use twilio_operator::api::TwilioApiKey;

const KEYS_CRD: &str = "twilioapikeys.twilio-operator.dev";
/// The CRD chart 0.1.0 did not have: the upgrade brings it.
const NEW_CRD: &str = "twiliosubaccounts.twilio-operator.dev";
const CRDS: [&str; 4] =
    [KEYS_CRD, "twilioaccounts.twilio-operator.dev", "clustertwilioaccounts.twilio-operator.dev", NEW_CRD];

/// helm with `args`: whether it succeeded, and what it printed.
fn helm(args: &[&str]) -> (bool, String) {
    let (succeeded, text) = support::helm(args);
    println!("helm {args:?}:\n{text}");
    (succeeded, text)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The spec properties of a TwilioApiKey CRD document.
fn spec_properties(crd: &mut Value) -> &mut serde_yaml::Mapping {
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        .as_mapping_mut()
        .expect("the TwilioApiKey spec has properties")
}

/// Chart 0.1.0's layout, from today's chart, with spec.friendlyName taken out of the key CRD.
fn previous_chart(dir: &Path) -> PathBuf {
    let chart = dir.join("twilio-operator");
    copy_dir(&repo_root().join("charts/twilio-operator"), &chart);
    std::fs::remove_file(chart.join("templates/crds.yaml")).unwrap();
    std::fs::create_dir(chart.join("crds")).unwrap();
    for entry in std::fs::read_dir(chart.join("files/crds")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() == format!("{NEW_CRD}.yaml").as_str() {
            continue;
        }
        let mut text = std::fs::read_to_string(&path).unwrap();
        if path.file_name().unwrap() == format!("{KEYS_CRD}.yaml").as_str() {
            let mut crd: Value = serde_yaml::from_str(&text).unwrap();
            assert!(spec_properties(&mut crd).remove("friendlyName").is_some(), "today's CRD has spec.friendlyName");
            let spec_schema = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
            if let Some(rules) = spec_schema.get_mut("x-kubernetes-validations").and_then(|r| r.as_sequence_mut()) {
                rules.retain(|rule| !rule["rule"].as_str().unwrap_or_default().contains("friendlyName"));
            }
            text = serde_yaml::to_string(&crd).unwrap();
        }
        std::fs::write(chart.join("crds").join(path.file_name().unwrap()), text).unwrap();
    }
    std::fs::remove_dir_all(chart.join("files/crds")).unwrap();
    let meta = std::fs::read_to_string(chart.join("Chart.yaml")).unwrap();
    assert!(meta.contains("\nversion: 0.2.0\n"), "today's chart is 0.2.0 (update this test when it moves on)");
    std::fs::write(chart.join("Chart.yaml"), meta.replace("\nversion: 0.2.0\n", "\nversion: 0.1.0\n")).unwrap();
    chart
}

fn has_friendly_name(crd: &CustomResourceDefinition) -> bool {
    let schema = crd.spec.versions[0].schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).unwrap();
    let spec = &schema.properties.as_ref().unwrap()["spec"];
    spec.properties.as_ref().unwrap().contains_key("friendlyName")
}

#[tokio::test]
async fn helm_upgrade_from_the_previous_chart_updates_the_crds_and_keeps_the_keys() {
    let plane = start_control_plane(&format!("chart-upgrade-{}", std::process::id())).expect("a control plane");
    let client = plane.client().await.expect("a client");
    let kubeconfig = plane.kubeconfig.to_str().unwrap().to_string();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    // The control plane starts with today's CRDs; a cluster that never had the chart has none.
    for name in CRDS {
        crds.delete(name, &Default::default()).await.expect("delete a CRD");
    }
    for name in CRDS {
        // Seen on 1.37 right after the API server started: its CRD finalizer failed once with
        // "storage is (re)initializing" and did not try again until the CRD changed. A label
        // change while waiting wakes it.
        let mut nudges = 0;
        wait_until(&format!("CRD {name} gone"), || {
            nudges += 1;
            let nudge = json!({"metadata": {"labels": {"twilio-operator.dev/test-nudge": nudges.to_string()}}});
            let crds = crds.clone();
            async move {
                if crds.get_opt(name).await.ok()?.is_none() {
                    return Some(());
                }
                let _ = crds.patch(name, &PatchParams::default(), &Patch::Merge(&nudge)).await;
                None
            }
        })
        .await;
    }

    let scratch = tempfile::tempdir().unwrap();
    let previous = previous_chart(scratch.path());
    let previous = previous.to_str().unwrap();
    let current = repo_root().join("charts/twilio-operator");
    let current = current.to_str().unwrap();
    create_namespace(&client, "twilio-operator").await.expect("the release namespace");
    let release = ["--namespace", "twilio-operator", "--kubeconfig", &kubeconfig];

    // Chart 0.1.0: Helm creates the CRDs from crds/, without ownership metadata.
    let (ok, out) = helm(&[&["install", "twilio-operator", previous][..], &release].concat());
    assert!(ok && out.contains("deployed"), "the previous chart installs:\n{out}");
    let key_crd = wait_until("the old TwilioApiKey CRD", || async { crds.get_opt(KEYS_CRD).await.ok()? }).await;
    assert!(!has_friendly_name(&key_crd), "the previous chart's CRD lacks spec.friendlyName");
    assert!(!key_crd.metadata.labels.unwrap_or_default().contains_key("app.kubernetes.io/managed-by"));
    assert!(crds.get_opt(NEW_CRD).await.unwrap().is_none(), "chart 0.1.0 had no TwilioSubaccount CRD");

    // A key made under the old schema: the API server prunes the field it does not know.
    create_namespace(&client, "team").await.expect("a team namespace");
    let keys: Api<TwilioApiKey> = Api::namespaced(client.clone(), "team");
    let key = wait_until("a TwilioApiKey under the old CRD", || async {
        create_key(&client, "team", "survivor", json!({"friendlyName": "before-upgrade"})).await.ok()
    })
    .await;
    assert_eq!(key.spec.friendly_name, None, "the old schema prunes spec.friendlyName");
    let uid = key.metadata.uid.clone().unwrap();

    // Without --take-ownership, Helm refuses to adopt CRDs it did not create, and changes nothing.
    let (ok, out) = helm(&[&["upgrade", "twilio-operator", current][..], &release].concat());
    assert!(!ok, "the upgrade without --take-ownership fails:\n{out}");
    assert!(out.contains("invalid ownership metadata") || out.contains("cannot be imported"), "{out}");
    assert!(!has_friendly_name(&crds.get(KEYS_CRD).await.unwrap()), "a refused upgrade leaves the CRD");

    // With it, the CRDs become the release's and get today's schema, and the new one is made.
    let (ok, out) = helm(&[&["upgrade", "twilio-operator", current, "--take-ownership"][..], &release].concat());
    assert!(ok && out.contains("deployed"), "the upgrade with --take-ownership succeeds:\n{out}");
    for name in CRDS {
        let crd = crds.get(name).await.unwrap();
        let labels = crd.metadata.labels.clone().unwrap_or_default();
        let annotations = crd.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(labels.get("app.kubernetes.io/managed-by").map(String::as_str), Some("Helm"), "{name}");
        assert_eq!(annotations.get("meta.helm.sh/release-name").map(String::as_str), Some("twilio-operator"));
        assert_eq!(annotations.get("helm.sh/resource-policy").map(String::as_str), Some("keep"), "{name}");
    }
    assert!(has_friendly_name(&crds.get(KEYS_CRD).await.unwrap()), "the upgrade brought spec.friendlyName");

    // The key survived, and the new field is now kept.
    let key = keys.get("survivor").await.expect("the TwilioApiKey survived the upgrade");
    assert_eq!(key.metadata.uid.as_deref(), Some(uid.as_str()), "the same object");
    let patch = json!({"spec": {"friendlyName": "after-upgrade"}});
    wait_until("spec.friendlyName kept under the new schema", || async {
        let key = keys.patch("survivor", &PatchParams::default(), &Patch::Merge(&patch)).await.ok()?;
        (key.spec.friendly_name.as_deref() == Some("after-upgrade")).then_some(())
    })
    .await;

    // helm uninstall keeps the CRDs (helm.sh/resource-policy: keep), and so the key.
    let (ok, out) =
        helm(&["uninstall", "twilio-operator", "--namespace", "twilio-operator", "--kubeconfig", &kubeconfig]);
    assert!(ok, "uninstall:\n{out}");
    assert!(out.contains("kept due to the resource policy"), "Helm says it kept the CRDs:\n{out}");
    for name in CRDS {
        let crd = crds.get_opt(name).await.unwrap();
        assert!(crd.is_some_and(|c| c.metadata.deletion_timestamp.is_none()), "{name} kept after uninstall");
    }
    let key = keys.get("survivor").await.expect("the TwilioApiKey survived the uninstall");
    assert_eq!(key.metadata.uid.as_deref(), Some(uid.as_str()));
    plane.stop(false).expect("stop the control plane");
}
