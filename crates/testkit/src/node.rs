//! A control plane with a node (hack/control-plane.sh up-node), for the tests that need Pods:
//! containerd, the kubelet, kube-proxy and kube-scheduler on a bridge of their own, whose
//! address is the node's. Pods reach the API server through the `kubernetes` Service
//! (10.96.0.1:443) with their ServiceAccount's token, and reach this machine's processes on the
//! node's address. There is no registry: images are OCI tars (hack/image.sh) imported into the
//! node's containerd, and Pods use them with `imagePullPolicy: Never`. It needs root, and one
//! node cluster runs per machine (a second waits for the first to stop).
//!
//! A test with Pods of its own, e.g. a consumer Deployment that calls the fake Twilio:
//!
//! ```text
//! let cluster = node_cluster();                       // once per test binary
//! let client = cluster.client().await?;
//! let fake = start_fake_twilio_on(cluster.node_ip.into(), ACCOUNT_SID, AUTH_TOKEN).await?;
//! // fake.url() is http://10.123.X.1:PORT, reachable from the Pods
//! cluster.load_busybox_image("consumer:dev", &[(script_path, "/consume.sh")], &["/bin/sh", "/consume.sh"])?;
//! // then a Deployment with image: consumer:dev, imagePullPolicy: Never
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context as _, bail};

use crate::control_plane::start_with;
use crate::{ControlPlane, operator_binary, repo_root};

pub struct NodeCluster {
    pub plane: ControlPlane,
    /// The node's address: the API server listens on it, and Pods reach this machine on it
    /// (bind a server there, e.g. `start_fake_twilio_on(cluster.node_ip.into(), ...)`).
    pub node_ip: Ipv4Addr,
    pub node_name: String,
    /// The state directory (logs of every component, audit.log).
    pub dir: PathBuf,
}

impl Deref for NodeCluster {
    type Target = ControlPlane;

    fn deref(&self) -> &ControlPlane {
        &self.plane
    }
}

impl NodeCluster {
    /// Starts a control plane with a node and the CRDs of crds/, its state in `dir` (emptied
    /// first). It stops with `stop`, or by itself when this process exits.
    pub fn start(dir: &Path) -> anyhow::Result<NodeCluster> {
        let plane = start_with("up-node", dir)?;
        let env = std::fs::read_to_string(dir.join("env")).context("read the cluster's env file")?;
        let value = |key: &str| {
            env.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
                .with_context(|| format!("{key} missing from {}", dir.join("env").display()))
        };
        let node_ip = value("NODE_IP")?.parse().context("NODE_IP")?;
        Ok(NodeCluster { plane, node_ip, node_name: value("NODE_NAME")?, dir: dir.to_path_buf() })
    }

    /// Imports an OCI image tar (hack/image.sh) into the node's containerd.
    pub fn import_image(&self, tar: &Path) -> anyhow::Result<()> {
        let status = Command::new(repo_root().join("hack/control-plane.sh"))
            .arg("import-image")
            .arg(&self.dir)
            .arg(tar)
            .status()
            .context("run hack/control-plane.sh import-image")?;
        if !status.success() {
            bail!("importing {} failed", tar.display());
        }
        Ok(())
    }

    /// Builds the operator image `name` (e.g. "twilio-operator:dev") from the binary the tests
    /// run (`operator_binary()`, the debug build) and imports it. Returns the image tar.
    pub fn load_operator_image(&self, name: &str) -> anyhow::Result<PathBuf> {
        let tar = self.image_path(name);
        build_operator_image(&operator_binary(), name, &tar)?;
        self.import_image(&tar)?;
        Ok(tar)
    }

    /// Builds a BusyBox image `name` holding `files` (a file of this machine, and its path in
    /// the image; modes are kept) whose command is `cmd`, and imports it. Returns the image tar.
    pub fn load_busybox_image(&self, name: &str, files: &[(&Path, &str)], cmd: &[&str]) -> anyhow::Result<PathBuf> {
        let tar = self.image_path(name);
        build_busybox_image(name, files, cmd, &tar)?;
        self.import_image(&tar)?;
        Ok(tar)
    }

