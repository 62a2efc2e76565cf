//! Test harness: a real control plane (started once per test binary by hack/control-plane.sh,
//! or the cluster named by TWILIO_OPERATOR_TEST_KUBECONFIG), the project's fake Twilio in this
//! process, and the real operator binary, one namespace per test.

pub mod kube_proxy;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use fake_twilio::{FakeAccount, FakeTwilio};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::json;
use twilio_operator::api::{ClusterTwilioAccount, TwilioAccount, TwilioApiKey};

pub const ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
pub const AUTH_TOKEN: &str = "test-auth-token-0001";

/// The repository's root (this crate lives in crates/testkit).
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The `twilio-operator` binary Cargo built beside the running test or tool (target/debug or
/// target/release), unless TWILIO_OPERATOR_BIN names another.
pub fn operator_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TWILIO_OPERATOR_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("path of the running executable");
    // Integration tests run from target/<profile>/deps, tools from target/<profile>.
    let mut dir = exe.parent().expect("the executable's directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("twilio-operator")
}

pub struct ControlPlane {
    pub kubeconfig: PathBuf,
    /// The state directory when this suite started the control plane itself.
    pub dir: Option<PathBuf>,
}

impl ControlPlane {
    /// Kills the API server and starts it again on the same etcd and port after `down`.
    pub fn restart_apiserver(&self, down: Duration) {
        let dir = self.dir.as_ref().expect("only a control plane the suite started can be restarted");
        let status = Command::new(repo_root().join("hack/control-plane.sh"))
            .arg("restart-apiserver")
            .arg(dir)
            .arg(down.as_secs().to_string())
            .stdout(Stdio::null())
            .status()
            .expect("run hack/control-plane.sh");
        assert!(status.success(), "restarting the API server failed");
    }
}

/// The control plane shared by every test of this binary.
/// If starting it fails, every test fails with the same message instead of trying again.
pub fn control_plane() -> &'static ControlPlane {
    static PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
    let plane = PLANE.get_or_init(|| {
        if let Ok(path) = std::env::var("TWILIO_OPERATOR_TEST_KUBECONFIG") {
            return Ok(ControlPlane { kubeconfig: PathBuf::from(path), dir: None });
        }
        start_control_plane(&format!("{}", std::process::id()))
    });
    match plane {
        Ok(plane) => plane,
        Err(message) => panic!("{message}"),
    }
}

/// Starts a control plane of its own (with the CRDs) under target/test-control-planes/<name>; it
/// stops when this test process exits.
pub fn start_control_plane(name: &str) -> Result<ControlPlane, String> {
    let dir = repo_root().join("target").join("test-control-planes").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let crds: Vec<PathBuf> = std::fs::read_dir(repo_root().join("crds"))
        .expect("crds/ exists")
        .map(|e| e.expect("crds/ entry").path())
        .collect();
    let status = Command::new(repo_root().join("hack/control-plane.sh"))
        .arg("up")
        .arg(&dir)
        .args(&crds)
        .env("WATCH_PID", std::process::id().to_string())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("run hack/control-plane.sh: {e}"))?;
    if !status.success() {
        return Err(format!("hack/control-plane.sh up failed; logs are in {}", dir.display()));
    }
    Ok(ControlPlane { kubeconfig: dir.join("kubeconfig"), dir: Some(dir) })
}

/// A client of `plane`.
pub async fn client_for(plane: &ControlPlane) -> Client {
    let kubeconfig = Kubeconfig::read_from(&plane.kubeconfig).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("kubeconfig");
    Client::try_from(config).expect("client")
}

pub async fn client() -> Client {
    let client = client_for(control_plane()).await;
    ensure_crds(&client).await;
    client
}

/// On a cluster the suite did not start, the CRDs may be missing or old: apply them.
async fn ensure_crds(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    if std::env::var("TWILIO_OPERATOR_TEST_KUBECONFIG").is_err() {
        return;
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, yaml) in twilio_operator::api::crd_documents() {
        let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).expect("crd yaml");
        crds.patch(&crd.name_any(), &PatchParams::apply("twilio-operator-tests").force(), &Patch::Apply(&crd))
            .await
            .expect("apply CRD");
    }
}

