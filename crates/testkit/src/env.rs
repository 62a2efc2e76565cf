//! One test's world on the shared control plane.

use std::time::Duration;

use fake_twilio::FakeTwilio;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use twilio_operator::api::conditions::ready_of;
use twilio_operator::api::{ClusterTwilioAccount, TwilioAccount, TwilioApiKey};

use crate::{
    ACCOUNT_SID, AUTH_TOKEN, Operator, client, create_account, create_key, create_secret, gone, ready_sid,
    setup_namespace, start_fake_twilio, wait_until,
};

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
        setup_namespace(&client, &namespace, ACCOUNT_SID, AUTH_TOKEN).await.expect("set up the test namespace");
        let fake = start_fake_twilio(ACCOUNT_SID, AUTH_TOKEN).await.expect("start fake Twilio");
        TestEnv { client, namespace, fake, operator: None }
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

    pub fn accounts(&self) -> Api<TwilioAccount> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub async fn create_secret(&self, name: &str, data: &[(&str, &str)]) {
        create_secret(&self.client, &self.namespace, name, data).await.expect("create Secret");
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
        create_account(&self.client, &self.namespace, name, account_sid, credentials_secret)
            .await
            .expect("create TwilioAccount");
    }

    /// Creates a TwilioApiKey with the given spec (accountRef defaults to the "main" account).
    pub async fn create_key(&self, name: &str, spec: serde_json::Value) -> TwilioApiKey {
        self.try_create_key(name, spec).await.expect("create TwilioApiKey")
    }

    /// Creates a TwilioApiKey with the given spec (accountRef defaults to the "main" account);
    /// the API server's answer, admitted or not.
    pub async fn try_create_key(&self, name: &str, spec: serde_json::Value) -> Result<TwilioApiKey, kube::Error> {
        create_key(&self.client, &self.namespace, name, spec).await
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

    /// Applies a JSON merge patch to a key's spec (as `kubectl patch --type merge` would).
    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        let patch = json!({"spec": spec});
        self.keys().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch spec");
    }

    pub async fn delete_key(&self, name: &str) {
        self.keys().delete(name, &DeleteParams::default()).await.expect("delete TwilioApiKey");
    }

    /// Waits until the key's Ready condition has this status and reason.
    pub async fn wait_for_condition(&self, name: &str, status: &str, reason: &str) -> TwilioApiKey {
        let keys = self.keys();
        wait_until(&format!("TwilioApiKey {name} Ready={status} reason={reason}"), || async {
            let key = keys.get_opt(name).await.ok().flatten()?;
            (ready_of(&key.status.as_ref()?.conditions)? == (status, reason)).then_some(key)
        })
        .await
    }

    /// Waits until the TwilioAccount's Ready condition has this status and reason.
    pub async fn wait_for_account_condition(&self, name: &str, status: &str, reason: &str) {
        let accounts = self.accounts();
        wait_until(&format!("TwilioAccount {name} Ready={status} reason={reason}"), || async {
            let account = accounts.get(name).await.ok()?;
            (ready_of(&account.status?.conditions)? == (status, reason)).then_some(())
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
            ready_sid(&key).is_some_and(|sid| sid != old).then_some(key)
        })
        .await
    }

    pub async fn wait_gone(&self, name: &str) {
        let keys = self.keys();
        wait_until(&format!("TwilioApiKey {name} to be gone"), || gone(&keys, name)).await
    }

    pub async fn wait_secret_gone(&self, name: &str) {
        let secrets = self.secrets();
        wait_until(&format!("Secret {name} to be gone"), || gone(&secrets, name)).await
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

    /// Waits for an Event with this reason about the object: Events are recorded after the
    /// status write a test usually waits for.
    pub async fn wait_for_event(&self, object_name: &str, reason: &str) {
        wait_until(&format!("a {reason} Event about {object_name}"), || async {
            self.event_reasons(object_name).await.iter().any(|r| r == reason).then_some(())
        })
        .await
    }

    /// How many Events with this reason were recorded in the namespace (series counted).
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
