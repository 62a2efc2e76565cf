//! `kubectl twilio` as users run it: the built binary, with KUBECONFIG naming the test cluster
//! (a real API server), against a namespace where the operator binary runs with the fake Twilio.
//! The operator binary must be built first (`cargo build -p twilio-operator`; `cargo test
//! --workspace` builds it).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::json;
use twilio_operator_testkit::{ACCOUNT_SID, TestEnv, control_plane, wait_until};

/// What a run of the plugin did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn both(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Runs `kubectl-twilio ARGS` with this KUBECONFIG, on a blocking thread (the fake Twilio the
/// operator calls is served by this process's runtime).
async fn plugin(args: &[&str], stdin: &str, kubeconfig: PathBuf) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_string();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubectl-twilio"))
            .args(&args)
            .env("KUBECONFIG", kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl-twilio");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).expect("write stdin");
        let output = child.wait_with_output().expect("wait for kubectl-twilio");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .expect("the plugin's thread")
}

/// `kubectl twilio <command> NAME -n <namespace> EXTRA...` against the test cluster.
async fn run(env: &TestEnv, command: &[&str], extra: &[&str], stdin: &str) -> Run {
    let mut args: Vec<&str> = command.to_vec();
    args.extend(["-n", env.namespace.as_str()]);
    args.extend(extra);
    plugin(&args, stdin, control_plane().kubeconfig.clone()).await
}

/// Help needs no cluster: a kubeconfig that does not exist shows that none is read.
async fn help(args: &[&str]) -> Run {
    plugin(args, "", PathBuf::from("/nonexistent/kubeconfig")).await
}

fn assert_contains(run: &Run, expected: &[&str]) {
    for text in expected {
        assert!(run.stdout.contains(text), "{text:?} missing from the output:\n{run}");
    }
}

