//! What a namespace needs (the namespace, a credentials Secret, a TwilioAccount, TwilioApiKeys),
//! the fake Twilio that serves the account, and what a status says.

use std::fmt::Debug;

use fake_twilio::{FakeAccount, FakeTwilio};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, PostParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;
use twilio_operator::api::conditions::ready_of;
use twilio_operator::api::{TwilioAccount, TwilioApiKey};

use twilio_operator::twilio::{AccountConnection, Credentials, SecretString};

fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> kube::Result<T> {
    serde_json::from_value(value).map_err(kube::Error::SerdeError)
}

pub async fn create_namespace(client: &Client, name: &str) -> kube::Result<Namespace> {
    let namespace = from_json(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await
}

/// A Secret `name` holding `data` (as stringData).
pub async fn create_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    data: &[(&str, &str)],
) -> kube::Result<Secret> {
    let string_data: serde_json::Map<String, serde_json::Value> =
        data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let secret = from_json(json!({"metadata": {"name": name}, "stringData": string_data}))?;
    Api::<Secret>::namespaced(client.clone(), namespace).create(&PostParams::default(), &secret).await
}

/// A TwilioAccount `name` for `account_sid` whose credentials are the Secret `credentials_secret`.
pub async fn create_account(
    client: &Client,
    namespace: &str,
    name: &str,
    account_sid: &str,
    credentials_secret: &str,
) -> kube::Result<TwilioAccount> {
    let account = from_json(json!({
        "apiVersion": "twilio-operator.dev/v1alpha1",
        "kind": "TwilioAccount",
        "metadata": {"name": name},
        "spec": {"accountSid": account_sid, "credentialsSecretRef": {"name": credentials_secret}},
    }))?;
    Api::<TwilioAccount>::namespaced(client.clone(), namespace).create(&PostParams::default(), &account).await
}

/// A TwilioApiKey with the given spec (accountRef defaults to the "main" account); the API
/// server's answer, admitted or not.
pub async fn create_key(
    client: &Client,
    namespace: &str,
    name: &str,
    mut spec: serde_json::Value,
) -> kube::Result<TwilioApiKey> {
    if spec.get("accountRef").is_none() {
        spec["accountRef"] = json!({"name": "main"});
    }
    let key = from_json(json!({
        "apiVersion": "twilio-operator.dev/v1alpha1",
        "kind": "TwilioApiKey",
        "metadata": {"name": name},
        "spec": spec,
    }))?;
    Api::<TwilioApiKey>::namespaced(client.clone(), namespace).create(&PostParams::default(), &key).await
}

/// A team's namespace: the namespace, a Secret "twilio-credentials" holding the auth token, and
/// a TwilioAccount "main" for the account that uses it.
pub async fn setup_namespace(
    client: &Client,
    namespace: &str,
    account_sid: &str,
    auth_token: &str,
) -> kube::Result<()> {
    create_namespace(client, namespace).await?;
    create_secret(client, namespace, "twilio-credentials", &[("TWILIO_AUTH_TOKEN", auth_token)]).await?;
    create_account(client, namespace, "main", account_sid, "twilio-credentials").await?;
    Ok(())
}

/// The fake Twilio on a free port of 127.0.0.1, serving one account.
pub async fn start_fake_twilio(account_sid: &str, auth_token: &str) -> std::io::Result<FakeTwilio> {
    let account = FakeAccount { sid: account_sid.into(), auth_token: auth_token.into() };
    FakeTwilio::start(([127, 0, 0, 1], 0).into(), vec![account]).await
}

/// The operator's Twilio client's connection to an account of the fake, authenticated by the
/// account SID and `password` (its auth token, or not).
pub fn fake_connection(fake: &FakeTwilio, account_sid: &str, password: &str) -> AccountConnection {
    AccountConnection {
        tenant: String::new(),
        account_sid: account_sid.into(),
        region: "us1".into(),
        edge: None,
        base_url: fake.url(),
        credentials: Credentials { username: account_sid.into(), password: SecretString::from(password) },
    }
}

/// Whether these conditions say Ready=True.
pub fn is_ready(conditions: &[Condition]) -> bool {
    ready_of(conditions).is_some_and(|(status, _)| status == "True")
}

/// The key SID a TwilioApiKey records, once it is Ready.
pub fn ready_sid(key: &TwilioApiKey) -> Option<&str> {
    let status = key.status.as_ref()?;
    if is_ready(&status.conditions) { status.key_sid.as_deref() } else { None }
}

/// `Some(())` once the object is gone: a check for `wait_until`.
pub async fn gone<K>(api: &Api<K>, name: &str) -> Option<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    matches!(api.get_opt(name).await, Ok(None)).then_some(())
}
