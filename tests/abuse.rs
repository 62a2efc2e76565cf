//! What one tenant can make the operator spend of what tenants share (docs/promises.md, promise
//! 7): Twilio calls, request slots, the operator's memory, live keys in the account, and what
//! status and Events tell. Each test is a defect found on a running operator, run here with the
//! real binary against the real control plane and the fake Twilio; the notes of the change that
//! fixed them say what each showed before. Defect 4 (a shared account held by a namespace it
//! does not allow) is in tests/account_release.rs: every operator of this binary's tests
//! reconciles every ClusterTwilioAccount, and that test needs the only one.

use twilio_operator_testkit as support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use fake_twilio::AnswerFault;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::{ACCOUNT_SID, AUTH_TOKEN, TestEnv, create_key, create_namespace, wait_up_to};
use twilio_operator::api::conditions::ready_of;
use twilio_operator::api::{ClusterTwilioAccount, TwilioApiKey};

/// Requests the fake served for this operation ("create_key", "delete_key", ...), any status.
fn calls(env: &TestEnv, operation: &str) -> u64 {
    env.fake.request_counts().iter().filter(|(k, _)| k.starts_with(&format!("{operation} "))).map(|(_, n)| n).sum()
}

/// Reconciliations of TwilioApiKeys the operator counted, whatever their outcome.
async fn key_reconciles(env: &TestEnv) -> f64 {
    let metrics = env.operator.as_ref().expect("operator").metrics().await.expect("metrics");
    metrics
        .iter()
        .filter(|(series, _)| {
            series.starts_with("twilio_operator_reconciles_total{") && series.contains("TwilioApiKey")
        })
        .map(|(_, value)| value)
        .sum()
}

fn condition<'a>(
    key: &'a TwilioApiKey,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    key.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

fn message(key: &TwilioApiKey) -> String {
    condition(key, "Ready").map(|c| c.message.clone()).unwrap_or_default()
}

/// Defect 1: a key due for interval rotation whose Secret the tenant made immutable created a key,
/// failed to write the Secret, deleted the key and stalled, 100 ms later again, forever: the
/// deadline in its status stayed in the past.
#[tokio::test]
async fn a_key_due_for_rotation_whose_secret_cannot_be_written_backs_off_instead_of_spinning() {
    let env = TestEnv::with_operator("spin").await;
    env.create_key("k", json!({"rotation": {"interval": "1m", "gracePeriod": "0s"}})).await;
    let ready = env.wait_ready("k").await;
    let due: Timestamp = ready.status.unwrap().next_rotation_at.expect("an interval rotation is due").parse().unwrap();
    let immutable = json!({"immutable": true});
    env.secrets().patch("k", &PatchParams::default(), &Patch::Merge(&immutable)).await.expect("the tenant's edit");

    wait_up_to(Duration::from_secs(150), "k to stall on its immutable Secret", || async {
        let key = env.keys().get("k").await.ok()?;
        (ready_of(&key.status.as_ref()?.conditions)? == ("False", "SecretRejected")).then_some(())
    })
    .await;
    assert!(Timestamp::now() >= due, "stalled by the rotation that fell due");
    let (creates, deletes) = (calls(&env, "create_key"), calls(&env, "delete_key"));
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (more_creates, more_deletes) = (calls(&env, "create_key") - creates, calls(&env, "delete_key") - deletes);
    println!("in the 20 s after the stall: {more_creates} creates, {more_deletes} deletes");
    assert!(more_creates <= 1 && more_deletes <= 1, "{more_creates} creates and {more_deletes} deletes in 20 s");
    assert!(env.fake.key(ready_sid(&env, "k").await.as_str()).is_some(), "the delivered key is kept");
}

async fn ready_sid(env: &TestEnv, name: &str) -> String {
    env.keys().get(name).await.unwrap().status.unwrap().key_sid.unwrap()
}

