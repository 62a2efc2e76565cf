//! The Helm chart: its CRDs are the generated ones (rendered as resources of the release), it
//! lints clean, every Pod it makes gets the image pull Secrets, its `helm test` Pod is as strict
//! as the operator's, its Artifact Hub annotations match crds/, examples/ and values.yaml, its
//! README is what hack/chart-readme.py generates, and once installed with the `helm` CLI (Helm 4,
//! built by hack/tools.sh), its ServiceAccount's permissions are enough for the operator's
//! whole job and no more: the operator binary runs with that ServiceAccount's token through
//! create, rotate and delete, and `kubectl auth can-i` shows what it may not do. The upgrade from
//! the previous chart version is in chart_upgrade.rs.

use twilio_operator_testkit as support;

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde::Deserialize;
use serde_json::json;
use serde_yaml::Value;
use support::{Operator, TestEnv, control_plane, create_namespace, repo_root, wait_until};

fn chart() -> PathBuf {
    repo_root().join("charts/twilio-operator")
}

fn helm(args: &[&str]) -> String {
    let (succeeded, text) = support::helm(args);
    assert!(succeeded, "helm {args:?} failed:\n{text}");
    text
}

/// Every YAML document of a rendered manifest (empty ones left out).
fn documents(rendered: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(rendered)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// `helm template` of the chart as the release `release-name` (Helm's default name).
fn template(set: &[&str]) -> Vec<Value> {
    template_as("release-name", set)
}

fn template_as(release: &str, set: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec!["template", release, chart.to_str().unwrap()];
    args.extend(set.iter().copied());
    documents(&helm(&args))
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|doc| doc["kind"] == kind).collect()
}

/// The `helm test` Pod of a rendered manifest, if any.
fn test_pod(docs: &[Value]) -> Option<&Value> {
    docs.iter().find(|doc| doc["kind"] == "Pod" && doc["metadata"]["annotations"]["helm.sh/hook"] == "test")
}

/// The CRD files of crds/, by file name.
fn generated_crds() -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("crds")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap())
        })
        .collect()
}

#[test]
fn the_chart_carries_the_generated_crds() {
    let generated = repo_root().join("crds");
    let in_chart = chart().join("files/crds");
    let mut names: Vec<_> = std::fs::read_dir(&generated).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    let mut copies: Vec<_> = std::fs::read_dir(&in_chart).unwrap().map(|e| e.unwrap().file_name()).collect();
    copies.sort();
    assert_eq!(names, copies, "charts/twilio-operator/files/crds holds the same files as crds/");
    for name in names {
        let a = std::fs::read(generated.join(&name)).unwrap();
        let b = std::fs::read(in_chart.join(&name)).unwrap();
        assert!(
            a == b,
            "charts/twilio-operator/files/crds/{} differs from crds/ (cp crds/*.yaml charts/twilio-operator/files/crds/)",
            name.to_string_lossy()
        );
    }
    assert!(!chart().join("crds").exists(), "no crds/ directory: Helm would install it before the templated CRDs");
}

