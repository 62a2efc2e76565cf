use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use twilio_operator::api::{self as crd, duration};
use twilio_operator::runtime::context::{Config, Context};
use twilio_operator::runtime::metrics::Metrics;
use twilio_operator::runtime::telemetry::{self, LogFormat};
use twilio_operator::runtime::{controller, leader, probes};
use twilio_operator::twilio::{Endpoint, RetryPolicy, TwilioClient};

/// Twilio API keys as Kubernetes resources.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML, or write one file each into a directory.
    Crd {
        #[arg(long)]
        output_dir: Option<PathBuf>,
        /// Print the Markdown API reference (docs/reference.md) instead.
        #[arg(long, conflicts_with = "output_dir")]
        docs: bool,
    },
    /// Ask an HTTP URL (such as the operator's /readyz) until it answers 2xx; exit 1 if it never
    /// does. The chart's `helm test` Pod runs this, so the check needs no other image.
    Probe {
        /// The URL to GET (http:// or https://).
        url: String,
        /// How many times to ask before giving up.
        #[arg(long, default_value_t = 10)]
        attempts: u32,
        /// Seconds between attempts (each attempt waits at most 5 s for an answer).
        #[arg(long, default_value_t = 3)]
        interval: u64,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Send every Twilio request to this base URL instead of Twilio's regional hosts.
    #[arg(long, env = "TWILIO_API_URL")]
    twilio_api_url: Option<String>,
    /// Watch only these namespaces (repeatable). Default: all namespaces.
    #[arg(long = "watch-namespace", env = "WATCH_NAMESPACE", value_delimiter = ',')]
    watch_namespaces: Vec<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Also export per-TwilioApiKey series (namespace and name labels): one series per resource,
    /// so off by default.
    #[arg(long, env = "METRICS_PER_RESOURCE")]
    metrics_per_resource: bool,
    /// How many resources of each kind are reconciled at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
    /// How often Ready resources are checked for drift, e.g. 10m.
    #[arg(long, env = "RESYNC_INTERVAL", default_value = "10m", value_parser = duration::parse)]
    resync_interval: std::time::Duration,
    /// How long after a rotation the rollout restart targets may take to roll out before the
    /// resource reports RolloutDelayed (and a Warning Event); the old key is kept all the same.
    #[arg(long, env = "ROLLOUT_DEADLINE", default_value = "10m", value_parser = duration::parse)]
    rollout_deadline: std::time::Duration,
    /// How long after a rotation its rollout restart targets are restarted. Keys rotated within
    /// this time of each other (one account's interval, a trigger on several resources, a new
    /// credential) that feed the same workload restart it once: the first restart made after
    /// both were delivered serves both. 0s restarts at once.
    #[arg(long, env = "ROLLOUT_RESTART_DELAY", default_value = "10s", value_parser = duration::parse)]
    rollout_restart_delay: std::time::Duration,
    /// How many keys one TwilioApiKey may have created within an hour (a burst of this many,
    /// refilled evenly over the hour); past it the resource stalls with RotationBudgetExceeded
    /// until its budget allows the next one. Bounds what one resource can spend of its account.
    #[arg(long, env = "MAX_KEY_CREATIONS_PER_HOUR", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_key_creations_per_hour: u32,
    /// How many old keys one TwilioApiKey may keep valid at once (each inside its grace period).
    /// A rotation that would keep more deletes the oldest first, with a Warning Event.
    #[arg(long, env = "MAX_RETIRING_KEYS", default_value_t = 5,
          value_parser = clap::value_parser!(u16).range(1..=20))]
    max_retiring_keys: u16,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Reconcile only while holding the leader Lease (for more than one replica).
    #[arg(long, env = "LEADER_ELECT")]
    leader_elect: bool,
    /// Namespace of the leader Lease; in a Pod, its own namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { docs: true, .. } => {
            print!("{}", crd::reference::generate());
            Ok(())
        }
        Command::Crd { output_dir, .. } => print_crds(output_dir),
        Command::Probe { url, attempts, interval } => probe(&url, attempts, Duration::from_secs(interval)).await,
        Command::Run(args) => run(args).await,
    }
}

