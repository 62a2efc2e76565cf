//! A real control plane (etcd, kube-apiserver, kube-controller-manager) started by
//! hack/control-plane.sh in a state directory, or one named by a kubeconfig.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};

use crate::repo_root;

pub struct ControlPlane {
    pub kubeconfig: PathBuf,
    /// The state directory when this process started the control plane itself.
    pub dir: Option<PathBuf>,
}

impl ControlPlane {
    /// Starts a control plane with the CRDs of crds/, its state in `dir` (emptied first). It stops
    /// with `stop`, or by itself when this process exits.
    pub fn start(dir: &Path) -> anyhow::Result<ControlPlane> {
        start_with("up", dir)
    }

    fn state_dir(&self) -> anyhow::Result<&Path> {
        self.dir.as_deref().context("only a control plane this process started has a state directory")
    }

    /// Stops the control plane; its state directory is removed unless `keep_state`.
    pub fn stop(&self, keep_state: bool) -> anyhow::Result<()> {
        let dir = self.state_dir()?;
        if !script("down", dir).status().context("run hack/control-plane.sh")?.success() {
            bail!("hack/control-plane.sh down failed");
        }
        if !keep_state {
            std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
        }
        Ok(())
    }

    /// Kills the API server and starts it again on the same etcd and port after `down`.
    pub fn restart_apiserver(&self, down: Duration) -> anyhow::Result<()> {
        let mut restart = script("restart-apiserver", self.state_dir()?);
        restart.arg(down.as_secs().to_string());
        if !restart.status().context("run hack/control-plane.sh")?.success() {
            bail!("restarting the API server failed");
        }
        Ok(())
    }

    /// A client of this control plane, as its kubeconfig says.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .with_context(|| format!("read kubeconfig {}", self.kubeconfig.display()))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }
}

/// `hack/control-plane.sh COMMAND DIR CRD...` (`up` or `up-node`) with the CRDs of crds/, its
/// state in `dir` (emptied first), stopped by the script's watchdog when this process exits.
pub(crate) fn start_with(command: &str, dir: &Path) -> anyhow::Result<ControlPlane> {
    let _ = std::fs::remove_dir_all(dir);
    let mut crds: Vec<PathBuf> = std::fs::read_dir(repo_root().join("crds"))
        .context("read crds/")?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .context("read crds/")?;
    crds.sort();
    let mut up = script(command, dir);
    up.args(&crds).env("WATCH_PID", std::process::id().to_string());
    if !up.status().context("run hack/control-plane.sh")?.success() {
        bail!("hack/control-plane.sh {command} failed; logs are in {}", dir.display());
    }
    Ok(ControlPlane { kubeconfig: dir.join("kubeconfig"), dir: Some(dir.to_path_buf()) })
}

/// `hack/control-plane.sh COMMAND DIR`, its output (the kubeconfig's path) discarded.
fn script(command: &str, dir: &Path) -> Command {
    let mut script = Command::new(repo_root().join("hack/control-plane.sh"));
    script.arg(command).arg(dir).stdout(Stdio::null());
    script
}

/// The control plane shared by every test of this binary: the cluster named by
/// TWILIO_OPERATOR_TEST_KUBECONFIG, or one started under target/test-control-planes/<pid>.
/// If starting it fails, every test fails with the same message instead of trying again.
pub fn control_plane() -> &'static ControlPlane {
    static PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
    let plane = PLANE.get_or_init(|| {
        if let Ok(path) = std::env::var("TWILIO_OPERATOR_TEST_KUBECONFIG") {
            return Ok(ControlPlane { kubeconfig: PathBuf::from(path), dir: None });
        }
        start_control_plane(&std::process::id().to_string()).map_err(|e| format!("{e:#}"))
    });
    match plane {
        Ok(plane) => plane,
        Err(message) => panic!("{message}"),
    }
}

/// Starts a control plane of its own (with the CRDs) under target/test-control-planes/<name>; it
/// stops when this process exits.
pub fn start_control_plane(name: &str) -> anyhow::Result<ControlPlane> {
    ControlPlane::start(&repo_root().join("target").join("test-control-planes").join(name))
}

/// A client of the shared control plane, whose CRDs are current.
pub async fn client() -> Client {
    let client = control_plane().client().await.expect("a client of the control plane");
    ensure_crds(&client).await;
    client
}

/// On a cluster the suite did not start, the CRDs may be missing or old: apply them.
async fn ensure_crds(client: &Client) {
    if std::env::var("TWILIO_OPERATOR_TEST_KUBECONFIG").is_err() {
        return;
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, yaml) in twilio_operator::api::crd_documents() {
        let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).expect("crd yaml");
        crds.patch(&crd.name_any(), &PatchParams::apply("twilio-operator-tests").force(), &Patch::Apply(&crd))
            .await
            .expect("apply CRD");
    }
}