#[test]
fn the_crds_are_rendered_unchanged_with_ownership_and_keep() {
    let rendered = template(&[]);
    let crds = of_kind(&rendered, "CustomResourceDefinition");
    let generated = generated_crds();
    assert_eq!(crds.len(), generated.len(), "one rendered CRD per file of crds/");
    for (file, source) in &generated {
        let name = &source["metadata"]["name"];
        let crd = crds.iter().find(|crd| crd["metadata"]["name"] == *name).unwrap_or_else(|| panic!("{file} rendered"));
        assert_eq!(crd["spec"], source["spec"], "{file}: the rendered spec is the file's, value for value");
        assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep", "{file}: kept on uninstall");
        assert_eq!(crd["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm");
        let mut metadata = crd["metadata"].as_mapping().unwrap().clone();
        metadata.remove("labels");
        metadata.remove("annotations");
        let mut source_metadata = source["metadata"].as_mapping().unwrap().clone();
        source_metadata.remove("labels");
        source_metadata.remove("annotations");
        assert_eq!(metadata, source_metadata, "{file}: no other metadata changed");
    }
    let not_kept = template(&["--set", "crds.keep=false"]);
    for crd in of_kind(&not_kept, "CustomResourceDefinition") {
        assert!(crd["metadata"]["annotations"]["helm.sh/resource-policy"].is_null(), "crds.keep=false: {crd:?}");
    }
    let off = template(&["--set", "crds.enabled=false"]);
    assert!(of_kind(&off, "CustomResourceDefinition").is_empty(), "crds.enabled=false renders no CRD");
}

fn pull_secret_names(pod_spec: &Value) -> Vec<String> {
    pod_spec["imagePullSecrets"]
        .as_sequence()
        .map(|list| list.iter().map(|s| s["name"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn image_pull_secrets_reach_every_pod_global_ones_included() {
    let set = [
        "--set-json",
        r#"global.imagePullSecrets=["global-regcred",{"name":"shared-regcred"}]"#,
        "--set-json",
        r#"imagePullSecrets=[{"name":"shared-regcred"},{"name":"chart-regcred"}]"#,
    ];
    let docs = template(&set);
    let expected = ["global-regcred", "shared-regcred", "chart-regcred"];
    let deployment = of_kind(&docs, "Deployment")[0];
    assert_eq!(pull_secret_names(&deployment["spec"]["template"]["spec"]), expected, "the Deployment's Pods");
    let pod = test_pod(&docs).expect("the helm test Pod is rendered");
    assert_eq!(pull_secret_names(&pod["spec"]), expected, "the helm test Pod");
    // Every pod template the chart renders gets them (a Pod, or anything with spec.template.spec).
    for doc in &docs {
        let spec = if doc["kind"] == "Pod" { &doc["spec"] } else { &doc["spec"]["template"]["spec"] };
        if spec.is_mapping() {
            assert_eq!(
                pull_secret_names(spec),
                expected,
                "{} {}",
                doc["kind"].as_str().unwrap(),
                doc["metadata"]["name"].as_str().unwrap()
            );
        }
    }
    let global_only = template(&["--set", "global.imagePullSecrets={only-global}"]);
    let deployment = of_kind(&global_only, "Deployment")[0];
    assert_eq!(pull_secret_names(&deployment["spec"]["template"]["spec"]), ["only-global"]);
    let none = template(&[]);
    let deployment = of_kind(&none, "Deployment")[0];
    assert!(deployment["spec"]["template"]["spec"]["imagePullSecrets"].is_null(), "none by default");
}

#[test]
fn the_helm_test_pod_asks_readyz_as_strictly_as_the_operator_runs() {
    // No node runs Pods on the test control plane, so the hook is only rendered here, not run.
    let docs = template_as("tw", &["--namespace", "ops"]);
    let pod = test_pod(&docs).expect("a Pod with helm.sh/hook: test");
    let deployment = of_kind(&docs, "Deployment")[0];
    let operator_pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["spec"]["securityContext"], operator_pod["securityContext"], "the operator's Pod security context");
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["securityContext"], operator_pod["containers"][0]["securityContext"]);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false, "no API token in the test Pod");
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(container["image"], operator_pod["containers"][0]["image"], "the operator's own image");
    let args: Vec<&str> = container["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let service = of_kind(&docs, "Service")[0];
    let url = format!("http://{}.ops.svc:8080/readyz", service["metadata"]["name"].as_str().unwrap());
    assert_eq!(args[..2], ["probe", url.as_str()], "the test asks {url} with `twilio-operator probe`");
    // Its labels must not make it one of the operator's Pods (the ReplicaSet would adopt it).
    let labels = pod["metadata"]["labels"].as_mapping().unwrap();
    for selector in [&deployment["spec"]["selector"]["matchLabels"], &service["spec"]["selector"]] {
        let matches = selector.as_mapping().unwrap().iter().all(|(k, v)| labels.get(k) == Some(v));
        assert!(!matches, "the test Pod's labels {labels:?} match the selector {selector:?}");
    }
    // A NetworkPolicy that restricts who may reach the metrics port admits the test Pod.
    let restricted = template_as(
        "tw",
        &[
            "--set",
            "networkPolicy.enabled=true",
            "--set-json",
            r#"networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"name":"monitoring"}}}]"#,
        ],
    );
    let policy = of_kind(&restricted, "NetworkPolicy")[0];
    let from = policy["spec"]["ingress"][0]["from"].as_sequence().unwrap();
    let pod = test_pod(&restricted).unwrap();
    let admitted = from.iter().any(|peer| {
        peer["podSelector"]["matchLabels"]
            .as_mapping()
            .is_some_and(|sel| sel.iter().all(|(k, v)| pod["metadata"]["labels"].get(k) == Some(v)))
    });
    assert!(admitted, "the NetworkPolicy admits the test Pod: {from:?}");
    assert!(test_pod(&template(&["--set", "test.enabled=false"])).is_none(), "test.enabled=false");
}

#[test]
fn artifact_hub_annotations_match_the_crds_examples_and_images() {
    let meta: Value = serde_yaml::from_str(&std::fs::read_to_string(chart().join("Chart.yaml")).unwrap()).unwrap();
    let annotation = |name: &str| -> Value {
        let text = meta["annotations"][name].as_str().unwrap_or_else(|| panic!("Chart.yaml has annotation {name}"));
        serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{name} is YAML: {e}"))
    };
    assert_eq!(meta["annotations"]["artifacthub.io/license"], "Apache-2.0");
    // Every CRD of crds/ is listed, with its name and served version, and nothing else.
    let crds = annotation("artifacthub.io/crds");
    let listed = crds.as_sequence().unwrap();
    let generated = generated_crds();
    let kinds: Vec<&str> = generated.iter().map(|(_, crd)| crd["spec"]["names"]["kind"].as_str().unwrap()).collect();
    assert_eq!(listed.len(), generated.len(), "one artifacthub.io/crds entry per CRD");
    for (file, crd) in &generated {
        let kind = &crd["spec"]["names"]["kind"];
        let entry = listed.iter().find(|e| e["kind"] == *kind).unwrap_or_else(|| panic!("{file}: {kind:?} listed"));
        assert_eq!(entry["name"], crd["metadata"]["name"], "{file}");
        assert_eq!(entry["version"], crd["spec"]["versions"][0]["name"], "{file}");
        assert!(entry["description"].as_str().is_some_and(|d| !d.is_empty()) && entry["displayName"].is_string());
    }
    // Every example parses, names a kind of crds/ in its group, and is a resource of examples/.
    let mut in_examples = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("examples")).unwrap() {
        in_examples.extend(documents(&std::fs::read_to_string(entry.unwrap().path()).unwrap()));
    }
    let examples = annotation("artifacthub.io/crdsExamples");
    let examples = examples.as_sequence().unwrap();
    for example in examples {
        let kind = example["kind"].as_str().expect("an example has a kind");
        assert!(kinds.contains(&kind), "crdsExample of kind {kind} names a kind of crds/ ({kinds:?})");
        assert_eq!(example["apiVersion"], "twilio-operator.dev/v1alpha1");
        assert!(
            in_examples.contains(example),
            "crdsExample {kind}/{} is not, as it is, in examples/ (copy it from there)",
            example["metadata"]["name"].as_str().unwrap_or("?")
        );
    }
    for kind in &kinds {
        assert!(examples.iter().any(|e| e["kind"] == *kind), "an example of {kind}");
    }
    // The images are the default ones of values.yaml and the chart's appVersion.
    let values: Value = serde_yaml::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap()).unwrap();
    let images: Vec<String> = annotation("artifacthub.io/images")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|i| i["image"].as_str().unwrap().to_string())
        .collect();
    let operator =
        format!("{}:{}", values["image"]["repository"].as_str().unwrap(), meta["appVersion"].as_str().unwrap());
    assert_eq!(images, [operator], "artifacthub.io/images lists the default image (helm test runs it too)");
    for link in annotation("artifacthub.io/links").as_sequence().unwrap() {
        assert!(link["name"].is_string() && link["url"].as_str().is_some_and(|u| u.starts_with("https://")));
    }
    for change in annotation("artifacthub.io/changes").as_sequence().unwrap() {
        let kind = change["kind"].as_str().unwrap();
        assert!(["added", "changed", "deprecated", "removed", "fixed", "security"].contains(&kind), "{kind}");
        assert!(change["description"].is_string());
    }
}