/// GETs `url` until it answers 2xx, at most `attempts` times.
async fn probe(url: &str, attempts: u32, interval: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().context("an HTTP client")?;
    for attempt in 1..=attempts.max(1) {
        match client.get(url).send().await {
            Ok(response) if response.status().is_success() => {
                println!("{url} answered {}", response.status());
                return Ok(());
            }
            Ok(response) => eprintln!("attempt {attempt}: {url} answered {}", response.status()),
            Err(error) => eprintln!("attempt {attempt}: {url}: {error}"),
        }
        if attempt < attempts {
            tokio::time::sleep(interval).await;
        }
    }
    anyhow::bail!("{url} did not answer 2xx in {attempts} attempts")
}

fn print_crds(output_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let documents = crd::crd_documents();
    match output_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for (file, yaml) in documents {
                std::fs::write(dir.join(&file), yaml).with_context(|| format!("writing {file}"))?;
            }
        }
        None => {
            let all: Vec<String> = documents.into_iter().map(|(_, yaml)| yaml).collect();
            print!("{}", all.join("---\n"));
        }
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    let metrics = Arc::new(Metrics::with_options(args.metrics_per_resource));
    let client = kube_client(metrics.clone()).await?;
    let twilio = TwilioClient::new(Endpoint::from_flag(args.twilio_api_url.as_deref()), RetryPolicy::default())?
        .with_observer(metrics.clone());
    let config = Config {
        resync_interval: args.resync_interval,
        rollout_deadline: args.rollout_deadline,
        rollout_restart_delay: args.rollout_restart_delay,
        max_key_creations_per_hour: args.max_key_creations_per_hour,
        max_retiring_keys: usize::from(args.max_retiring_keys),
        watch_namespaces: args.watch_namespaces.clone(),
    };
    let ctx = Arc::new(Context::new(client.clone(), twilio, config, metrics));
    let ready = Arc::new(AtomicBool::new(false));
    let metrics_server = tokio::spawn(probes::serve(args.metrics_addr, ready.clone(), ctx.clone()));
    let mut leadership = None;
    if args.leader_elect {
        // A standby replica is ready too: readiness says the process works, not that it leads
        // (otherwise a rolling update of two replicas would wait forever on the standby).
        ready.store(true, std::sync::atomic::Ordering::SeqCst);
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        let acquired = tokio::select! {
            acquired = leader::acquire(client.clone(), &args.leader_election_namespace, &identity) => acquired?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = sigterm() => return Ok(()),
        };
        leadership = Some(acquired);
    }
    ctx.metrics.process.set_leader(true);
    tracing::info!(
        namespaces = ?args.watch_namespaces,
        twilio = ?ctx.twilio.endpoint(),
        "starting twilio-operator"
    );
    let lost = async {
        match leadership.as_mut() {
            Some(leadership) => leadership.lost().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = controller::run(ctx, args.watch_namespaces, args.concurrency, ready) => {
            tracing::info!("controllers stopped; exiting");
        }
        result = metrics_server => {
            result.context("metrics server task")?.context("metrics server")?;
        }
        () = lost => {
            // Another replica leads now; reconciling on would race it. Exit and be restarted.
            anyhow::bail!("lost the leader lease");
        }
    }
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    Ok(())
}

/// The Kubernetes client, counting each request it sends (the `kube_requests` metric), and
/// retrying what the API server answers with 429, 503 or 504 after 50 ms, doubling to at most
/// 1 s (15 attempts). kube's own retry doubles from 5 ms without a useful cap: after an API server
/// restart, which answers 503 for a few seconds, a request then slept ten seconds and more after
/// the API server was back. Retry-After is not honoured for the same reason: a 1.20 API server
/// that has just restarted answers requests for custom resources with 503 for a moment, and the
/// retry honouring its Retry-After came exactly 10 s later (seen in the restart test's debug
/// log), by when the API server had long served them: every restart cost 10 s.
async fn kube_client(metrics: Arc<Metrics>) -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::infer().await.context("finding the Kubernetes API server")?;
    config.default_retry = false;
    let retry = tower::retry::RetryLayer::new(
        kube::client::retry::RetryPolicy::new(Duration::from_millis(50), Duration::from_secs(1), 15, false)
            .context("the retry policy")?,
    );
    let counted = tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
        metrics.process.kube_request(&request);
        request
    });
    // Each attempt is counted: the counting layer is inside the retrying one. Retrying needs a
    // service it can clone, which the buffer in front of kube's stack makes of it.
    Ok(kube::client::ClientBuilder::try_from(config)
        .context("building the Kubernetes client")?
        .with_layer(&counted)
        .with_layer(&tower::buffer::BufferLayer::new(1024))
        .with_layer(&retry)
        .build())
}

async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
