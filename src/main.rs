use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use twilio_operator::context::{Config, Context};
use twilio_operator::telemetry::{self, LogFormat};
use twilio_operator::twilio::{Endpoint, RetryPolicy, TwilioClient};
use twilio_operator::{controller, crd, duration, server};

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
    /// How many resources of each kind are reconciled at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
    /// How often Ready resources are checked for drift, e.g. 10m.
    #[arg(long, env = "RESYNC_INTERVAL", default_value = "10m", value_parser = duration::parse)]
    resync_interval: std::time::Duration,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { output_dir } => print_crds(output_dir),
        Command::Run(args) => run(args).await,
    }
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
    let client = kube::Client::try_default().await.context("connecting to Kubernetes")?;
    let twilio = TwilioClient::new(Endpoint::from_flag(args.twilio_api_url.as_deref()), RetryPolicy::default())?;
    let config = Config { resync_interval: args.resync_interval };
    let ctx = Arc::new(Context::new(client, twilio, config));
    let ready = Arc::new(AtomicBool::new(false));
    let metrics_server = tokio::spawn(server::serve(args.metrics_addr, ready.clone()));
    tracing::info!(
        namespaces = ?args.watch_namespaces,
        twilio = ?ctx.twilio.endpoint(),
        "starting twilio-operator"
    );
    tokio::select! {
        () = controller::run(ctx, args.watch_namespaces, args.concurrency, ready) => {
            tracing::info!("controllers stopped; exiting");
        }
        result = metrics_server => {
            result.context("metrics server task")?.context("metrics server")?;
        }
    }
    Ok(())
}
