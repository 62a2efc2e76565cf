//! The harness of the integration tests (tests/*.rs) and of the bench: a real control plane
//! (hack/control-plane.sh), the operator binary as a process, the project's fake Twilio in this
//! process, the objects a namespace needs, and waits with timeouts. The tests that need Pods use
//! a control plane with a node instead (`node_cluster()`), and images built by hack/image.sh.
//!
//! What the bench uses returns errors: `anyhow::Result` (ControlPlane, Operator, `poll_until`,
//! `wait_account_ready`) or `kube::Result` (the object helpers). The conveniences that only the
//! tests use panic instead, which fails the test with the message: the control plane shared by a
//! test binary (`control_plane()`, `client()`), `Operator::start*`/`spawn`, `TestEnv` (one
//! namespace per test) and `wait_until`/`wait_up_to`.

mod control_plane;
mod env;
pub mod kube_proxy;
mod node;
mod objects;
mod operator;
mod wait;

use std::path::PathBuf;
use std::sync::OnceLock;

pub use control_plane::{ControlPlane, client, control_plane, start_control_plane};
pub use env::TestEnv;
pub use node::{
    NodeCluster, build_busybox_image, build_operator_image, node_cluster, node_tests_skip, start_fake_twilio_on,
};
pub use objects::{
    create_account, create_key, create_namespace, create_secret, fake_connection, gone, is_ready, ready_sid,
    setup_namespace, start_fake_twilio,
};
pub use operator::{Operator, log_filter};
pub use wait::{poll_until, wait_account_ready, wait_until, wait_up_to};

/// The Twilio account the fake serves to a test namespace (and to the bench).
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

/// The path of a client tool the tests run: `kubectl` of the Kubernetes the control plane runs
/// (hack/control-plane.sh build), or `helm` and `kstatus` (hack/tools.sh build). Each script
/// builds what is missing once (test.sh has already) and prints the directory it cached it in.
pub fn tool(name: &str) -> PathBuf {
    static KUBERNETES: OnceLock<PathBuf> = OnceLock::new();
    static TOOLS: OnceLock<PathBuf> = OnceLock::new();
    let (cell, script) = match name {
        "kubectl" => (&KUBERNETES, "hack/control-plane.sh"),
        "helm" | "kstatus" => (&TOOLS, "hack/tools.sh"),
        other => panic!("no tool {other}: kubectl, helm or kstatus"),
    };
    cell.get_or_init(|| {
        let output = std::process::Command::new(repo_root().join(script))
            .arg("build")
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("run {script} build: {e}"));
        assert!(output.status.success(), "{script} build failed");
        let dir = String::from_utf8_lossy(&output.stdout);
        PathBuf::from(dir.lines().last().unwrap_or_else(|| panic!("{script} build printed no directory")))
    })
    .join(name)
}

/// Runs the `helm` CLI (Helm 4, hack/tools.sh) with `args`: whether it succeeded, and what it
/// printed (stdout, then stderr).
pub fn helm(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(tool("helm"))
        .args(args)
        .env("HELM_CACHE_HOME", repo_root().join("target/helm/cache"))
        .env("HELM_CONFIG_HOME", repo_root().join("target/helm/config"))
        .env("HELM_DATA_HOME", repo_root().join("target/helm/data"))
        .output()
        .expect("run helm");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// The kstatus status of each object (hack/tools/kstatus: what Flux, kpt and Helm 4 wait on):
/// one `(status, message)` per object, in order.
pub fn kstatus(objects: &[serde_json::Value]) -> Vec<(String, String)> {
    use std::io::Write as _;
    let mut child = std::process::Command::new(tool("kstatus"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kstatus");
    let mut stdin = child.stdin.take().expect("kstatus's stdin");
    for object in objects {
        serde_json::to_writer(&mut stdin, object).expect("write to kstatus");
        stdin.write_all(b"\n").expect("write to kstatus");
    }
    drop(stdin);
    let output = child.wait_with_output().expect("kstatus ran");
    assert!(output.status.success(), "kstatus failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.splitn(4, '\t').collect();
            (fields.get(2).unwrap_or(&"").to_string(), fields.get(3).unwrap_or(&"").to_string())
        })
        .collect()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free port").port()
}