#[test]
fn the_chart_readme_is_generated_from_values_yaml() {
    let output = Command::new("python3")
        .arg(repo_root().join("hack/chart-readme.py"))
        .arg(chart())
        .output()
        .expect("run hack/chart-readme.py (python3)");
    assert!(output.status.success(), "hack/chart-readme.py failed: {}", String::from_utf8_lossy(&output.stderr));
    let generated = String::from_utf8(output.stdout).unwrap();
    let committed = std::fs::read_to_string(chart().join("README.md")).unwrap_or_default();
    assert!(
        committed == generated,
        "charts/twilio-operator/README.md differs from what hack/chart-readme.py generates; run \
         `hack/chart-readme.py --write` and commit"
    );
    // Every value of values.yaml is a row (or inside one), with its default.
    let values: Value = serde_yaml::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap()).unwrap();
    fn leaves(value: &Value, prefix: &str, out: &mut Vec<String>) {
        match value.as_mapping() {
            Some(map) if !map.is_empty() => {
                for (k, v) in map {
                    let key = k.as_str().unwrap();
                    leaves(v, &if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") }, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let mut keys = Vec::new();
    leaves(&values, "", &mut keys);
    for key in keys {
        let documented = (1..=key.split('.').count())
            .map(|n| key.split('.').take(n).collect::<Vec<_>>().join("."))
            .any(|prefix| generated.contains(&format!("| `{prefix}` |")));
        assert!(documented, "{key} has a row in the chart README");
    }
    assert!(generated.contains("| `crds.enabled` | bool | `true` |"), "rows carry the default");
}

#[test]
fn the_readme_generator_refuses_an_undescribed_value() {
    let scratch = tempfile::tempdir().unwrap();
    for file in ["Chart.yaml", "README.tmpl.md"] {
        std::fs::copy(chart().join(file), scratch.path().join(file)).unwrap();
    }
    let values = std::fs::read_to_string(chart().join("values.yaml")).unwrap() + "\nundescribed: 1\n";
    std::fs::write(scratch.path().join("values.yaml"), values).unwrap();
    let output =
        Command::new("python3").arg(repo_root().join("hack/chart-readme.py")).arg(scratch.path()).output().unwrap();
    assert!(!output.status.success(), "a value without a description is refused");
    assert!(String::from_utf8_lossy(&output.stderr).contains("undescribed"), "{output:?}");
}

#[test]
fn the_chart_lints_clean_in_every_mode() {
    for set in [
        vec![],
        vec!["--set", "replicaCount=2"],
        vec!["--set", "watchNamespaces={team-a,team-b}"],
        vec!["--set", "crds.enabled=false", "--set", "test.enabled=false"],
        vec!["--set", "crds.keep=false", "--set", "global.imagePullSecrets={regcred}"],
        vec![
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            "dashboards.enabled=true",
            "--set",
            "prometheusRule.enabled=true",
        ],
    ] {
        let chart = chart();
        let mut args = vec!["lint", chart.to_str().unwrap()];
        args.extend(set.iter().copied());
        let out = helm(&args);
        assert!(out.contains("0 chart(s) failed"), "{out}");
        assert!(!out.contains("[WARNING]") && !out.contains("[ERROR]"), "lint is clean with {set:?}:\n{out}");
    }
}

#[test]
fn the_prometheus_rule_carries_the_tested_rules() {
    let chart = chart();
    let rendered = helm(&["template", chart.to_str().unwrap(), "--set", "prometheusRule.enabled=true"]);
    let rule = rendered
        .split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<serde_yaml::Value>(doc).ok())
        .find(|doc| doc["kind"] == "PrometheusRule")
        .unwrap_or_else(|| panic!("no PrometheusRule rendered:\n{rendered}"));
    let file = std::fs::read_to_string(chart.join("files/prometheus-rules.yaml")).unwrap();
    let rules: serde_yaml::Value = serde_yaml::from_str(&file).unwrap();
    assert_eq!(rule["spec"], rules, "the PrometheusRule's spec is files/prometheus-rules.yaml, unchanged");
    let off = helm(&["template", chart.to_str().unwrap()]);
    assert!(!off.contains("kind: PrometheusRule"), "off by default");
}

#[test]
fn the_values_schema_rejects_bad_values() {
    let (succeeded, text) = support::helm(&["template", chart().to_str().unwrap(), "--set", "logFormat=xml"]);
    assert!(!succeeded, "logFormat=xml is refused");
    assert!(text.contains("logFormat"), "the error names the value: {text}");
}

/// A kubeconfig for the control plane that authenticates with `token`.
fn kubeconfig_with_token(token: &str, path: &Path) {
    let admin: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&control_plane().kubeconfig).unwrap()).unwrap();
    let cluster = &admin["clusters"][0]["cluster"];
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": cluster["server"].as_str().unwrap(),
            "certificate-authority": cluster["certificate-authority"].as_str().unwrap(),
        }}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "operator"}}],
        "current-context": "local",
    });
    std::fs::write(path, serde_yaml::to_string(&config).unwrap()).unwrap();
}

