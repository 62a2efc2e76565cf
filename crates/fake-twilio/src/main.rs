//! A stateful fake Twilio Keys API for demos and tests. See the `fake_twilio` library.

use std::net::SocketAddr;

use clap::Parser;
use fake_twilio::{FakeAccount, FakeTwilio, Faults};

#[derive(Parser)]
#[command(about = "A stateful fake of Twilio's Keys APIs (IAM v1 and v2010)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
    /// An account and its auth token, as ACCOUNT_SID:AUTH_TOKEN (repeatable).
    #[arg(long = "account", required = true)]
    accounts: Vec<String>,
    /// Share of requests answered with 429 or 503 (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let accounts = args
        .accounts
        .iter()
        .map(|a| {
            let (sid, auth_token) =
                a.split_once(':').ok_or_else(|| anyhow::anyhow!("--account wants ACCOUNT_SID:AUTH_TOKEN"))?;
            Ok(FakeAccount { sid: sid.into(), auth_token: auth_token.into() })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let fake = FakeTwilio::start(args.listen, accounts).await?;
    fake.set_faults(Faults { error_rate: args.error_rate, latency_ms: args.latency_ms, response_delay_ms: 0 });
    eprintln!("fake-twilio listening on {}", fake.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
