//! A smoke run of the benchmark at small N: it runs end to end and its JSON line holds every
//! figure. The figures' sizes are the benchmark's business, not a pass/fail criterion here; only
//! those that do not depend on the machine's speed are checked (one Twilio create per key, no
//! writes while idle, at most four API writes per key).

use std::process::Command;

#[test]
fn the_benchmark_runs_end_to_end_at_small_n() {
    // The operator binary is built by the suite's `cargo test --workspace` (the root package's
    // integration tests need it too).
    let operator = twilio_operator_testkit::operator_binary();
    assert!(operator.exists(), "{} is missing: build it with `cargo build -p twilio-operator`", operator.display());
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--keys", "20", "--idle-seconds", "3", "--operator"])
        .arg(&operator)
        .output()
        .expect("run the bench binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stderr}{stdout}");
    let line = stdout.lines().last().expect("a JSON line");
    let report: serde_json::Value = serde_json::from_str(line).expect("the last line is JSON");
    for field in [
        "keys",
        "seconds_to_all_ready",
        "p50_ms",
        "p99_ms",
        "twilio_calls_per_key",
        "kube_writes_per_key",
        "idle_writes",
        "peak_rss_mib",
        "cpu_seconds",
        "floor_seconds",
        "ratio_to_floor",
    ] {
        assert!(report[field].is_number(), "{field} is a number in {report}");
    }
    assert_eq!(report["keys"], 20);
    // A key is created under its pending name and named once recorded (the proof that it is the
    // resource's own): two calls, nothing else.
    assert_eq!(report["twilio_calls_per_key"], 2.0, "one create and one rename per key: {report}");
    assert_eq!(report["idle_writes"], 0, "{report}");
    // Finalizer, Secret, status with the key, status with its name, Event.
    assert!(report["kube_writes_per_key"].as_f64().unwrap() <= 5.0, "{report}");
    assert!(report["peak_rss_mib"].as_f64().unwrap() > 1.0, "RSS is read from /proc: {report}");
}
