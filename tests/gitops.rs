//! GitOps diff noise: what Argo CD's server-side diff and Flux's drift detection would show after
//! they applied examples/ and the CRDs. Both apply with server-side apply and diff by a dry-run
//! server-side apply of the same manifests compared with the live object, so the API server's
//! defaults (the CRDs' `default:` fields, and its own defaults of CRDs, Secrets and Namespaces)
//! are in both sides. Here every file of examples/ and crds/ is applied as Argo CD's field manager
//! (`argocd-controller`), the operator reconciles the examples (finalizers, status, Secrets), and
//! then a dry-run apply of each document as the same manager must predict exactly the live
//! object. Flux does the same with its own manager (`kustomize-controller`) on objects it
//! applied itself, so the manager's name changes nothing here. A drifted field must show, so
//! the comparison can fail.

use twilio_operator_testkit as support;

use std::path::PathBuf;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use serde_json::{Value, json};
use support::{Operator, client, ready_sid, repo_root, start_fake_twilio, wait_until};
use twilio_operator::api::TwilioApiKey;

const ARGO_CD: &str = "argocd-controller";
/// The account and token examples/account.yaml names (the demo's fake).
const EXAMPLE_ACCOUNT: &str = "AC11111111111111111111111111111111";
const EXAMPLE_TOKEN: &str = "demo-auth-token";

/// Every YAML document of the files under `dir`, in file-name order, with its file.
fn manifests(dir: &str) -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(repo_root().join(dir)).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc).unwrap();
            if !value.is_null() {
                let name = format!("{dir}/{}", file.file_name().unwrap().to_string_lossy());
                out.push((name, serde_json::to_value(value).unwrap()));
            }
        }
    }
    out
}