/// Installs the chart as `release` into `namespace` and returns a kubeconfig holding a token of
/// the chart's ServiceAccount.
async fn install(env: &TestEnv, release: &str, namespace: &str, set: &[&str]) -> PathBuf {
    create_namespace(&env.client, namespace).await.expect("create the release namespace");
    let kubeconfig = control_plane().kubeconfig.to_str().unwrap().to_string();
    let chart = chart();
    let mut args = vec!["install", release, chart.to_str().unwrap(), "--namespace", namespace];
    args.extend(["--kubeconfig", &kubeconfig]);
    args.extend(set.iter().copied());
    let out = helm(&args);
    assert!(out.contains("deployed"), "the release is deployed:\n{out}");
    let account = format!("{release}-twilio-operator");
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), namespace);
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).unwrap();
    let token = accounts
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .expect("a token for the chart's ServiceAccount")
        .status
        .expect("token status")
        .token
        .expect("a token");
    let path = repo_root().join("target").join("test-logs").join(format!("{release}-{namespace}.kubeconfig"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    kubeconfig_with_token(&token, &path);
    path
}

/// `kubectl auth can-i` as the ServiceAccount: true for "yes".
fn can_i(kubeconfig: &Path, args: &[&str]) -> bool {
    let output = Command::new(support::tool("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["auth", "can-i"])
        .args(args)
        .output()
        .expect("run kubectl");
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_string();
    println!("can-i {args:?}: {answer}");
    assert!(answer == "yes" || answer == "no", "kubectl auth can-i {args:?} answered {answer:?}: {output:?}");
    answer == "yes"
}

/// Create, rotate and delete a key with the operator acting as `kubeconfig`'s identity.
async fn create_rotate_delete(env: &TestEnv) {
    // A consumer to restart on rotation: with no replicas, its rollout completes at once.
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    let consumer: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "chart-consumer", "labels": {"consumes": "chart-key"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "chart-consumer"}},
            "template": {
                "metadata": {"labels": {"app": "chart-consumer"}},
                "spec": {"containers": [{"name": "app", "image": "consumer:dev"}]}
            }
        }
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &consumer).await.expect("create the consumer Deployment");
    let spec = json!({
        "secret": {"name": "chart-key-twilio"},
        // Selected by label: the chart's RBAC lets the operator list Deployments (metadata).
        "rolloutRestartTargets": [{"kind": "Deployment", "selector": {"matchLabels": {"consumes": "chart-key"}}}]
    });
    env.create_key("chart-key", spec).await;
    let first = env.wait_ready("chart-key").await.status.unwrap().key_sid.unwrap();
    env.request_rotation("chart-key", "1").await;
    let second = env.wait_new_key("chart-key", &first).await.status.unwrap().key_sid.unwrap();
    let (_, sid, _) = env.delivered_pair("chart-key-twilio").await;
    assert_eq!(sid, second, "the Secret holds the rotated key");
    // The chart's RBAC lets the operator restart the consumer and follow its rollout.
    wait_until("the consumer restarted and rolled out", || async {
        let key = env.keys().get("chart-key").await.ok()?;
        let rollout = key.status?.rollout;
        let matched = rollout.iter().any(|e| e.name == "chart-consumer");
        (matched && rollout.iter().all(|e| e.complete)).then_some(())
    })
    .await;
    let restarted = deployments.get("chart-consumer").await.expect("the consumer");
    let annotations = restarted.spec.template.metadata.and_then(|m| m.annotations).unwrap_or_default();
    assert!(annotations.contains_key("twilio-operator.dev/restartedAt"), "{annotations:?}");
    deployments.delete("chart-consumer", &Default::default()).await.expect("delete the consumer");
    env.delete_key("chart-key").await;
    env.wait_gone("chart-key").await;
    wait_until("keys deleted in Twilio", || async { env.fake.keys().is_empty().then_some(()) }).await;
}