    fn image_path(&self, name: &str) -> PathBuf {
        self.dir.join("images").join(format!("{}.tar", name.replace(['/', ':', '@'], "-")))
    }

    /// The API server's audit events (JSON), which record every request a ServiceAccount made:
    /// its user, source IP, verb and object.
    pub fn audit_events(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let log = std::fs::read_to_string(self.dir.join("audit.log")).context("read audit.log")?;
        log.lines().map(|line| serde_json::from_str(line).context("an audit event")).collect()
    }
}

/// Whether a test that needs a node cannot run here: a node needs root (containerd, a bridge,
/// iptables). Such a test is skipped then, with a line that says so; in CI, where it must run,
/// this panics instead.
pub fn node_tests_skip() -> bool {
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        return false;
    }
    assert!(std::env::var_os("CI").is_none(), "the node tests need root in CI");
    eprintln!("skipped: a node needs root (containerd, a bridge, iptables)");
    true
}

/// The node cluster shared by every test of this binary, started under
/// target/test-control-planes/node-<pid> (the state of earlier runs' node clusters is removed).
/// If starting it fails, every test fails with the same message instead of trying again.
pub fn node_cluster() -> &'static NodeCluster {
    static CLUSTER: OnceLock<Result<NodeCluster, String>> = OnceLock::new();
    let cluster = CLUSTER.get_or_init(|| {
        let parent = repo_root().join("target").join("test-control-planes");
        remove_dead_node_dirs(&parent);
        NodeCluster::start(&parent.join(format!("node-{}", std::process::id()))).map_err(|e| format!("{e:#}"))
    });
    match cluster {
        Ok(cluster) => cluster,
        Err(message) => panic!("{message}"),
    }
}

/// Node clusters keep their images and containers in their state directory: those of test
/// processes that are gone (and whose cluster their watchdog stopped) are removed.
fn remove_dead_node_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    let owner = std::fs::read_to_string("/run/twilio-operator-node.owner").unwrap_or_default();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("node-").and_then(|pid| pid.parse::<u32>().ok()) else { continue };
        let running = owner.trim() == entry.path().to_string_lossy();
        if !running && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// `hack/image.sh operator --binary BINARY --name NAME --output OUTPUT`.
pub fn build_operator_image(binary: &Path, name: &str, output: &Path) -> anyhow::Result<()> {
    let mut image = Command::new(repo_root().join("hack/image.sh"));
    image.arg("operator").arg("--binary").arg(binary).args(["--name", name]).arg("--output").arg(output);
    run_image(image)
}

/// `hack/image.sh busybox NAME --cmd CMD --output OUTPUT SRC:DEST...`.
pub fn build_busybox_image(name: &str, files: &[(&Path, &str)], cmd: &[&str], output: &Path) -> anyhow::Result<()> {
    let mut image = Command::new(repo_root().join("hack/image.sh"));
    image.args(["busybox", name, "--cmd", &serde_json::to_string(cmd)?]).arg("--output").arg(output);
    for (source, dest) in files {
        image.arg(format!("{}:{dest}", source.display()));
    }
    run_image(image)
}

fn run_image(mut image: Command) -> anyhow::Result<()> {
    let output = image.output().context("run hack/image.sh")?;
    // Its summary (name, sizes, digest) goes to the test's output.
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        bail!("hack/image.sh failed");
    }
    Ok(())
}

/// The fake Twilio on a free port of `ip` (e.g. a node cluster's `node_ip`, where Pods reach
/// it), serving one account. Its `url()` names that address.
pub async fn start_fake_twilio_on(
    ip: IpAddr,
    account_sid: &str,
    auth_token: &str,
) -> std::io::Result<fake_twilio::FakeTwilio> {
    let account = fake_twilio::FakeAccount { sid: account_sid.into(), auth_token: auth_token.into() };
    fake_twilio::FakeTwilio::start((ip, 0).into(), vec![account]).await
}