/// The API of a manifest's kind, in its namespace.
async fn api_for(client: &Client, manifest: &Value) -> Api<DynamicObject> {
    let (group, version) = match manifest["apiVersion"].as_str().unwrap().split_once('/') {
        Some((group, version)) => (group.to_string(), version.to_string()),
        None => (String::new(), manifest["apiVersion"].as_str().unwrap().to_string()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, manifest["kind"].as_str().unwrap());
    let (resource, capabilities) = pinned_kind(client, &gvk).await.expect("the kind is served");
    match (capabilities.scope, manifest["metadata"]["namespace"].as_str()) {
        (Scope::Namespaced, Some(namespace)) => Api::namespaced_with(client.clone(), namespace, &resource),
        (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &resource),
        (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
    }
}

fn name_of(manifest: &Value) -> &str {
    manifest["metadata"]["name"].as_str().unwrap()
}

/// An object as a diff sees it: without what every write changes (managedFields,
/// resourceVersion, generation, timestamps) and without status, which Argo CD leaves out of the
/// comparison by default and only the operator writes.
fn comparable(object: &DynamicObject) -> Value {
    let mut value = serde_json::to_value(object).unwrap();
    let metadata = value["metadata"].as_object_mut().unwrap();
    for field in ["managedFields", "resourceVersion", "generation", "creationTimestamp"] {
        metadata.remove(field);
    }
    value.as_object_mut().unwrap().remove("status");
    value
}

/// The dry-run apply of `manifest` as `manager` and the live object, read around it until no
/// write came between.
async fn predicted_and_live(api: &Api<DynamicObject>, manifest: &Value, params: &PatchParams) -> (Value, Value) {
    let name = name_of(manifest);
    for _ in 0..10 {
        let before = api.get(name).await.expect("the live object");
        let predicted = api
            .patch(name, params, &Patch::Apply(manifest))
            .await
            .unwrap_or_else(|e| panic!("dry-run apply of {name} as {:?}: {e}", params.field_manager));
        let after = api.get(name).await.expect("the live object");
        if before.resource_version() == after.resource_version() {
            return (comparable(&predicted), comparable(&after));
        }
    }
    panic!("{name} kept changing during the dry run")
}

/// Paths of the fields present in `live` but not in `manifest`: what the API server defaulted
/// (or, outside spec, what someone else wrote).
fn added_fields(manifest: &Value, live: &Value, prefix: &str, out: &mut Vec<String>) {
    if let (Some(wanted), Some(stored)) = (manifest.as_object(), live.as_object()) {
        for (key, value) in stored {
            let path = format!("{prefix}.{key}");
            match wanted.get(key) {
                None => out.push(path),
                Some(inner) => added_fields(inner, value, &path, out),
            }
        }
    }
}

/// The fields in which two objects differ, as paths.
fn differences(a: &Value, b: &Value, prefix: &str, out: &mut Vec<String>) {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            for key in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                let path = format!("{prefix}.{key}");
                differences(a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null), &path, out);
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

#[tokio::test]
async fn applying_the_examples_again_would_change_nothing() {
    let client = client().await;
    let fake = start_fake_twilio(EXAMPLE_ACCOUNT, EXAMPLE_TOKEN).await.expect("start fake Twilio");
    // The CRDs first (a GitOps tool syncing them), then examples/ in file order (the namespace first).
    let mut all = manifests("crds");
    // As they are: every CEL rule included (the API server compiles each and checks its cost).
    all.extend(manifests("examples"));
    let apply = PatchParams::apply(ARGO_CD);
    for (file, manifest) in &all {
        let api = api_for(&client, manifest).await;
        api.patch(name_of(manifest), &apply, &Patch::Apply(manifest))
            .await
            .unwrap_or_else(|e| panic!("server-side apply of {file} ({}): {e}", name_of(manifest)));
    }

    // The operator makes the keys: finalizers, status and Secrets appear beside the manifests.
    let _operator = Operator::start("payments", &fake.url(), &[]);
    let keys: Api<TwilioApiKey> = Api::namespaced(client.clone(), "payments");
    for (_, manifest) in all.iter().filter(|(_, m)| m["kind"] == "TwilioApiKey") {
        let name = name_of(manifest);
        wait_until(&format!("TwilioApiKey {name} Ready"), || async {
            ready_sid(&keys.get(name).await.ok()?).map(|_| ())
        })
        .await;
    }

    // Flux and Helm 4 wait with kstatus: every example, as the API server holds it now, is Current.
    let mut live = Vec::new();
    for (_, manifest) in &all {
        let object = api_for(&client, manifest).await.get(name_of(manifest)).await.expect("the live object");
        live.push(serde_json::to_value(&object).unwrap());
    }
    for ((file, manifest), (status, message)) in all.iter().zip(support::kstatus(&live)) {
        println!("kstatus {file} {} {}: {status} {message}", manifest["kind"], name_of(manifest));
        assert_eq!(status, "Current", "{file}: {} {} is {status}: {message}", manifest["kind"], name_of(manifest));
    }

    // Not forced: a conflict (the operator owning a field the manifests set) would fail too.
    let dry_run = PatchParams::apply(ARGO_CD).dry_run();
    let mut defaulted = Vec::new();
    for (file, manifest) in &all {
        let api = api_for(&client, manifest).await;
        let (predicted, live) = predicted_and_live(&api, manifest, &dry_run).await;
        let mut changed = Vec::new();
        differences(&predicted, &live, "", &mut changed);
        assert!(changed.is_empty(), "{file}: a dry-run apply of {} would change {changed:?}", name_of(manifest));
        if file.starts_with("examples/") {
            let mut added = Vec::new();
            added_fields(&manifest["spec"], &live["spec"], &format!("{}.spec", name_of(manifest)), &mut added);
            defaulted.extend(added);
        }
    }
    // The comparison covered the CRDs' defaults: fields the examples leave out are in the live
    // objects (and so in both sides of the diff).
    println!("defaulted by the API server: {defaulted:#?}");
    for field in [
        "payments-api.spec.keyType",
        "payments-api.spec.deletionPolicy",
        "payments-api.spec.revoked",
        "payments-api.spec.secret.keys",
        "payments-api.spec.accountRef.kind",
        "rotating-api.spec.secret",
        "main.spec.credentialsSecretRef.authTokenKey",
    ] {
        assert!(defaulted.iter().any(|f| f == field), "{field} is defaulted and compared; defaulted: {defaulted:?}");
    }

    // A drifted field shows: someone edits rotating-api's trigger outside Git; the dry-run apply
    // (forced, as Argo CD syncs) predicts the value of Git, which differs from the live one.
    let (_, rotating) = all.iter().find(|(_, m)| m["kind"] == "TwilioApiKey" && name_of(m) == "rotating-api").unwrap();
    let edit = PatchParams { field_manager: Some("kubectl-edit".into()), ..Default::default() };
    keys.patch("rotating-api", &edit, &Patch::Merge(json!({"spec": {"rotation": {"trigger": "edited"}}})))
        .await
        .expect("edit the trigger");
    let api = api_for(&client, rotating).await;
    let (predicted, live) = predicted_and_live(&api, rotating, &PatchParams::apply(ARGO_CD).dry_run().force()).await;
    let mut changed = Vec::new();
    differences(&predicted, &live, "", &mut changed);
    assert_eq!(changed, [".spec.rotation.trigger"], "the drifted field, and only it, shows");
}
