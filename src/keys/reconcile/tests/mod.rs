//! The executor without a cluster: the operator's own `kube::Client` over a scripted API server
//! ([`fake_kube`]), the project's fake Twilio in process, and a clock the tests move. For every
//! kind of step, a test asserts the order of its effects and what a failure after each of them
//! leaves behind, as the next pass finds it.

mod fake_kube;
mod issuing;
mod rollouts;
mod steps;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use fake_twilio::{FakeAccount, FakeKey, FakeTwilio};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use self::fake_kube::{FakeKube, Timeline};
use super::reconcile;
use crate::api::TwilioApiKey;
use crate::error::Error;
use crate::runtime::context::{Config, Context, ManualClock};
use crate::runtime::metrics::Metrics;
use crate::twilio::{Endpoint, RequestObserver, RetryPolicy, TwilioClient};

const ACCOUNT: &str = "AC00000000000000000000000000000001";
const TOKEN: &str = "account-auth-token";
const KEYS: &str = "/apis/twilio-operator.dev/v1alpha1/namespaces/team/twilioapikeys";
const SECRETS: &str = "/api/v1/namespaces/team/secrets";
const KEY: &str = "/apis/twilio-operator.dev/v1alpha1/namespaces/team/twilioapikeys/app";
const SECRET: &str = "/api/v1/namespaces/team/secrets/app";

/// Each Twilio request on the timeline, when its answer came: "twilio create_key 201".
#[derive(Debug)]
struct TwilioOnTimeline(Timeline);

impl RequestObserver for TwilioOnTimeline {
    fn request_done(&self, operation: &'static str, status: &str, _elapsed: Duration) {
        self.0.push(format!("twilio {operation} {status}"));
    }
}

struct Harness {
    kube: FakeKube,
    twilio: FakeTwilio,
    timeline: Timeline,
    clock: Arc<ManualClock>,
    ctx: Arc<Context>,
}

impl Harness {
    /// Namespace `team` with TwilioAccount `main` (its auth token in Secret `twilio-creds`).
    async fn new() -> Self {
        let timeline = Timeline::default();
        let account = FakeAccount { sid: ACCOUNT.into(), auth_token: TOKEN.into() };
        let twilio = FakeTwilio::start("127.0.0.1:0".parse().unwrap(), vec![account]).await.unwrap();
        let kube = FakeKube::new(timeline.clone());
        kube.put("/api/v1/namespaces", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}));
        let token = base64::engine::general_purpose::STANDARD.encode(TOKEN);
        kube.put(
            SECRETS,
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "twilio-creds", "namespace": "team"}, "data": {"TWILIO_AUTH_TOKEN": token}}),
        );
        kube.put(
            "/apis/twilio-operator.dev/v1alpha1/namespaces/team/twilioaccounts",
            json!({"apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioAccount",
                "metadata": {"name": "main", "namespace": "team"},
                "spec": {"accountSid": ACCOUNT, "credentialsSecretRef": {"name": "twilio-creds"}}}),
        );
        let retry = RetryPolicy { attempts: 1, ..RetryPolicy::default() };
        let twilio_client = TwilioClient::new(Endpoint::Override(twilio.url()), retry)
            .unwrap()
            .with_observer(Arc::new(TwilioOnTimeline(timeline.clone())));
        let config = Config {
            resync_interval: Duration::from_secs(600),
            rollout_deadline: Duration::from_secs(600),
            rollout_restart_delay: Duration::from_secs(10),
            max_key_creations_per_hour: 100,
            max_retiring_keys: 3,
            watch_namespaces: Vec::new(),
        };
        let clock = Arc::new(ManualClock::new(Timestamp::now()));
        let ctx =
            Context::new(kube.client(), twilio_client, config, Arc::new(Metrics::new())).with_clock(clock.clone());
        Self { kube, twilio, timeline, clock, ctx: Arc::new(ctx) }
    }

    /// TwilioApiKey `team/app` with this spec (the account is `main` unless it says otherwise).
    fn apply(&self, spec: Value) {
        self.apply_named("app", spec);
    }

    /// TwilioApiKey `team/<name>` (uid `uid-<name>`) with this spec.
    fn apply_named(&self, name: &str, mut spec: Value) {
        if spec["accountRef"].is_null() {
            spec["accountRef"] = json!({"name": "main"});
        }
        let path = format!("{KEYS}/{name}");
        match self.kube.get(&path) {
            None => {
                self.kube.put(
                    KEYS,
                    json!({"apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioApiKey",
                        "metadata": {"name": name, "namespace": "team", "uid": format!("uid-{name}")}, "spec": spec}),
                );
            }
            Some(_) => self.kube.edit(&path, |key| key["spec"] = spec),
        }
    }

    fn key(&self) -> TwilioApiKey {
        self.key_named("app")
    }

    fn key_named(&self, name: &str) -> TwilioApiKey {
        let path = format!("{KEYS}/{name}");
        serde_json::from_value(self.kube.get(&path).unwrap_or_else(|| panic!("TwilioApiKey team/{name}"))).unwrap()
    }

    /// One pass of TwilioApiKey `team/<name>`.
    async fn pass_on(&self, name: &str) -> Result<Action, Error> {
        reconcile(Arc::new(self.key_named(name)), self.ctx.clone()).await
    }

    fn secret(&self) -> Option<Secret> {
        self.kube.get(SECRET).map(|s| serde_json::from_value(s).unwrap())
    }

    /// One pass, as the controller runs it on the resource as the API server holds it now.
    async fn pass(&self) -> Result<Action, Error> {
        reconcile(Arc::new(self.key()), self.ctx.clone()).await
    }

    /// Passes until one ends without an error and nothing more to do at once (at most 5).
    async fn settle(&self) {
        for _ in 0..5 {
            if let Ok(action) = self.pass().await
                && action != Action::requeue(Duration::from_millis(200))
                && action != Action::requeue(Duration::from_secs(1))
            {
                return;
            }
        }
        panic!("the resource did not settle in 5 passes: {:?}", self.key().status);
    }

    /// What happened since the last call: writes to Kubernetes and Twilio requests, in order,
    /// without the Events (written while the key is renamed) and the account's verification.
    fn effects(&self) -> Vec<String> {
        self.timeline.take().into_iter().filter(|e| !e.starts_with("event ")).collect()
    }

    fn live_keys(&self) -> Vec<FakeKey> {
        self.twilio.keys().into_iter().filter(|k| k.account_sid == ACCOUNT).collect()
    }

    /// The SID the Secret delivers, if any.
    fn delivered_sid(&self) -> Option<String> {
        let data = self.secret()?.data?;
        Some(String::from_utf8(data.get("TWILIO_API_KEY")?.0.clone()).unwrap())
    }

    fn recorded_sid(&self) -> Option<String> {
        self.key().status?.key_sid
    }

    fn advance(&self, by: SignedDuration) {
        self.clock.advance(by);
    }
}

const FINALIZER_ADDED: &str = "patch twilioapikeys/app";
const STATUS: &str = "patch twilioapikeys/app/status";

/// A resource that created its key, delivered it and settled; the timeline emptied.
async fn delivered() -> Harness {
    let h = Harness::new().await;
    h.apply(json!({}));
    h.settle().await;
    h.timeline.take();
    h
}

fn pending_name() -> String {
    "twilio-operator:pending:uid-app".into()
}
