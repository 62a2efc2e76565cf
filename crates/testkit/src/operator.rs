//! The real operator binary as a process of this machine, killed when dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::{control_plane, operator_binary, poll_until, repo_root};

/// The real operator binary, killed when dropped. Its output goes to a log file.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
    /// http://<--metrics-addr> when that was given with a fixed port.
    metrics: Option<String>,
}

/// The operator's log filter (RUST_LOG): OPERATOR_LOG if set, else `default`.
pub fn log_filter(default: &str) -> String {
    std::env::var("OPERATOR_LOG").unwrap_or_else(|_| default.into())
}

impl Operator {
    /// `binary run --twilio-api-url <twilio_url> <args>` for the cluster of `kubeconfig` (`env`
    /// is set after KUBECONFIG and may override it), its output appended to `log`. A
    /// `--metrics-addr` with a fixed port among `args` gives `wait_ready` and `metrics` their
    /// address.
    pub fn launch(
        binary: &Path,
        kubeconfig: &Path,
        twilio_url: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<Operator> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let child = Command::new(binary)
            .args(["run", "--twilio-api-url", twilio_url])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .envs(env.iter().copied())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let metrics = args
            .iter()
            .position(|arg| *arg == "--metrics-addr")
            .and_then(|i| args.get(i + 1))
            .filter(|addr| !addr.ends_with(":0"))
            .map(|addr| format!("http://{addr}"));
        Ok(Operator { child, log: log.to_path_buf(), metrics })
    }

    /// The operator watching `namespace` on the shared control plane.
    pub fn start(namespace: &str, twilio_url: &str, extra_args: &[&str]) -> Operator {
        Operator::start_with_log(namespace, twilio_url, extra_args, &log_filter("info,twilio_operator=debug"))
    }

    pub fn start_with_log(namespace: &str, twilio_url: &str, extra_args: &[&str], filter: &str) -> Operator {
        Operator::start_with_env(namespace, twilio_url, extra_args, filter, &[])
    }

    pub fn start_with_env(
        namespace: &str,
        twilio_url: &str,
        extra_args: &[&str],
        filter: &str,
        env: &[(&str, &str)],
    ) -> Operator {
        let identity = env.iter().find(|(k, _)| *k == "POD_NAME").map_or("operator", |(_, v)| *v);
        let mut args = vec!["--watch-namespace", namespace];
        args.extend_from_slice(extra_args);
        Operator::spawn(&format!("{namespace}-{identity}"), twilio_url, &args, filter, env)
    }

    /// The operator for the shared control plane with exactly these arguments (no
    /// --watch-namespace unless given; `--metrics-addr 127.0.0.1:0` and `--resync-interval 30s`
    /// unless given), logging to target/test-logs/<log_name>.log. `env` may override KUBECONFIG.
    pub fn spawn(log_name: &str, twilio_url: &str, args: &[&str], filter: &str, env: &[(&str, &str)]) -> Operator {
        let mut all = Vec::new();
        if !args.contains(&"--metrics-addr") {
            all.extend(["--metrics-addr", "127.0.0.1:0"]);
        }
        if !args.contains(&"--resync-interval") {
            all.extend(["--resync-interval", "30s"]);
        }
        all.extend_from_slice(args);
        let mut all_env = vec![("RUST_LOG", filter)];
        all_env.extend_from_slice(env);
        let log = repo_root().join("target").join("test-logs").join(format!("{log_name}.log"));
        Operator::launch(&operator_binary(), &control_plane().kubeconfig, twilio_url, &all, &all_env, &log)
            .expect("start the operator binary")
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as Kubernetes stops a Pod, and the exit status once it exited.
    pub fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        let pid = self.child.id().to_string();
        if !Command::new("kill").args(["-TERM", &pid]).status().context("run kill")?.success() {
            bail!("kill -TERM {pid} failed");
        }
        Ok(self.child.wait()?)
    }

    fn metrics_url(&self) -> anyhow::Result<&str> {
        self.metrics.as_deref().context("the operator was started without a --metrics-addr with a fixed port")
    }

    /// Waits until /readyz answers success; fails at once if the operator exits.
    pub async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.metrics_url()?);
        let http = reqwest::Client::new();
        let child = &mut self.child;
        poll_until(limit, "the operator to be ready", || {
            let exited = child.try_wait();
            let ready = http.get(&url).send();
            async move {
                if let Some(status) = exited? {
                    bail!("the operator exited: {status}");
                }
                Ok(ready.await.is_ok_and(|r| r.status().is_success()).then_some(()))
            }
        })
        .await
    }

    /// The samples of its /metrics: "name{labels}" -> value.
    pub async fn metrics(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        let url = format!("{}/metrics", self.metrics_url()?);
        let text = reqwest::get(&url).await?.error_for_status()?.text().await?;
        Ok(prometheus_samples(&text))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The samples of a Prometheus text exposition: "name{labels}" -> value.
fn prometheus_samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}