#[tokio::test]
async fn status_rotate_inspect_and_revoke_on_a_real_cluster() {
    let env = TestEnv::with_operator("plugin").await;
    env.create_key("app", json!({"rotation": {"gracePeriod": "10m"}})).await;
    let first = env.wait_ready("app").await.status.unwrap().key_sid.unwrap();
    env.wait_for_event("app", "KeyCreated").await;

    // status: Ready, exit code 0, the key, its Secret, the account and the Events.
    let status = run(&env, &["status", "app"], &[], "").await;
    println!("kubectl twilio status app -n {}:\n{}", env.namespace, status.stdout);
    assert_eq!(status.code, 0, "{status}");
    assert_contains(
        &status,
        &[
            &format!("TwilioApiKey {}/app: Ready (KeyReady)", env.namespace),
            &first,
            "TwilioAccount/main: Ready (CredentialsVerified)",
            ACCOUNT_SID,
            "KeyCreated",
        ],
    );

    // --kubeconfig and --context instead of KUBECONFIG (which names no file here).
    let kubeconfig = control_plane().kubeconfig.clone();
    let context = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap().current_context.expect("a current context");
    let path = kubeconfig.to_str().unwrap();
    let nowhere = PathBuf::from("/nonexistent/kubeconfig");
    let explicit = plugin(
        &["status", "app", "-n", &env.namespace, "--kubeconfig", path, "--context", &context],
        "",
        nowhere.clone(),
    )
    .await;
    assert_eq!(explicit.code, 0, "{explicit}");
    assert_contains(&explicit, &[&first]);
    let unknown = plugin(&["status", "app", "--kubeconfig", path, "--context", "no-such-context"], "", nowhere).await;
    assert_eq!(unknown.code, 2, "{unknown}");
    assert!(unknown.stderr.contains("no-such-context"), "{unknown}");

    // inspect secret: the owner, verified, and the key current; never a value.
    let (_, _, key_secret) = env.delivered_pair("app").await;
    let inspect = run(&env, &["inspect", "secret", "app"], &[], "").await;
    println!("kubectl twilio inspect secret app -n {}:\n{}", env.namespace, inspect.stdout);
    assert_eq!(inspect.code, 0, "{inspect}");
    assert_contains(
        &inspect,
        &["TwilioApiKey app (uid", "verified", &format!("{first}: current"), "TWILIO_API_SECRET"],
    );
    assert!(!inspect.both().contains(&key_secret), "the key's secret is printed:\n{inspect}");
    for key in env.fake.keys() {
        assert!(!inspect.both().contains(&key.secret), "a key secret is printed:\n{inspect}");
    }
    env.create_secret("db", &[("password", "hunter2-database-password")]).await;
    let unmanaged = run(&env, &["inspect", "secret", "db"], &[], "").await;
    assert_eq!(unmanaged.code, 0, "{unmanaged}");
    assert_contains(&unmanaged, &["not a Secret of twilio-operator", "password"]);
    assert!(!unmanaged.both().contains("hunter2-database-password"), "a value is printed:\n{unmanaged}");

    // rotate: a new key is delivered, and status shows the old one retiring.
    let rotate = run(&env, &["rotate", "app"], &[], "").await;
    assert_eq!(rotate.code, 0, "{rotate}");
    assert_contains(&rotate, &["twilio-operator.dev/rotate=", "kubectl twilio status app"]);
    let second = env.wait_new_key("app", &first).await.status.unwrap().key_sid.unwrap();
    let status = run(&env, &["status", "app"], &[], "").await;
    assert_eq!(status.code, 0, "{status}");
    println!("kubectl twilio status app -n {} (rotated):\n{}", env.namespace, status.stdout);
    let retiring = status.stdout.split("Retiring keys:").nth(1).unwrap_or_default();
    assert!(retiring.contains(&format!("{first}  deleted after")), "the old key is not retiring:\n{status}");
    assert!(status.stdout.contains(&second), "{status}");

    // rotate --wait returns once the next key is Ready.
    let rotate = run(&env, &["rotate", "app"], &["--wait", "--timeout", "2m"], "").await;
    assert_eq!(rotate.code, 0, "{rotate}");
    let third = env.keys().get("app").await.unwrap().status.unwrap().key_sid.unwrap();
    assert_ne!(third, second);
    assert_contains(&rotate, &[&format!("Rotated: {third} is delivered in Secret app"), &second]);
    let inspect = run(&env, &["inspect", "secret", "app"], &[], "").await;
    assert_contains(&inspect, &[&format!("{third}: current")]);
    let (_, _, key_secret) = env.delivered_pair("app").await;
    assert!(!inspect.both().contains(&key_secret), "the key's secret is printed:\n{inspect}");

    // revoke asks first; anything but yes leaves the resource alone.
    let declined = run(&env, &["revoke", "app"], &[], "n\n").await;
    assert_eq!(declined.code, 1, "{declined}");
    assert!(declined.stderr.contains("Revoke app? [y/N]"), "{declined}");
    assert!(!env.keys().get("app").await.unwrap().spec.revoked, "revoked without confirmation");

    // revoke --yes: Ready=False, reason Revoked, and status exits 1.
    let revoke = run(&env, &["revoke", "app"], &["--yes"], "").await;
    assert_eq!(revoke.code, 0, "{revoke}");
    env.wait_for_condition("app", "False", "Revoked").await;
    env.wait_secret_gone("app").await;
    let status = run(&env, &["status", "app"], &[], "").await;
    println!("kubectl twilio status app -n {} (revoked):\n{}", env.namespace, status.stdout);
    assert_eq!(status.code, 1, "{status}");
    assert_contains(&status, &["app: Revoked", "revoke app --undo"]);

    // revoke --undo: a new key, Ready again.
    let undo = run(&env, &["revoke", "app"], &["--undo"], "").await;
    assert_eq!(undo.code, 0, "{undo}");
    let fresh = env.wait_ready("app").await.status.unwrap().key_sid.unwrap();
    assert!(![&first, &second, &third].contains(&&fresh));
    let status = wait_until("status to exit 0 again", || async {
        let status = run(&env, &["status", "app"], &[], "").await;
        (status.code == 0).then_some(status)
    })
    .await;
    assert!(status.stdout.contains(&fresh), "{status}");
}

