//! Crash safety: the operator is SIGKILLed at random instants while keys are created, rotated
//! and deleted, with Twilio answering a share of requests with 429/503 and added latency. After
//! it settles, no key is leaked or duplicated and every Secret delivers a working pair.

use twilio_operator_testkit as support;

use std::collections::BTreeSet;
use std::time::Duration;

use fake_twilio::Faults;
use rand::Rng;
use serde_json::json;
use support::{TestEnv, is_ready, poll_until, wait_until};

const KILLS: usize = 50;

#[tokio::test]
async fn sigkilled_at_random_instants_the_operator_leaks_no_key_and_loses_no_secret() {
    let mut env = TestEnv::new("crash").await;
    env.fake.set_faults(Faults { error_rate: 0.2, latency_ms: 30, response_delay_ms: 250 });
    let spec = json!({"rotation": {"gracePeriod": "2s"}});
    let mut live: Vec<String> = Vec::new();
    let mut deleted: Vec<String> = Vec::new();
    let mut next = 0;
    for _ in 0..12 {
        env.create_key(&format!("k{next}"), spec.clone()).await;
        live.push(format!("k{next}"));
        next += 1;
    }
    let (mut created, mut rotated) = (12, 0);
    for kill in 0..KILLS {
        env.start_operator(&["--resync-interval", "5s"]);
        let (action, pick, pause) = {
            let mut rng = rand::rng();
            (rng.random_range(0..4), rng.random_range(0..live.len().max(1)), rng.random_range(50..1200))
        };
        match action {
            0 => {
                env.create_key(&format!("k{next}"), spec.clone()).await;
                live.push(format!("k{next}"));
                next += 1;
                created += 1;
            }
            1 if !live.is_empty() => {
                env.patch_spec(&live[pick], json!({"rotation": {"trigger": format!("kill-{kill}")}})).await;
                rotated += 1;
            }
            2 if live.len() > 4 => {
                let name = live.remove(pick);
                env.delete_key(&name).await;
                deleted.push(name);
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(pause)).await;
        env.stop_operator(); // SIGKILL
    }

    env.fake.set_faults(Faults::default());
    env.start_operator(&["--resync-interval", "3s"]);
    let keys = env.keys();
    for name in &deleted {
        env.wait_gone(name).await;
    }
    let mut recorded = BTreeSet::new();
    let mut named = Vec::new();
    for name in &live {
        // Settled means Ready for the latest spec: a rotation asked for just before the last kill
        // may not have started yet, and Ready for the previous generation names the key it retires.
        let key = wait_until(&format!("{name} Ready for its latest spec with no retiring keys"), || async {
            let key = keys.get(name).await.ok()?;
            let status = key.status.as_ref()?;
            let current = status.observed_generation == key.metadata.generation;
            (current && is_ready(&status.conditions) && status.retiring_keys.is_empty()).then_some(key)
        })
        .await;
        let sid = key.status.clone().unwrap().key_sid.unwrap();
        let (account, delivered, secret) = env.delivered_pair(name).await;
        assert_eq!(delivered, sid, "{name}: the Secret delivers the recorded key");
        assert!(env.twilio_accepts(&account, &delivered, &secret).await, "{name}: the pair authenticates");
        assert!(recorded.insert(sid.clone()), "{name}: no two resources share a key");
        named.push((sid, key.desired_friendly_name()));
    }
    // A create sent just before a kill may be carried out after the last restart's listing; the
    // periodic sweep (one listing per resync interval) finds it. Settled means that happened.
    let settling = poll_until(Duration::from_secs(120), "Twilio to hold exactly the recorded keys", || async {
        let in_twilio: BTreeSet<String> = env.fake.keys().into_iter().map(|k| k.sid).collect();
        Ok((in_twilio == recorded).then_some(in_twilio))
    })
    .await;
    let settled = settling.unwrap_or_else(|error| {
        let unrecorded: Vec<String> = env
            .fake
            .keys()
            .into_iter()
            .filter(|k| !recorded.contains(&k.sid))
            .map(|k| format!("{} {:?} created {}", k.sid, k.friendly_name, k.date_created))
            .collect();
        let missing: Vec<&String> = recorded.iter().filter(|sid| env.fake.key(sid.as_str()).is_none()).collect();
        panic!(
            "{error}: in Twilio but recorded by no resource: {unrecorded:?}; recorded but not in Twilio: {missing:?}"
        )
    });
    // A kill between the status write that records a key and its rename leaves it under its
    // pending name; the drift check names it.
    wait_until("every recorded key to carry its resource's name in Twilio", || async {
        named.iter().all(|(sid, name)| env.fake.friendly_name(sid).as_deref() == Some(name.as_str())).then_some(())
    })
    .await;
    let in_twilio: BTreeSet<String> = env.fake.keys().into_iter().map(|k| k.sid).collect();
    let counts = env.fake.request_counts();
    let orphans_deleted = env.event_count("OrphanKeyDeleted").await;
    println!(
        "kills={KILLS} resources_created={created} rotations_requested={rotated} deleted={} live={} \
         twilio_creates={} orphans_swept={orphans_deleted} keys_in_twilio={}",
        deleted.len(),
        live.len(),
        counts.get("create_key 201").copied().unwrap_or(0),
        in_twilio.len()
    );
    assert_eq!(settled, recorded, "Twilio holds exactly the keys the resources record: none leaked");
}

#[tokio::test]
async fn a_key_whose_creator_died_before_delivering_it_is_found_and_deleted() {
    let mut env = TestEnv::new("orphan").await;
    // Twilio creates the key but answers late; the operator dies before it learns the secret.
    env.fake.set_faults(Faults { response_delay_ms: 3000, ..Default::default() });
    env.start_operator(&[]);
    env.create_key("k", json!({})).await;
    let orphan =
        wait_until("Twilio to create the key", || async { env.fake.keys().first().map(|k| k.sid.clone()) }).await;
    env.stop_operator(); // SIGKILL while the create's answer is in flight
    assert!(env.keys().get("k").await.unwrap().status.and_then(|s| s.key_sid).is_none(), "nothing recorded it");

    env.fake.set_faults(Faults::default());
    env.start_operator(&[]);
    let sid = env.wait_ready("k").await.status.unwrap().key_sid.unwrap();
    assert_ne!(sid, orphan);
    assert!(env.fake.key(&orphan).is_none(), "the undeliverable key is deleted");
    assert_eq!(env.fake.keys().len(), 1, "one key for one resource");
    assert_eq!(env.event_count("OrphanKeyDeleted").await, 1);
}
