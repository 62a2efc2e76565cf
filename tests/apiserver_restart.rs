//! The API server goes away and comes back (its own test binary, so its own control plane), and
//! how long the operator takes to work again is measured and printed: from the moment the API
//! server serves TwilioApiKeys again (and, also printed, from when its /readyz answers ok) until
//! a key created then is Ready, one created before the outage is Ready and one deleted then is
//! gone. Only a generous ceiling is asserted;
//! the figure itself is for people (the machine is shared and noisy).

use twilio_operator_testkit as support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{TestEnv, control_plane, gone, ready_sid, wait_up_to};

#[tokio::test]
async fn an_api_server_restart_mid_run_converges_with_nothing_lost() {
    let env = TestEnv::with_operator("apirestart").await;
    env.create_key("before", json!({})).await;
    let before = env.wait_ready("before").await.status.unwrap().key_sid.unwrap();
    env.create_key("racing", json!({})).await;

    control_plane().restart_apiserver(Duration::from_secs(5)).expect("restart the API server");
    let serving = Instant::now();

    // The create goes through once the API server serves TwilioApiKeys again, which a 1.20 API
    // server does some seconds after its /readyz says ok (503 and 404 meanwhile).
    env.create_key("after", json!({})).await;
    let serving_keys = Instant::now();
    env.delete_key("before").await;
    let keys = env.keys();
    let ready_sid = |name: &'static str| {
        let keys = keys.clone();
        async move { ready_sid(&keys.get(name).await.ok()?).map(str::to_owned) }
    };
    let limit = Duration::from_secs(300);
    let racing = wait_up_to(limit, "racing Ready", || ready_sid("racing")).await;
    let after = wait_up_to(limit, "after Ready", || ready_sid("after")).await;
    wait_up_to(limit, "before gone", || gone(&keys, "before")).await;
    let recovered = serving.elapsed();
    // Written to stderr directly, not through eprintln!, so that the figure shows in a passing
    // run's output too (the test harness captures only the print macros).
    let line = format!(
        "api server restart: the operator recovered {:.1} s after the API server served TwilioApiKeys again ({:.1} s after its /readyz said ok)\n",
        serving_keys.elapsed().as_secs_f64(),
        recovered.as_secs_f64()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    assert!(env.fake.key(&before).is_none());
    let mut in_twilio: Vec<String> = env.fake.keys().into_iter().map(|k| k.sid).collect();
    let mut wanted = vec![racing.clone(), after.clone()];
    in_twilio.sort();
    wanted.sort();
    assert_eq!(in_twilio, wanted, "exactly the wanted keys, none leaked");
    for (name, sid) in [("racing", &racing), ("after", &after)] {
        let (account, delivered, secret) = env.delivered_pair(name).await;
        assert_eq!(&delivered, sid);
        assert!(env.twilio_accepts(&account, &delivered, &secret).await);
    }
}