#[tokio::test]
async fn a_missing_resource_is_an_error_with_exit_code_2() {
    let env = TestEnv::new("plugin-missing").await;
    for command in
        [&["status", "nope"][..], &["rotate", "nope"], &["revoke", "nope", "--yes"], &["inspect", "secret", "nope"]]
    {
        let missing = run(&env, command, &[], "").await;
        assert_eq!(missing.code, 2, "{missing}");
        assert!(missing.stderr.contains("\"nope\" not found in namespace"), "{missing}");
    }
}

#[tokio::test]
async fn every_command_has_help() {
    let commands: [&[&str]; 7] =
        [&[], &["status"], &["rotate"], &["revoke"], &["keys"], &["inspect"], &["inspect", "secret"]];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let shown = help(&args).await;
        assert_eq!(shown.code, 0, "{args:?}: {shown}");
        assert!(shown.stdout.contains("Usage: kubectl twilio"), "{args:?}: {shown}");
        assert!(shown.stdout.contains("Examples:"), "{args:?}: {shown}");
    }
    let revoke = help(&["revoke", "--help"]).await;
    assert!(revoke.stdout.contains("deletes every key of the resource in Twilio"), "{revoke}");
    assert!(revoke.stdout.contains("deletes its Secret"), "{revoke}");
    let status = help(&["status", "--help"]).await;
    assert!(status.stdout.contains("Exit code 0 when the key is Ready"), "{status}");
}

#[tokio::test]
async fn keys_lists_every_key_of_the_account_and_who_manages_it() {
    let mut env = TestEnv::new("plugin-keys").await;
    // The account is listed (and its keys counted) at every resync.
    env.start_operator(&["--resync-interval", "3s"]);
    env.create_key("app", json!({})).await;
    env.create_key("web", json!({})).await;
    let app = env.wait_ready("app").await.status.unwrap().key_sid.unwrap();
    let web = env.wait_ready("web").await.status.unwrap().key_sid.unwrap();
    // A key made by hand, and one under the pending name of a resource of another cluster.
    let by_hand = env.fake.create_key_directly(ACCOUNT_SID, "made by hand");
    let pending = env.fake.create_key_directly(ACCOUNT_SID, "twilio-operator:pending:uid-in-another-cluster");
    let status = wait_until("the account's census", || async {
        let status = env.accounts().get("main").await.ok()?.status?;
        let keys = status.keys.clone()?;
        ((keys.managed, keys.unmanaged, keys.pending) == (2, 1, 1)).then_some(status)
    })
    .await;
    assert_eq!(status.credential, Some(twilio_operator_api::CredentialKind::AuthToken));

    let keys = run(&env, &["keys"], &[], "").await;
    println!("kubectl twilio keys -n {}:\n{}", env.namespace, keys.stdout);
    assert_eq!(keys.code, 0, "{keys}");
    assert_contains(
        &keys,
        &[
            &format!("TwilioAccount {}/main (account {ACCOUNT_SID}, acting with the auth token)", env.namespace),
            "2 managed, 1 unmanaged, 1 pending",
            &app,
            &format!("TwilioApiKey {}/app (current)", env.namespace),
            &web,
            &format!("TwilioApiKey {}/web (current)", env.namespace),
            &format!("{by_hand}  nobody (\"made by hand\")"),
            &format!("{pending}  a pending name"),
        ],
    );
    let one = run(&env, &["keys"], &["--account", "main"], "").await;
    assert_eq!(one.code, 0, "{one}");
    let missing = run(&env, &["keys"], &["--account", "nope"], "").await;
    assert_eq!(missing.code, 2, "{missing}");
    assert!(missing.stderr.contains("no TwilioAccount \"nope\""), "{missing}");
    // Report only: the operator leaves both keys alone.
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    assert!(env.fake.key(&by_hand).is_some() && env.fake.key(&pending).is_some());
}