/// The real operator binary, killed when dropped. Its output goes to a log file.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
}

impl Operator {
    pub fn start(namespace: &str, twilio_url: &str, extra_args: &[&str]) -> Operator {
        let filter = std::env::var("OPERATOR_LOG").unwrap_or_else(|_| "info,twilio_operator=debug".into());
        Operator::start_with_log(namespace, twilio_url, extra_args, &filter)
    }

    pub fn start_with_log(namespace: &str, twilio_url: &str, extra_args: &[&str], filter: &str) -> Operator {
        Operator::start_with_env(namespace, twilio_url, extra_args, filter, &[])
    }

    pub fn start_with_env(
        namespace: &str,
        twilio_url: &str,
        extra_args: &[&str],
        filter: &str,
        env: &[(&str, &str)],
    ) -> Operator {
        let identity = env.iter().find(|(k, _)| *k == "POD_NAME").map_or("operator", |(_, v)| *v);
        let mut args = vec!["--watch-namespace", namespace];
        args.extend_from_slice(extra_args);
        Operator::spawn(&format!("{namespace}-{identity}"), twilio_url, &args, filter, env)
    }

    /// The operator with exactly these arguments (no --watch-namespace unless given), logging to
    /// target/test-logs/<log_name>.log. `env` may override KUBECONFIG.
    pub fn spawn(log_name: &str, twilio_url: &str, args: &[&str], filter: &str, env: &[(&str, &str)]) -> Operator {
        let log_dir = repo_root().join("target").join("test-logs");
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let log = log_dir.join(format!("{log_name}.log"));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let child = Command::new(operator_binary())
            .args(["run", "--twilio-api-url", twilio_url])
            .args(if args.contains(&"--metrics-addr") { &[][..] } else { &["--metrics-addr", "127.0.0.1:0"][..] })
            .args(if args.contains(&"--resync-interval") { &[][..] } else { &["--resync-interval", "30s"][..] })
            .args(args)
            .env("KUBECONFIG", &control_plane().kubeconfig)
            .env("RUST_LOG", filter)
            .envs(env.iter().copied())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("start the operator binary");
        Operator { child, log }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as Kubernetes stops a Pod, and the exit status once it exited.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill");
        assert!(sent.success(), "send SIGTERM");
        self.child.wait().expect("wait for the operator")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One test's world: its namespace, a fake Twilio with one account, a TwilioAccount "main"
/// holding that account's auth token, and the operator watching the namespace.
pub struct TestEnv {
    pub client: Client,
    pub namespace: String,
    pub fake: FakeTwilio,
    pub operator: Option<Operator>,
}

impl TestEnv {
    pub async fn new(test: &str) -> TestEnv {
        let client = client().await;
        let namespace = format!("{test}-{:04x}", rand::random::<u16>()).replace('_', "-");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap())
            .await
            .expect("create namespace");
        let fake = FakeTwilio::start(
            "127.0.0.1:0".parse().unwrap(),
            vec![FakeAccount { sid: ACCOUNT_SID.into(), auth_token: AUTH_TOKEN.into() }],
        )
        .await
        .expect("start fake Twilio");
        let env = TestEnv { client, namespace, fake, operator: None };
        env.create_secret("twilio-credentials", &[("TWILIO_AUTH_TOKEN", AUTH_TOKEN)]).await;
        env.create_account("main", "twilio-credentials").await;
        env
    }

    pub async fn with_operator(test: &str) -> TestEnv {
        let mut env = TestEnv::new(test).await;
        env.start_operator(&[]);
        env
    }

    pub fn start_operator(&mut self, extra_args: &[&str]) {
        self.operator = Some(Operator::start(&self.namespace, &self.fake.url(), extra_args));
    }

    pub fn stop_operator(&mut self) {
        self.operator = None;
    }

    pub fn keys(&self) -> Api<TwilioApiKey> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub async fn create_secret(&self, name: &str, data: &[(&str, &str)]) {
        let string_data: serde_json::Map<String, serde_json::Value> =
            data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let secret: Secret =
            serde_json::from_value(json!({"metadata": {"name": name}, "stringData": string_data})).unwrap();
        self.secrets().create(&PostParams::default(), &secret).await.expect("create Secret");
    }

    /// A TwilioAccount `name` whose credentials Secret `credentials_secret` holds a token the
    /// fake refuses.
    pub async fn create_refused_account(&self, name: &str, credentials_secret: &str) {
        self.create_secret(credentials_secret, &[("TWILIO_AUTH_TOKEN", "not-the-token")]).await;
        self.create_account(name, credentials_secret).await;
    }

    pub async fn create_account(&self, name: &str, credentials_secret: &str) {
        self.create_account_for(name, ACCOUNT_SID, credentials_secret).await;
    }

    pub async fn create_account_for(&self, name: &str, account_sid: &str, credentials_secret: &str) {
        let account: TwilioAccount = serde_json::from_value(json!({
            "apiVersion": "twilio-operator.dev/v1alpha1",
            "kind": "TwilioAccount",
            "metadata": {"name": name},
            "spec": {"accountSid": account_sid, "credentialsSecretRef": {"name": credentials_secret}},
        }))
        .unwrap();
        Api::<TwilioAccount>::namespaced(self.client.clone(), &self.namespace)
            .create(&PostParams::default(), &account)
            .await
            .expect("create TwilioAccount");
    }

    /// Creates a TwilioApiKey with the given spec (accountRef defaults to the "main" account).
    pub async fn create_key(&self, name: &str, spec: serde_json::Value) -> TwilioApiKey {
        self.try_create_key(name, spec).await.expect("create TwilioApiKey")
    }

    /// Creates a TwilioApiKey with the given spec (accountRef defaults to the "main" account);
    /// the API server's answer, admitted or not.
    pub async fn try_create_key(&self, name: &str, mut spec: serde_json::Value) -> Result<TwilioApiKey, kube::Error> {
        if spec.get("accountRef").is_none() {
            spec["accountRef"] = json!({"name": "main"});
        }
        let key: TwilioApiKey = serde_json::from_value(json!({
            "apiVersion": "twilio-operator.dev/v1alpha1",
            "kind": "TwilioApiKey",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .unwrap();
        self.keys().create(&PostParams::default(), &key).await
    }

    /// A ClusterTwilioAccount named `<namespace>-shared` for the fake's account, whose credentials
    /// are this namespace's Secret "twilio-credentials", with these allowedNamespaces.
    pub async fn create_cluster_account(&self, allowed_namespaces: serde_json::Value) -> String {
        let name = format!("{}-shared", self.namespace);
        let account: ClusterTwilioAccount = serde_json::from_value(json!({
            "apiVersion": "twilio-operator.dev/v1alpha1", "kind": "ClusterTwilioAccount",
            "metadata": {"name": name},
            "spec": {
                "accountSid": ACCOUNT_SID,
                "credentialsSecretRef": {"name": "twilio-credentials", "namespace": self.namespace},
                "allowedNamespaces": allowed_namespaces,
            },
        }))
        .unwrap();
        Api::<ClusterTwilioAccount>::all(self.client.clone())
            .create(&PostParams::default(), &account)
            .await
            .expect("create ClusterTwilioAccount");
        name
    }

    pub async fn delete_key(&self, name: &str) {
        self.keys().delete(name, &DeleteParams::default()).await.expect("delete TwilioApiKey");
    }

    /// Waits until the key's Ready condition has this status and reason.
    pub async fn wait_for_condition(&self, name: &str, status: &str, reason: &str) -> TwilioApiKey {
        let keys = self.keys();
        wait_until(&format!("TwilioApiKey {name} Ready={status} reason={reason}"), || async {
            let key = keys.get_opt(name).await.ok().flatten()?;
            let conditions = &key.status.as_ref()?.conditions;
            let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
            (ready.status == status && ready.reason == reason).then_some(key)
        })
        .await
    }

    pub async fn wait_ready(&self, name: &str) -> TwilioApiKey {
        self.wait_for_condition(name, "True", "KeyReady").await
    }

    /// Asks for a rotation through the twilio-operator.dev/rotate annotation.
    pub async fn request_rotation(&self, name: &str, value: &str) {
        let annotate = json!({"metadata": {"annotations": {"twilio-operator.dev/rotate": value}}});
        self.keys().patch(name, &PatchParams::default(), &Patch::Merge(&annotate)).await.expect("annotate");
    }

    /// Waits until the key is Ready with a key SID other than `old`.
    pub async fn wait_new_key(&self, name: &str, old: &str) -> TwilioApiKey {
        let keys = self.keys();
        wait_until(&format!("{name} to deliver a key other than {old}"), || async {
            let key = keys.get(name).await.ok()?;
            let status = key.status.as_ref()?;
            let ready = status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
            (ready && status.key_sid.as_deref().is_some_and(|sid| sid != old)).then_some(key)
        })
        .await
    }

    pub async fn wait_gone(&self, name: &str) {
        let keys = self.keys();
        wait_until(&format!("TwilioApiKey {name} to be gone"), || async {
            matches!(keys.get_opt(name).await, Ok(None)).then_some(())
        })
        .await
    }

    /// Every Event recorded in the namespace.
    pub async fn events(&self) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        events.list(&ListParams::default()).await.expect("list Events").items
    }

    /// Reasons of the Events recorded for an object.
    pub async fn event_reasons(&self, object_name: &str) -> Vec<String> {
        self.events()
            .await
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object_name))
            .filter_map(|e| e.reason)
            .collect()
    }

    /// How many Events with this reason were recorded in the namespace (series counted).
    /// Waits for an Event with this reason about the object: Events are recorded after the
    /// status write a test usually waits for.
    pub async fn wait_for_event(&self, object_name: &str, reason: &str) {
        wait_until(&format!("a {reason} Event about {object_name}"), || async {
            self.event_reasons(object_name).await.iter().any(|r| r == reason).then_some(())
        })
        .await
    }

    pub async fn event_count(&self, reason: &str) -> i32 {
        self.events()
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .map(|e| e.series.map_or(1, |s| s.count))
            .sum()
    }

    /// The Secret's three values (account SID, key SID, key secret) under the default data keys.
    pub async fn delivered_pair(&self, secret_name: &str) -> (String, String, String) {
        let secret = self.secrets().get(secret_name).await.expect("Secret exists");
        let data = secret.data.expect("Secret has data");
        let value =
            |k: &str| String::from_utf8(data.get(k).unwrap_or_else(|| panic!("Secret lacks {k}")).0.clone()).unwrap();
        (value("TWILIO_ACCOUNT_SID"), value("TWILIO_API_KEY"), value("TWILIO_API_SECRET"))
    }

    /// Whether Twilio (the fake, over HTTP, as any client would) accepts the pair. Injected
    /// 429/503 answers are retried, as a client would.
    pub async fn twilio_accepts(&self, account_sid: &str, key_sid: &str, key_secret: &str) -> bool {
        for _ in 0..50 {
            let response = reqwest::Client::new()
                .get(format!("{}/2010-04-01/Accounts/{account_sid}.json", self.fake.url()))
                .basic_auth(key_sid, Some(key_secret))
                .send()
                .await
                .expect("reach fake Twilio");
            match response.status().as_u16() {
                429 | 503 => tokio::time::sleep(Duration::from_millis(50)).await,
                status => return status == 200,
            }
        }
        panic!("fake Twilio kept answering 429/503")
    }
}

/// Polls `check` until it yields a value, failing the test after two minutes.
/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free port").port()
}

pub async fn wait_until<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_up_to(Duration::from_secs(120), what, check).await
}

/// Polls `check` until it yields a value, failing the test after `limit`.
pub async fn wait_up_to<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
