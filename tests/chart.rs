//! The Helm chart: its CRDs are the generated ones, it lints clean, and once installed with real
//! Helm (Helm v4's library through hack/helm.py), its ServiceAccount's permissions are enough for
//! the operator's whole job and no more: the operator binary runs with that ServiceAccount's token
//! through create, rotate and delete, and `kubectl auth can-i` shows what it may not do.

use twilio_operator_testkit as support;

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::{Operator, TestEnv, control_plane, create_namespace, repo_root, wait_until};

fn chart() -> PathBuf {
    repo_root().join("charts/twilio-operator")
}

fn helm(args: &[&str]) -> String {
    let output = Command::new("python3")
        .arg(repo_root().join("hack/helm.py"))
        .args(args)
        .output()
        .expect("run hack/helm.py (python3)");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "hack/helm.py {args:?} failed:\n{text}");
    text
}

#[test]
fn the_chart_carries_the_generated_crds() {
    let generated = repo_root().join("crds");
    let mut names: Vec<_> = std::fs::read_dir(&generated).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    let mut in_chart: Vec<_> =
        std::fs::read_dir(chart().join("crds")).unwrap().map(|e| e.unwrap().file_name()).collect();
    in_chart.sort();
    assert_eq!(names, in_chart, "charts/twilio-operator/crds holds the same files as crds/");
    for name in names {
        let a = std::fs::read(generated.join(&name)).unwrap();
        let b = std::fs::read(chart().join("crds").join(&name)).unwrap();
        assert!(
            a == b,
            "charts/twilio-operator/crds/{} differs from crds/ (cp crds/*.yaml charts/twilio-operator/crds/)",
            name.to_string_lossy()
        );
    }
}

#[test]
fn the_chart_lints_clean_in_every_mode() {
    for set in [
        vec![],
        vec!["--set", "replicaCount=2"],
        vec!["--set", "watchNamespaces={team-a,team-b}"],
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
    let output = Command::new("python3")
        .arg(repo_root().join("hack/helm.py"))
        .args(["template", chart().to_str().unwrap(), "--set", "logFormat=xml"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr).to_string() + &String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "logFormat=xml is refused");
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
    let mut args = vec!["install", chart.to_str().unwrap(), release, "--namespace", namespace];
    args.extend(["--kubeconfig", &kubeconfig, "--wait", "false"]);
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
    let output = Command::new("kubectl")
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
    env.create_key("chart-key", json!({"secret": {"name": "chart-key-twilio"}})).await;
    let first = env.wait_ready("chart-key").await.status.unwrap().key_sid.unwrap();
    env.request_rotation("chart-key", "1").await;
    let second = env.wait_new_key("chart-key", &first).await.status.unwrap().key_sid.unwrap();
    let (_, sid, _) = env.delivered_pair("chart-key-twilio").await;
    assert_eq!(sid, second, "the Secret holds the rotated key");
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
    let kubeconfig =
        install(&env, "tw-ns", &release_ns, &["--set", &watch, "--set", "leaderElection.enabled=true"]).await;
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
    let kubeconfig = install(&env, "tw-cw", &cluster_ns, &[]).await;
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