fn assert_no_forbidden(operator: &Operator) {
    let output = operator.output();
    assert!(!output.to_lowercase().contains("forbidden"), "the operator was refused a call:\n{output}");
}

#[tokio::test]
async fn the_charts_service_account_is_enough_for_the_operator_and_no_more() {
    // Namespaced mode: the operator watches only the team's namespace.
    let mut env = TestEnv::new("chart-team").await;
    let release_ns = format!("{}-op", env.namespace);
    let watch = format!("watchNamespaces={{{}}}", env.namespace);
    // The control plane has the CRDs already, as a cluster whose CRDs are applied from crds/ does:
    // the releases leave them alone.
    let kubeconfig = install(
        &env,
        "tw-ns",
        &release_ns,
        &["--set", &watch, "--set", "leaderElection.enabled=true", "--set", "crds.enabled=false"],
    )
    .await;
    let kubeconfig_env = kubeconfig.to_str().unwrap().to_string();
    let mut operator = Operator::spawn(
        &format!("{}-chart", env.namespace),
        &env.fake.url(),
        &["--watch-namespace", &env.namespace, "--leader-elect"],
        "info,twilio_operator=debug",
        &[("KUBECONFIG", &kubeconfig_env), ("POD_NAMESPACE", &release_ns), ("POD_NAME", "chart-ns")],
    );
    create_rotate_delete(&env).await;
    assert!(operator.terminate().expect("terminate the operator").success(), "a clean shutdown");
    assert_no_forbidden(&operator);

    let other = TestEnv::new("chart-other").await;
    let team = env.namespace.as_str();
    assert!(can_i(&kubeconfig, &["get", "secrets", "-n", team]), "reads Secrets in its namespace");
    assert!(can_i(&kubeconfig, &["patch", "twilioapikeys.twilio-operator.dev", "-n", team]));
    // Rollout restart targets: read and restarted by name, and listed (metadata, by a selector)
    // in its namespaces; never watched.
    for verb in ["get", "list", "patch"] {
        for kind in ["deployments.apps", "statefulsets.apps", "daemonsets.apps"] {
            assert!(can_i(&kubeconfig, &[verb, kind, "-n", team]), "{verb} {kind}");
            assert!(!can_i(&kubeconfig, &[verb, kind, "-n", &other.namespace]), "{verb} {kind} elsewhere");
        }
    }
    for verb in ["watch", "update", "delete", "create"] {
        assert!(!can_i(&kubeconfig, &[verb, "deployments.apps", "-n", team]), "{verb} deployments");
    }
    // The leader Lease: created by anyone's name (create cannot be restricted by name), then
    // read, renewed and released only under its own name, which is fixed in the operator.
    let lease = format!("leases.coordination.k8s.io/{}", twilio_operator::runtime::leader::LEASE_NAME);
    assert!(can_i(&kubeconfig, &["create", "leases.coordination.k8s.io", "-n", &release_ns]));
    for verb in ["get", "update", "patch"] {
        assert!(can_i(&kubeconfig, &[verb, &lease, "-n", &release_ns]), "{verb} the leader Lease");
        let other_lease = "leases.coordination.k8s.io/someone-elses-lease";
        assert!(!can_i(&kubeconfig, &[verb, other_lease, "-n", &release_ns]), "{verb} only the leader Lease");
    }
    assert!(!can_i(&kubeconfig, &["delete", &lease, "-n", &release_ns]));
    assert!(!can_i(&kubeconfig, &["list", "leases.coordination.k8s.io", "-n", &release_ns]));
    // Namespaces: read one by name (a ClusterTwilioAccount's namespaceSelector), never listed.
    assert!(can_i(&kubeconfig, &["get", "namespaces"]));
    assert!(can_i(&kubeconfig, &["get", &format!("namespaces/{team}")]));
    assert!(!can_i(&kubeconfig, &["list", "namespaces"]), "Namespaces are read by name only");
    assert!(!can_i(&kubeconfig, &["watch", "namespaces"]));
    assert!(!can_i(&kubeconfig, &["get", "secrets", "-n", &other.namespace]), "no Secrets outside its namespaces");
    assert!(!can_i(&kubeconfig, &["list", "secrets", "--all-namespaces"]));
    assert!(!can_i(&kubeconfig, &["get", "twilioapikeys.twilio-operator.dev", "-n", &other.namespace]));
    assert!(!can_i(&kubeconfig, &["create", "roles", "-n", team]), "no RBAC changes");
    assert!(!can_i(&kubeconfig, &["create", "clusterrolebindings"]));
    assert!(!can_i(&kubeconfig, &["delete", "twilioapikeys.twilio-operator.dev", "-n", team]));
    assert!(!can_i(&kubeconfig, &["update", "twilioaccounts.twilio-operator.dev", "-n", team]), "never writes specs");
    assert!(!can_i(&kubeconfig, &["create", "pods", "-n", team]));
    assert!(!can_i(&kubeconfig, &["patch", "leases.coordination.k8s.io", "-n", team]), "Leases only at home");
    drop(other);

    // Cluster-wide mode (the default): the same flow, and still no RBAC or workload rights.
    let cluster_ns = format!("{}-cw", env.namespace);
    let set = ["--set", "crds.enabled=false", "--set", "global.imagePullSecrets={regcred}"];
    let kubeconfig = install(&env, "tw-cw", &cluster_ns, &set).await;
    // What the API server holds, not only what the chart renders.
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &cluster_ns);
    let installed = deployments.get("tw-cw-twilio-operator").await.expect("the chart's Deployment");
    let pull_secrets: Vec<String> = installed
        .spec
        .template
        .spec
        .and_then(|s| s.image_pull_secrets)
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(pull_secrets, ["regcred"], "global.imagePullSecrets in the installed Deployment");
    let kubeconfig_env = kubeconfig.to_str().unwrap().to_string();
    let operator = Operator::spawn(
        &format!("{}-chart-cw", env.namespace),
        &env.fake.url(),
        &[],
        "info,twilio_operator=debug",
        &[("KUBECONFIG", &kubeconfig_env)],
    );
    create_rotate_delete(&env).await;
    assert_no_forbidden(&operator);
    assert!(can_i(&kubeconfig, &["list", "secrets", "--all-namespaces"]), "cluster-wide: Secrets everywhere");
    assert!(!can_i(&kubeconfig, &["create", "clusterroles"]));
    assert!(!can_i(&kubeconfig, &["bind", "clusterroles"]));
    assert!(!can_i(&kubeconfig, &["impersonate", "serviceaccounts"]));
    assert!(can_i(&kubeconfig, &["get", "namespaces"]));
    assert!(!can_i(&kubeconfig, &["list", "namespaces"]), "Namespaces are read by name only");
    assert!(!can_i(&kubeconfig, &["watch", "namespaces"]));
    assert!(!can_i(&kubeconfig, &["create", "deployments", "-n", &cluster_ns]));
    assert!(
        !can_i(&kubeconfig, &["patch", "leases.coordination.k8s.io", "-n", &cluster_ns]),
        "no Lease without leader election"
    );
    env.stop_operator();
}