/// Budget: every path that creates a key counts against the resource's budget; past it the
/// resource stalls with RotationBudgetExceeded and an Event, and asks Twilio for nothing.
#[tokio::test]
async fn a_resource_that_keeps_asking_for_new_keys_stalls_at_its_budget() {
    let mut env = TestEnv::new("budget").await;
    env.start_operator(&["--max-key-creations-per-hour", "4"]);
    env.create_key("k", json!({"rotation": {"gracePeriod": "0s"}})).await;
    let mut sid = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();
    for rotation in 1..=3 {
        env.request_rotation("k", &rotation.to_string()).await;
        sid = env.wait_new_key("k", &sid).await.status.unwrap().key_sid.unwrap();
    }
    assert_eq!(calls(&env, "create_key"), 4);
    for rotation in 4..=10 {
        env.request_rotation("k", &rotation.to_string()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let stalled = env.wait_for_condition("k", "False", "RotationBudgetExceeded").await;
    assert!(message(&stalled).contains("--max-key-creations-per-hour"), "{}", message(&stalled));
    env.wait_for_event("k", "RotationBudgetExceeded").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(calls(&env, "create_key"), 4, "no create past the budget");
    assert!(env.fake.key(&sid).is_some(), "the delivered key stays");
    env.delete_key("k").await;
    env.wait_gone("k").await;
    assert!(env.fake.keys().is_empty(), "a stalled resource still cleans up: {:?}", env.fake.keys());
}

/// Defect 2: a rollout restart target that does not exist was asked for every 100 ms for as long
/// as the old key waited (up to maxGracePeriod).
#[tokio::test]
async fn a_rollout_restart_target_that_does_not_exist_is_retried_with_backoff() {
    let mut env = TestEnv::new("notarget").await;
    let metrics_addr = format!("127.0.0.1:{}", support::free_port());
    env.start_operator(&["--metrics-addr", &metrics_addr]);
    let spec = json!({
        "rotation": {"gracePeriod": "1s", "maxGracePeriod": "10m"},
        "rolloutRestartTargets": [{"kind": "Deployment", "name": "nowhere"}],
    });
    env.create_key("k", spec).await;
    let old = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();
    env.request_rotation("k", "1").await;
    env.wait_new_key("k", &old).await;
    env.wait_for_event("k", "RolloutRestartFailed").await;
    let before = key_reconciles(&env).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let passes = key_reconciles(&env).await - before;
    let key = env.keys().get("k").await.unwrap();
    let entry = key.status.as_ref().unwrap().rollout[0].clone();
    println!("15 s with a missing target: {passes} reconciliations; {entry:?}");
    // Retries after 5 s and 10 s (and a few passes for the status writes they make).
    assert!(passes <= 8.0, "{passes} reconciliations in 15 s");
    assert!(entry.restart_failures >= 2 && entry.next_restart_at.is_some(), "{entry:?}");
    let missing = condition(&key, "RolloutTargetMissing").expect("the RolloutTargetMissing condition").message.clone();
    assert!(missing.contains("Deployment/nowhere") && missing.contains("not found"), "{missing}");
    assert!(env.fake.key(&old).is_some(), "the old key waits for the target");
    assert_eq!(env.event_count("RolloutRestartFailed").await, 1, "one Warning, not one per retry");
}

/// Defect 3: annotation values had no bound, and the cache held whole objects: each hostile
/// object cost the operator its full size. Now the schema bounds what the API server accepts, a
/// spec over 32 KiB is stalled and held stripped, and metadata the operator never reads is not
/// held (the bench measures the memory; see docs/development/performance.md).
#[tokio::test]
async fn oversized_specs_are_refused_at_admission_or_stalled_without_a_key() {
    let env = TestEnv::with_operator("oversized").await;
    let huge = json!({"secret": {"annotations": {"big": "x".repeat(1_300_000)}}});
    let refused = env.try_create_key("huge", huge).await.expect_err("the API server refuses it");
    println!("refused: {}", twilio_operator::api::text::shorten(&support_message(&refused), 120));
    println!("refused: ...{}", &support_message(&refused)[support_message(&refused).len().saturating_sub(60)..]);
    assert!(support_message(&refused).contains("4096"), "{refused}");

    let annotations: BTreeMap<String, String> = (0..16).map(|i| (format!("a{i}"), "v".repeat(4096))).collect();
    env.create_key("large", json!({"secret": {"annotations": annotations}})).await;
    let stalled = env.wait_for_condition("large", "False", "InvalidSpec").await;
    assert!(message(&stalled).contains("the operator acts on at most 32 KiB"), "{}", message(&stalled));
    assert!(env.fake.keys().is_empty(), "no key for a spec the operator does not hold");

    // Metadata it never reads (here 200 KiB of annotations) changes nothing.
    env.create_key("padded", json!({})).await;
    let padding = json!({"metadata": {"annotations": {"padding": "p".repeat(200_000)}}});
    env.keys().patch("padded", &PatchParams::default(), &Patch::Merge(&padding)).await.expect("annotate");
    env.wait_ready("padded").await;
    // Shrunk, the stalled one is reconciled.
    let shrunk = json!({"spec": {"secret": {"annotations": null}}});
    env.keys().patch("large", &PatchParams::default(), &Patch::Merge(&shrunk)).await.expect("shrink");
    env.wait_ready("large").await;
}

fn support_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Defect 5: with a long grace period, each rotation kept one more live key in the account.
#[tokio::test]
async fn a_resource_keeps_at_most_five_retiring_keys() {
    let env = TestEnv::with_operator("hoard").await;
    env.create_key("k", json!({"rotation": {"gracePeriod": "720h"}})).await;
    let mut sids = vec![env.wait_ready("k").await.status.unwrap().key_sid.unwrap()];
    for rotation in 1..=8 {
        env.request_rotation("k", &rotation.to_string()).await;
        let last = sids.last().unwrap().clone();
        sids.push(env.wait_new_key("k", &last).await.status.unwrap().key_sid.unwrap());
    }
    let status = env.keys().get("k").await.unwrap().status.unwrap();
    let retiring: Vec<&str> = status.retiring_keys.iter().map(|k| k.sid.as_str()).collect();
    assert_eq!(retiring, sids[3..8].iter().map(String::as_str).collect::<Vec<_>>(), "the five newest old keys");
    let live: Vec<String> = env.fake.keys().into_iter().map(|k| k.sid).collect();
    println!("after 8 rotations: {} live keys, {} retiring", live.len(), retiring.len());
    assert_eq!(live.len(), 6, "the current key and five old ones: {live:?}");
    for early in &sids[..3] {
        assert!(env.fake.key(early).is_none(), "{early} was deleted early");
    }
    wait_up_to(Duration::from_secs(30), "three RetiringKeyDeletedEarly Events", || async {
        (env.event_count("RetiringKeyDeletedEarly").await == 3).then_some(())
    })
    .await;
}

/// Defect 6: a template that fails only with the real secret (the stand-in check passes) told
/// the failing line, which a template can choose by a character of the secret: one edit per
/// character, readable by anyone who can read status or Events.
#[tokio::test]
async fn a_template_failing_only_with_the_real_secret_tells_nothing_that_depends_on_it() {
    let env = TestEnv::with_operator("oracle").await;
    env.create_key("k", json!({})).await;
    env.wait_ready("k").await;
    let (_, _, secret) = env.delivered_pair("k").await;
    let position = secret.chars().position(|c| c != '0').expect("a character that is not the stand-in's");
    let candidates = ('a'..='z').chain('A'..='Z').chain('1'..='9');
    let template: String = candidates
        .map(|c| format!("{{% if apiKeySecret[{position}] == '{c}' %}}{{{{ nope }}}}{{% endif %}}\n"))
        .collect();
    env.patch_spec("k", json!({"secret": {"template": {"data": {"ORACLE": template}}}})).await;
    let stalled = env.wait_for_condition("k", "False", "InvalidSpec").await;
    let told = message(&stalled);
    println!("told: {told}");
    assert!(!told.contains("line") && !told.contains("ORACLE") && !told.contains("undefined"), "{told}");
    let notes: Vec<String> = env.events().await.into_iter().filter_map(|e| e.note).collect();
    assert!(notes.iter().all(|n| !n.contains("line ")), "{notes:?}");
    let (_, _, still) = env.delivered_pair("k").await;
    assert_eq!(still, secret, "the Secret still delivers the key");
}

/// Defect 7: adoption turned holding a key's secret into deleting it on a shared account, and a
/// made-up secret learned which resource of which namespace holds a SID.
#[tokio::test]
async fn adoption_is_the_accounts_to_allow_and_a_refusal_names_no_other_namespace() {
    let mut env = TestEnv::new("adoptshare").await;
    let other = format!("{}-other", env.namespace);
    support::setup_namespace(&env.client, &other, ACCOUNT_SID, AUTH_TOKEN).await.expect("second namespace");
    env.start_operator(&["--watch-namespace", &other]);

    // A shared account allows no adoption unless its administrator says so.
    let account = env.create_cluster_account(json!({"namespaces": [env.namespace]})).await;
    let made = env.fake.create_key_directly(ACCOUNT_SID, "made by hand");
    let made_secret = env.fake.key(&made).unwrap().secret;
    env.create_secret("handmade", &[("TWILIO_API_KEY", &made), ("TWILIO_API_SECRET", &made_secret)]).await;
    let spec = json!({"accountRef": {"kind": "ClusterTwilioAccount", "name": account}, "secret": {"adopt": true}});
    env.create_key("handmade", spec).await;
    let refused = env.wait_for_condition("handmade", "False", "AdoptionRefused").await;
    assert!(message(&refused).contains("does not allow adoption"), "{}", message(&refused));
    assert!(env.fake.key(&made).is_some(), "nothing was done to the key");
    let accounts: Api<ClusterTwilioAccount> = Api::all(env.client.clone());
    let allow = json!({"spec": {"adoption": "Allowed"}});
    accounts.patch(&account, &PatchParams::default(), &Patch::Merge(&allow)).await.expect("allow adoption");
    let adopted = env.wait_ready("handmade").await;
    assert_eq!(adopted.status.unwrap().key_sid.as_deref(), Some(made.as_str()));

    // A made-up secret for another namespace's key learns nothing of that namespace.
    env.create_key("victim", json!({})).await;
    let victim_sid = env.wait_ready("victim").await.status.unwrap().key_sid.unwrap();
    create_key_secret(&env, &other, "stolen", &victim_sid, "made-up-secret").await;
    create_key(&env.client, &other, "stolen", json!({"secret": {"adopt": true}})).await.expect("create");
    let keys: Api<TwilioApiKey> = Api::namespaced(env.client.clone(), &other);
    let refusal = wait_up_to(Duration::from_secs(60), "the thief's refusal", || async {
        let key = keys.get("stolen").await.ok()?;
        (ready_of(&key.status.as_ref()?.conditions)? == ("False", "AdoptionRefused")).then_some(message(&key))
    })
    .await;
    println!("refusal: {refusal}");
    assert!(!refusal.contains(&env.namespace) && !refusal.contains("victim"), "{refusal}");
    assert!(refusal.contains("does not authenticate"), "{refusal}");
    assert!(env.fake.key(&victim_sid).is_some());
}

async fn create_key_secret(env: &TestEnv, namespace: &str, name: &str, sid: &str, secret: &str) {
    support::create_secret(&env.client, namespace, name, &[("TWILIO_API_KEY", sid), ("TWILIO_API_SECRET", secret)])
        .await
        .expect("create Secret");
}

/// Defect 8: answers from Twilio were read whole, and Twilio's error messages reached
/// conditions and Events with their control characters (terminal escape sequences) intact.
#[tokio::test]
async fn what_twilio_answers_is_read_bounded_and_reaches_no_terminal_raw() {
    let mut env = TestEnv::new("hostile").await;
    env.fake.set_answer_fault(Some(AnswerFault::PaddedListings(6 * 1024 * 1024)));
    env.start_operator(&[]);
    let accounts = env.accounts();
    let verdict = wait_up_to(Duration::from_secs(60), "the account's verdict on a 6 MiB listing", || async {
        let account = accounts.get("main").await.ok()?;
        let ready = account.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
        Some(format!("{} {}: {}", ready.status, ready.reason, ready.message))
    })
    .await;
    println!("account: {verdict}");
    assert!(verdict.contains("longer than 4096 KiB"), "{verdict}");

    env.fake.set_answer_fault(Some(AnswerFault::RejectCreates("no\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202e}txt".into())));
    env.create_key("k", json!({})).await;
    let stalled = env.wait_for_condition("k", "False", "TwilioRejected").await;
    let told = message(&stalled);
    println!("key: {told:?}");
    assert!(told.contains("no [2J ]0;pwned  txt"), "{told:?}");
    env.wait_for_event("k", "TwilioRejected").await;
    let notes: Vec<String> = env.events().await.into_iter().filter_map(|e| e.note).collect();
    for text in notes.iter().chain([&told]) {
        assert!(!text.chars().any(|c| c.is_control() || c == '\u{202e}'), "{text:?}");
    }
}

/// The promise as a whole: a namespace that does its worst (defects 1 to 5 at once, and a key in
/// a namespace the account does not allow) on a shared ClusterTwilioAccount does not hold up
/// another namespace's 20 new keys, and spends no more of Twilio than its budget.
#[tokio::test]
async fn one_namespace_at_its_worst_does_not_hold_up_another_on_a_shared_account() {
    let mut env = TestEnv::new("shared").await;
    let [attacker, victim, outsider] = ["attacker", "victim", "outsider"].map(|n| format!("{}-{n}", env.namespace));
    for namespace in [&attacker, &victim, &outsider] {
        create_namespace(&env.client, namespace).await.expect("namespace");
    }
    let account = env.create_cluster_account(json!({"namespaces": [attacker, victim]})).await;
    env.fake.record_requests(true);
    env.start_operator(&["--watch-namespace", &attacker, "--watch-namespace", &victim, "--watch-namespace", &outsider]);
    let shared = json!({"kind": "ClusterTwilioAccount", "name": account});
    let in_ns = |namespace: &str| -> Api<TwilioApiKey> { Api::namespaced(env.client.clone(), namespace) };
    let ready_in = |namespace: String, name: String| {
        let keys = in_ns(&namespace);
        async move {
            wait_up_to(Duration::from_secs(120), &format!("{namespace}/{name} Ready"), || async {
                let key = keys.get(&name).await.ok()?;
                (ready_of(&key.status.as_ref()?.conditions)? == ("True", "KeyReady")).then_some(key)
            })
            .await
        }
    };

    // The attacker's keys: one whose Secret it makes immutable, one waiting for a target that
    // does not exist, one that hoards old keys, ten as large as the operator acts on, and one in
    // a namespace the account does not allow.
    let create = |namespace: &str, name: &str, spec: serde_json::Value| {
        let (client, namespace, name) = (env.client.clone(), namespace.to_string(), name.to_string());
        let mut spec = spec;
        spec["accountRef"] = shared.clone();
        async move { create_key(&client, &namespace, &name, spec).await.expect("create key") }
    };
    create(&attacker, "spin", json!({"rotation": {"gracePeriod": "0s"}})).await;
    create(&attacker, "ghost", json!({"rotation": {"gracePeriod": "1s"}, "rolloutRestartTargets": [{"kind": "Deployment", "name": "nowhere"}]})).await;
    create(&attacker, "hoard", json!({"rotation": {"gracePeriod": "720h"}})).await;
    let annotations: BTreeMap<String, String> = (0..7).map(|i| (format!("a{i}"), "v".repeat(4000))).collect();
    for n in 0..10 {
        create(&attacker, &format!("fat-{n}"), json!({"secret": {"annotations": annotations}})).await;
    }
    create(&outsider, "outside", json!({})).await;
    for name in ["spin", "ghost", "hoard"] {
        ready_in(attacker.clone(), name.to_string()).await;
    }
    let immutable = json!({"immutable": true});
    Api::<Secret>::namespaced(env.client.clone(), &attacker)
        .patch("spin", &PatchParams::default(), &Patch::Merge(&immutable))
        .await
        .expect("immutable");

    // The attack: rotations asked for as fast as the API server takes them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attack = {
        let (keys, stop) = (in_ns(&attacker), stop.clone());
        tokio::spawn(async move {
            let mut round = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                round += 1;
                for name in ["spin", "ghost", "hoard"] {
                    let patch = json!({"metadata": {"annotations": {"twilio-operator.dev/rotate": round.to_string()}}});
                    let _ = keys.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            round
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;

    // The victim's 20 keys, while the attack goes on.
    let started = Instant::now();
    for n in 0..20 {
        create(&victim, &format!("app-{n}"), json!({})).await;
    }
    let mut slowest = Duration::ZERO;
    for n in 0..20 {
        ready_in(victim.clone(), format!("app-{n}")).await;
        slowest = started.elapsed();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let rounds = attack.await.unwrap();
    println!(
        "the victim's 20 keys were all Ready {:.1} s after the first was applied ({rounds} attack rounds)",
        slowest.as_secs_f64()
    );
    assert!(slowest < Duration::from_secs(30), "the victim waited {slowest:?}");

    // What the attacker's namespace cost Twilio: key creations by resource (the pending name
    // holds the resource's UID), and every call about its keys.
    let uids: HashMap<String, String> = in_ns(&attacker)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|k| (k.uid().unwrap(), k.name_any()))
        .collect();
    let requests = env.fake.recorded_requests();
    let mut creates: BTreeMap<String, u64> = BTreeMap::new();
    let mut created_by: HashMap<String, String> = HashMap::new();
    for request in requests.iter().filter(|r| r.method == "POST" && r.path.ends_with("/Keys")) {
        let name = request.form.iter().find(|(k, _)| k == "FriendlyName").map(|(_, v)| v.as_str()).unwrap_or("");
        let uid = name.strip_prefix("twilio-operator:pending:").unwrap_or("");
        if let Some(resource) = uids.get(uid) {
            *creates.entry(resource.clone()).or_default() += 1;
            if let Some(sid) = request.response.as_ref().and_then(|r| r["sid"].as_str()) {
                created_by.insert(sid.to_string(), resource.clone());
            }
        }
    }
    let about_attacker = requests.iter().filter(|r| created_by.keys().any(|sid| r.path.contains(sid.as_str()))).count();
    println!("attacker creates by resource: {creates:?}; calls naming its keys: {about_attacker}");
    for (resource, n) in &creates {
        assert!(*n <= 10, "{resource} created {n} keys, more than its budget of 10 an hour");
    }
    assert!(!creates.contains_key("outside"), "{creates:?}");
    // Each create is followed by at most a rename or a delete of that key, and its retirement.
    let total_creates: u64 = creates.values().sum();
    assert!(about_attacker as u64 <= 2 * total_creates, "{about_attacker} calls for {total_creates} creates");
    let mut live: BTreeMap<String, usize> = BTreeMap::new();
    for key in env.fake.keys() {
        if let Some(resource) = created_by.get(&key.sid) {
            *live.entry(resource.clone()).or_default() += 1;
        }
    }
    println!("attacker keys live in the account, by resource: {live:?}");
    for (resource, n) in &live {
        assert!(*n <= 6, "{resource} holds {n} live keys: its key and at most five retiring");
    }
}
