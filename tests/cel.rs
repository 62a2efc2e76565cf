//! The CRDs' CEL rules (`x-kubernetes-validations`) as the API server enforces them: every rule
//! refuses a spec that breaks it and admits one that keeps it, at admission (a server-side
//! dry-run create, so nothing is stored), on the Kubernetes the suite runs (1.37, and 1.33 in the
//! compatibility run). The CRDs the control plane was started with carry every rule, so the
//! server accepted them within its CEL cost budget; a CRD whose rule does not compile or costs
//! too much is refused (shown below with a copy of the key CRD in a group of its own).

use twilio_operator_testkit as support;

use std::collections::BTreeSet;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::{client, repo_root};
use twilio_operator::api::{TwilioAccount, TwilioApiKey, TwilioSubaccount};

fn crd(file: &str) -> Value {
    let path = repo_root().join("crds").join(file);
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn key_schema() -> Value {
    crd("twilioapikeys.twilio-operator.dev.yaml")["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// A TwilioApiKey as the API server sees it after defaulting, with `spec` merged in.
fn key(spec: Value) -> Value {
    let mut full = json!({
        "accountRef": {"name": "prod", "kind": "TwilioAccount"},
        "keyType": "Standard",
        "secret": {"keys": {"accountSid": "TWILIO_ACCOUNT_SID", "apiKeySid": "TWILIO_API_KEY", "apiKeySecret": "TWILIO_API_SECRET"}},
        "revoked": false, "suspend": false, "deletionPolicy": "Delete",
    });
    for (k, v) in spec.as_object().unwrap() {
        full[k] = v.clone();
    }
    json!({"apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioApiKey", "metadata": {"name": "k"}, "spec": full})
}

/// What the API server answers a dry-run create of `object` in the namespace `default`: None when
/// it admits it, or its message.
async fn rejection_by(client: &Client, object: &Value) -> Option<String> {
    rejection_of::<TwilioApiKey>(client, object).await
}

/// Like [`rejection_by`], for an object of kind `K`.
async fn rejection_of<K: kube::Resource<DynamicType = ()>>(client: &Client, object: &Value) -> Option<String> {
    let resource = ApiResource::erase::<K>(&());
    let keys: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    let object: DynamicObject = serde_json::from_value(object.clone()).unwrap();
    let dry_run = PostParams { dry_run: true, ..Default::default() };
    match keys.create(&dry_run, &object).await {
        Ok(_) => None,
        Err(kube::Error::Api(status)) if status.code == 422 => Some(status.message),
        Err(other) => panic!("dry-run create: {other}"),
    }
}

async fn rejection(object: Value) -> Option<String> {
    rejection_by(&client().await, &object).await
}

#[tokio::test]
async fn policy_is_required_for_restricted_keys_and_forbidden_otherwise() {
    assert_eq!(rejection(key(json!({}))).await, None, "a plain Standard key is admitted");
    let restricted = key(json!({"keyType": "Restricted", "policy": {"allow": ["/twilio/messaging/messages/create"]}}));
    assert_eq!(rejection(restricted).await, None);
    let missing =
        rejection(key(json!({"keyType": "Restricted"}))).await.expect("Restricted without policy is rejected");
    assert!(missing.contains("spec.policy is required"), "{missing}");
    let forbidden =
        rejection(key(json!({"policy": {"allow": ["/twilio/x"]}}))).await.expect("Standard with policy is rejected");
    assert!(forbidden.contains("spec.policy"), "{forbidden}");
}

#[tokio::test]
async fn secret_data_keys_must_differ() {
    let same = key(json!({"secret": {"keys": {"accountSid": "X", "apiKeySid": "X", "apiKeySecret": "Y"}}}));
    let message = rejection(same).await.expect("duplicate data keys are rejected");
    assert!(message.contains("three different data keys"), "{message}");
}

async fn rotation(rotation: Value) -> Option<String> {
    rejection(key(json!({"rotation": rotation}))).await
}

async fn refused_with(object: Value, message: &str) {
    let rejection = rejection(object.clone()).await.unwrap_or_else(|| panic!("{object} is admitted"));
    assert!(rejection.contains(message), "{object}: {rejection}");
}

#[tokio::test]
async fn grace_periods_are_at_most_720h() {
    for good in ["0s", "10m", "720h", "719h60m", "1.5h"] {
        assert_eq!(rotation(json!({"gracePeriod": good})).await, None, "{good}");
    }
    assert_eq!(rotation(json!({})).await, None, "the default grace period");
    for bad in ["720h1ms", "721h", "100000000h"] {
        refused_with(key(json!({"rotation": {"gracePeriod": bad}})), "spec.rotation.gracePeriod must be at most 720h")
            .await;
    }
}

#[tokio::test]
async fn intervals_are_between_a_minute_and_ten_years_and_at_least_the_grace_period() {
    for (interval, grace) in [("10m", "10m"), ("1m", "0s"), ("1m", "1m"), ("720h", "720h"), ("87600h", "10m")] {
        assert_eq!(rotation(json!({"interval": interval, "gracePeriod": grace})).await, None, "{interval} {grace}");
    }
    assert_eq!(rotation(json!({"interval": "10m"})).await, None, "the default 10m grace period");
    for interval in ["0s", "1s", "59.999s", "87600h1s", "100000000h"] {
        let object = key(json!({"rotation": {"interval": interval, "gracePeriod": "0s"}}));
        refused_with(object, "spec.rotation.interval must be between 1m and 87600h").await;
    }
    let shorter = "spec.rotation.interval must be at least spec.rotation.gracePeriod";
    refused_with(key(json!({"rotation": {"interval": "5m", "gracePeriod": "10m"}})), shorter).await;
    refused_with(key(json!({"rotation": {"interval": "24h", "gracePeriod": "720h"}})), shorter).await;
    refused_with(key(json!({"rotation": {"interval": "9m"}})), shorter).await;
}

/// The CEL rules and `plan::validate` (which the operator applies where CEL is not enforced)
/// draw the same lines.
#[tokio::test]
async fn duration_rules_agree_with_the_operators_validation() {
    let samples =
        ["0s", "1ms", "59s", "1m", "9m59s", "10m", "1h", "1.5h", "720h", "720h1ms", "721h", "87600h", "87601h"];
    for interval in samples.iter().map(Some).chain([None]) {
        for grace in samples {
            let mut rotation = json!({"gracePeriod": grace});
            if let Some(interval) = interval {
                rotation["interval"] = json!(interval);
            }
            rotation_rules_agree(rotation).await;
        }
    }
}

/// The operator's validation and the CRD's CEL rules accept and refuse this spec.rotation alike.
async fn rotation_rules_agree(rotation: Value) {
    let spec = key(json!({"rotation": rotation}))["spec"].clone();
    let spec: twilio_operator::api::TwilioApiKeySpec = serde_json::from_value(spec).unwrap();
    let mut resource = twilio_operator::api::TwilioApiKey::new("k", spec);
    resource.metadata.namespace = Some("ns".into());
    let operator = twilio_operator::keys::validate::validate(&resource);
    let cel = rejection(key(json!({"rotation": rotation}))).await;
    assert_eq!(operator.is_ok(), cel.is_none(), "{rotation}: operator {operator:?}, CEL {cel:?}");
}

#[tokio::test]
async fn max_grace_period_rules_agree_with_the_operators_validation() {
    let samples = ["0s", "1m", "9m59s", "10m", "1h", "24h", "720h", "720h1ms", "721h"];
    for max in samples {
        for grace in samples.iter().map(Some).chain([None]) {
            let mut rotation = json!({"maxGracePeriod": max});
            if let Some(grace) = grace {
                rotation["gracePeriod"] = json!(grace);
            }
            rotation_rules_agree(rotation).await;
        }
    }
}

#[tokio::test]
async fn the_pending_friendly_name_prefix_is_reserved() {
    let prefix = twilio_operator::api::PENDING_FRIENDLY_NAME_PREFIX;
    refused_with(key(json!({"friendlyName": format!("{prefix}0b5e")})), "spec.friendlyName must not start with").await;
    assert_eq!(rejection(key(json!({"friendlyName": format!("mine {prefix}")}))).await, None);
    assert_eq!(rejection(key(json!({"friendlyName": "twilio-operator:pending"}))).await, None);
}

#[tokio::test]
async fn the_operators_secret_labels_and_annotations_are_reserved() {
    let secret = |labels: Value, annotations: Value| {
        key(json!({"secret": {
            "keys": {"accountSid": "TWILIO_ACCOUNT_SID", "apiKeySid": "TWILIO_API_KEY", "apiKeySecret": "TWILIO_API_SECRET"},
            "labels": labels,
            "annotations": annotations,
        }}))
    };
    let labels_message = "spec.secret.labels must not set";
    assert_eq!(rejection(secret(json!({"team": "payments", "sub.twilio-operator.dev/x": "y"}), json!({}))).await, None);
    refused_with(secret(json!({"app.kubernetes.io/managed-by": "me"}), json!({})), labels_message).await;
    refused_with(secret(json!({"team": "a", "twilio-operator.dev/key-sid": "SK1"}), json!({})), labels_message).await;
    let annotations_message = "spec.secret.annotations must not set";
    assert_eq!(
        rejection(secret(json!({}), json!({"app.kubernetes.io/managed-by": "only the label is reserved"}))).await,
        None
    );
    refused_with(secret(json!({}), json!({"twilio-operator.dev/template": "x"})), annotations_message).await;
}

/// The schema's bounds, which also bound the rules' cost (a string of at most 32 characters, a
/// map of at most 64 entries), and its patterns, enforced by the API server.
#[tokio::test]
async fn the_schema_bounds_and_patterns_hold_at_the_api_server() {
    let schema = key_schema();
    let spec = &schema["properties"]["spec"]["properties"];
    let rotation = &spec["rotation"]["properties"];
    for field in ["interval", "gracePeriod", "maxGracePeriod"] {
        assert_eq!(rotation[field]["maxLength"], 32, "{field}");
    }
    assert_eq!(rotation["trigger"]["maxLength"], 253);
    assert_eq!(spec["policy"]["properties"]["allow"]["items"]["maxLength"], 256);
    let secret = &spec["secret"]["properties"];
    assert_eq!(secret["labels"]["maxProperties"], 64);
    assert_eq!(secret["annotations"]["maxProperties"], 64);
    assert_eq!(secret["labels"]["additionalProperties"]["maxLength"], 63);

    let client = client().await;
    let named = |name: &str| key(json!({"secret": {"name": name}}));
    for good in ["a", "payments-twilio", "a.b-c.d0"] {
        assert_eq!(rejection_by(&client, &named(good)).await, None, "{good}");
    }
    for bad in ["Payments", "-a", "a-", "a..b", ".a", "a_b", "a/b"] {
        let message = rejection_by(&client, &named(bad)).await.unwrap_or_else(|| panic!("{bad} is admitted"));
        assert!(message.contains("spec.secret.name"), "{bad}: {message}");
    }
    let labelled = |value: &str| key(json!({"secret": {"labels": {"team": value}}}));
    for good in ["", "a", "A-b_c.9"] {
        assert_eq!(rejection_by(&client, &labelled(good)).await, None, "{good:?}");
    }
    for bad in ["-a", "a-", "a b", "é"] {
        let message = rejection_by(&client, &labelled(bad)).await.unwrap_or_else(|| panic!("{bad} is admitted"));
        assert!(message.contains("spec.secret.labels"), "{bad}: {message}");
    }
    let long = "1".repeat(33) + "s";
    let message = rejection_by(&client, &key(json!({"rotation": {"interval": long}}))).await.expect("too long");
    assert!(message.contains("spec.rotation.interval") && message.contains("32"), "{message}");
}

/// Every rule of every CRD, each broken by one spec: the API server refuses it with the rule's
/// message. The list must name every rule the CRDs carry, so a new rule needs a case here.
#[tokio::test]
async fn targets_name_a_workload_or_select_them_and_windows_are_clock_times() {
    let targets = |t: Value| key(json!({"rolloutRestartTargets": t}));
    assert_eq!(rejection(targets(json!([{"kind": "Deployment", "name": "web"}]))).await, None);
    let selected = json!([{"kind": "Rollout", "selector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["api"]}]}}]);
    assert_eq!(rejection(targets(selected)).await, None, "a Rollout selected by labels");
    refused_with(targets(json!([{"kind": "Deployment"}])), "either name").await;
    refused_with(targets(json!([{"kind": "CronJob", "name": "x"}])), "Unsupported value").await;
    let window = |w: Value| key(json!({"rotation": {"interval": "720h", "windows": [w]}}));
    let berlin = json!({"days": ["Sat", "Sun"], "start": "22:00", "end": "02:00", "timeZone": "Europe/Berlin"});
    assert_eq!(rejection(window(berlin)).await, None);
    refused_with(window(json!({"start": "24:00", "end": "02:00"})), "spec.rotation.windows[0].start").await;
    refused_with(window(json!({"start": "2:00", "end": "03:00"})), "should match").await;
    refused_with(window(json!({"days": ["Sat", "Sat"], "start": "02:00", "end": "03:00"})), "Duplicate value").await;
    refused_with(window(json!({"days": ["Saturday"], "start": "02:00", "end": "03:00"})), "Unsupported value").await;
    refused_with(key(json!({"rotation": {"historyLimit": 21}})), "spec.rotation.historyLimit").await;
    assert_eq!(rejection(key(json!({"rotation": {"historyLimit": 0}}))).await, None, "no history");
}

#[tokio::test]
async fn every_cel_rule_refuses_at_the_api_server() {
    let pending = twilio_operator::api::PENDING_FRIENDLY_NAME_PREFIX;
    let cases = [
        (json!({"rotation": {"gracePeriod": "721h"}}), "spec.rotation.gracePeriod must be at most 720h"),
        (
            json!({"rotation": {"interval": "30s", "gracePeriod": "0s"}}),
            "spec.rotation.interval must be between 1m and 87600h",
        ),
        (
            json!({"rotation": {"interval": "5m"}}),
            "spec.rotation.interval must be at least spec.rotation.gracePeriod (default 10m)",
        ),
        (
            json!({"rotation": {"maxGracePeriod": "721h", "gracePeriod": "1h"}}),
            "spec.rotation.maxGracePeriod must be at most 720h",
        ),
        (
            json!({"rotation": {"maxGracePeriod": "5m"}}),
            "spec.rotation.maxGracePeriod must be at least spec.rotation.gracePeriod (default 10m)",
        ),
        (
            json!({"secret": {"labels": {"app.kubernetes.io/managed-by": "me"}}}),
            "spec.secret.labels must not set app.kubernetes.io/managed-by or keys under twilio-operator.dev/, which the operator writes itself",
        ),
        (
            json!({"secret": {"annotations": {"twilio-operator.dev/key-sid": "SK1"}}}),
            "spec.secret.annotations must not set keys under twilio-operator.dev/, which the operator writes itself",
        ),
        (
            json!({"keyType": "Restricted"}),
            "spec.policy is required when spec.keyType is Restricted, and forbidden otherwise",
        ),
        (
            json!({"secret": {"keys": {"accountSid": "A", "apiKeySid": "A", "apiKeySecret": "B"}}}),
            "spec.secret.keys must name three different data keys",
        ),
        (
            json!({"rolloutRestartTargets": [{"kind": "Deployment", "name": "web", "selector": {"matchLabels": {"a": "b"}}}]}),
            "a rolloutRestartTargets entry sets either name (one workload) or selector (the workloads whose labels match), not both",
        ),
        (
            json!({"friendlyName": format!("{pending}x")}),
            "spec.friendlyName must not start with \"twilio-operator:pending:\", which the operator reserves for keys it has not recorded yet",
        ),
    ];
    let client = client().await;
    for (spec, message) in &cases {
        let refused = rejection_by(&client, &key(spec.clone())).await.unwrap_or_else(|| panic!("{spec} is admitted"));
        println!("{spec}: {refused}");
        assert!(refused.contains(message), "{spec}: refused with {refused:?}, not {message:?}");
    }
    // The account's auth token rotation.
    let account = |rotation: Value| {
        json!({"apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioAccount", "metadata": {"name": "a"},
               "spec": {"accountSid": format!("AC{}", "0".repeat(32)), "credentialsSecretRef": {"name": "c"},
                        "credentialRotation": rotation}})
    };
    let account_cases = [
        (json!({"interval": "30m"}), "spec.credentialRotation.interval must be between 1h and 87600h"),
        (json!({"gracePeriod": "721h"}), "spec.credentialRotation.gracePeriod must be at most 720h"),
    ];
    assert_eq!(
        rejection_of::<TwilioAccount>(&client, &account(json!({"interval": "1h", "gracePeriod": "0s"}))).await,
        None
    );
    for (rotation, message) in &account_cases {
        let refused = rejection_of::<TwilioAccount>(&client, &account(rotation.clone())).await;
        let refused = refused.unwrap_or_else(|| panic!("{rotation} is admitted"));
        assert!(refused.contains(message), "{rotation}: refused with {refused:?}, not {message:?}");
    }
    // A TwilioSubaccount's parent, Secret and account cannot change once made.
    let subaccounts: Api<TwilioSubaccount> = Api::namespaced(client.clone(), "default");
    let name = format!("immutable-{:04x}", rand::random::<u16>());
    let sub: TwilioSubaccount = serde_json::from_value(json!({
        "apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioSubaccount", "metadata": {"name": name},
        "spec": {"parentAccountRef": {"name": "parent"}, "secretName": "s", "accountName": "a"},
    }))
    .unwrap();
    subaccounts.create(&PostParams::default(), &sub).await.expect("create a TwilioSubaccount");
    let sub_cases = [
        (json!({"parentAccountRef": {"name": "other"}}), "spec.parentAccountRef is immutable"),
        (json!({"secretName": "other"}), "spec.secretName is immutable"),
        (json!({"accountName": "other"}), "spec.accountName is immutable"),
    ];
    for (spec, message) in &sub_cases {
        let patch = kube::api::Patch::Merge(json!({"spec": spec}));
        match subaccounts.patch(&name, &Default::default(), &patch).await {
            Err(kube::Error::Api(status)) if status.code == 422 => {
                assert!(status.message.contains(message), "{spec}: refused with {:?}, not {message:?}", status.message)
            }
            other => panic!("{spec}: {other:?}"),
        }
    }
    subaccounts.delete(&name, &Default::default()).await.expect("delete the TwilioSubaccount");
    let mut rules = BTreeSet::new();
    for file in std::fs::read_dir(repo_root().join("crds")).unwrap() {
        let crd: Value = serde_yaml::from_str(&std::fs::read_to_string(file.unwrap().path()).unwrap()).unwrap();
        collect_rule_messages(&crd, &mut rules);
    }
    let tested: BTreeSet<String> =
        cases.iter().chain(&account_cases).chain(&sub_cases).map(|(_, message)| message.to_string()).collect();
    assert_eq!(rules, tested, "every rule of crds/ has a case, and every case a rule");
}

/// The message of every `x-kubernetes-validations` rule under `value`.
fn collect_rule_messages(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for rule in map.get("x-kubernetes-validations").and_then(Value::as_array).into_iter().flatten() {
                out.insert(rule["message"].as_str().expect("every rule has a message").to_string());
            }
            map.values().for_each(|inner| collect_rule_messages(inner, out));
        }
        Value::Array(items) => items.iter().for_each(|inner| collect_rule_messages(inner, out)),
        _ => {}
    }
}

/// The key CRD in a group of its own (so that the real one is untouched), with `rule` replacing
/// the first rule of spec.secret: what the API server answers a dry-run create of it.
async fn key_crd_with_rule(client: &Client, rule: &str, unbounded_labels: bool) -> Result<(), String> {
    let mut crd = crd("twilioapikeys.twilio-operator.dev.yaml");
    crd["metadata"] = json!({"name": "twilioapikeys.broken.twilio-operator.dev"});
    crd["spec"]["group"] = json!("broken.twilio-operator.dev");
    let secret =
        &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["secret"];
    secret["x-kubernetes-validations"][0]["rule"] = json!(rule);
    if unbounded_labels {
        let labels = secret["properties"]["labels"].as_object_mut().unwrap();
        labels.remove("maxProperties");
        labels["additionalProperties"].as_object_mut().unwrap().remove("maxLength");
    }
    let crd: CustomResourceDefinition = serde_json::from_value(crd).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dry_run = PostParams { dry_run: true, ..Default::default() };
    match crds.create(&dry_run, &crd).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => Err(status.message),
        Err(other) => panic!("dry-run create of a CRD: {other}"),
    }
}

/// The CRDs as committed are within the API server's CEL cost budget (the control plane created
/// them, and holds every rule); one rule broken on purpose, or made too costly by dropping the
/// bounds it relies on, gets the whole CRD refused.
#[tokio::test]
async fn the_api_server_refuses_a_crd_whose_rule_is_broken_or_too_costly() {
    let client = client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let stored = crds.get("twilioapikeys.twilio-operator.dev").await.expect("the key CRD");
    let mut stored_rules = BTreeSet::new();
    collect_rule_messages(&serde_json::to_value(&stored.spec).unwrap(), &mut stored_rules);
    let mut committed = BTreeSet::new();
    collect_rule_messages(&crd("twilioapikeys.twilio-operator.dev.yaml")["spec"], &mut committed);
    assert_eq!(stored_rules, committed, "the API server holds every rule of the committed CRD");
    println!("{} holds {} CEL rules", stored.name_any(), stored_rules.len());

    let original =
        crd("twilioapikeys.twilio-operator.dev.yaml")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
            ["spec"]["properties"]["secret"]["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .unwrap()
            .to_string();
    assert_eq!(key_crd_with_rule(&client, &original, false).await, Ok(()), "the copy as committed is accepted");

    let broken = key_crd_with_rule(&client, "!has(self.labels) || self.labels.all(k, k.startsWith(1))", false)
        .await
        .expect_err("a rule that does not compile");
    println!("a rule that does not compile: {broken}");
    assert!(broken.contains("compilation failed"), "{broken}");

    let quadratic = "!has(self.labels) || self.labels.all(k, self.labels.all(j, k == j || !k.startsWith(j)))";
    assert_eq!(key_crd_with_rule(&client, quadratic, false).await, Ok(()), "bounded maps keep it within budget");
    let costly = key_crd_with_rule(&client, quadratic, true).await.expect_err("the same rule over an unbounded map");
    println!("the same rule over an unbounded map: {costly}");
    assert!(costly.contains("exceeds budget"), "{costly}");
}

/// The suite runs on the Kubernetes that TWILIO_OPERATOR_KUBERNETES names (1.37 by default): the
/// API server says so, and the CI log shows it.
#[tokio::test]
async fn the_api_server_is_the_kubernetes_asked_for() {
    let minor = std::env::var("TWILIO_OPERATOR_KUBERNETES").unwrap_or_else(|_| "1.37".into());
    let module =
        std::fs::read_to_string(repo_root().join(format!("hack/k8s/v{}/go.mod", minor.trim_start_matches('v'))))
            .expect("the recipe of that Kubernetes");
    let pinned = module
        .lines()
        .find_map(|line| line.trim().trim_start_matches("require ").strip_prefix("k8s.io/kubernetes "))
        .expect("go.mod requires k8s.io/kubernetes")
        .trim()
        .to_string();
    let version = client().await.apiserver_version().await.expect("/version");
    println!(
        "kube-apiserver /version: {} (platform {}, {})",
        version.git_version, version.platform, version.go_version
    );
    if std::env::var("TWILIO_OPERATOR_TEST_KUBECONFIG").is_err() {
        assert_eq!(version.git_version, pinned, "the control plane runs the pinned release");
    }
}