#[test]
fn argo_rollouts_are_granted_only_when_enabled_and_workloads_are_never_watched() {
    let rules = |docs: &[Value]| -> Vec<serde_json::Value> {
        of_kind(docs, "ClusterRole")
            .into_iter()
            .chain(of_kind(docs, "Role"))
            .map(|role| serde_json::to_value(role).unwrap())
            .flat_map(|role| role["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let grants = |rules: &[serde_json::Value], group: &str| -> Vec<serde_json::Value> {
        rules.iter().filter(|r| r["apiGroups"].as_array().is_some_and(|g| g.contains(&json!(group)))).cloned().collect()
    };
    let default = rules(&template(&[]));
    assert!(grants(&default, "argoproj.io").is_empty(), "no Argo Rollouts rights by default: {default:?}");
    let apps = grants(&default, "apps");
    assert_eq!(apps.len(), 1, "{apps:?}");
    assert_eq!(apps[0]["verbs"], json!(["get", "list", "patch"]), "listed by selector, never watched");
    let enabled = rules(&template(&["--set", "rbac.argoRollouts=true"]));
    let argo = grants(&enabled, "argoproj.io");
    assert_eq!(argo.len(), 1, "{argo:?}");
    assert_eq!(argo[0]["resources"], json!(["rollouts"]));
    assert_eq!(argo[0]["verbs"], json!(["get", "list", "patch"]));
}
