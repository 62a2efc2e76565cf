//! The benchmark: the operator against the floor, on a local control plane and the fake Twilio.
//!
//! `cargo run --release --bin bench -- --keys 1000` starts a control plane of its own
//! (hack/control-plane.sh), the fake Twilio in this process and the operator binary, applies N
//! TwilioApiKeys and measures how fast and at what cost they become Ready; then, with the
//! operator stopped, a floor run makes only the calls any operator must make for N keys, at the
//! same concurrency. It prints its figures as it goes and one JSON line at the end.
//!
//! `--hostile N` measures memory instead: N TwilioApiKeys each as large as the API server accepts
//! (every bounded field at its bound, and 250 KiB of metadata annotations) are created while the
//! operator is stopped, then the operator starts, lists them all and stalls each; the operator's
//! peak RSS is what a tenant's objects cost it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use fake_twilio::FakeTwilio;
use twilio_operator::api::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, TwilioApiKey};
use twilio_operator::twilio::{AccountConnection, Endpoint, KeyRequest, RetryPolicy, TwilioClient};
use twilio_operator_testkit::{self as kit, ACCOUNT_SID, AUTH_TOKEN, ControlPlane, Operator};

/// Measures the operator at N keys against the floor; see docs/development/performance.md.
#[derive(Parser)]
struct Args {
    /// How many TwilioApiKeys to apply.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Reconciliations at once (the operator's --concurrency), and the floor run's workers.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// How many creates of TwilioApiKeys the benchmark keeps in flight while applying.
    #[arg(long, default_value_t = 32)]
    apply_concurrency: usize,
    /// Length of the idle window after all keys are Ready.
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
    /// The operator binary (default: $TWILIO_OPERATOR_BIN, else twilio-operator beside this binary).
    #[arg(long)]
    operator: Option<PathBuf>,
    /// Skip the floor run (ratio_to_floor is then null).
    #[arg(long)]
    skip_floor: bool,
    /// Keep the control plane's state directory afterwards.
    #[arg(long)]
    keep: bool,
    /// Instead of the run above: measure the operator's peak RSS with N hostile TwilioApiKeys
    /// (each as large as the API server accepts).
    #[arg(long)]
    hostile: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.keys == 0 {
        bail!("--keys must be at least 1");
    }
    let dir = kit::repo_root().join("target").join("bench").join(std::process::id().to_string());
    eprintln!("bench: starting a control plane in {}", dir.display());
    let plane = ControlPlane::start(&dir)?;
    let result = match args.hostile {
        Some(n) => hostile(&args, &plane, &dir, n).await,
        None => run(&args, &plane, &dir).await,
    };
    if let Err(error) = plane.stop(args.keep) {
        eprintln!("bench: stopping the control plane: {error:#}");
    }
    let report = result?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn run(args: &Args, plane: &ControlPlane, dir: &Path) -> anyhow::Result<serde_json::Value> {
    let client = plane.client().await?;
    let fake = kit::start_fake_twilio(ACCOUNT_SID, AUTH_TOKEN).await?;
    let n = args.keys;

    // The operator's run.
    let namespace = "bench";
    kit::setup_namespace(&client, namespace, ACCOUNT_SID, AUTH_TOKEN).await?;
    let binary = args.operator.clone().unwrap_or_else(kit::operator_binary);
    let metrics_addr = format!("127.0.0.1:{}", kit::free_port());
    let concurrency = args.concurrency.to_string();
    let mut operator = Operator::launch(
        &binary,
        &plane.kubeconfig,
        &fake.url(),
        &["--concurrency", &concurrency, "--metrics-addr", &metrics_addr],
        &[("RUST_LOG", &kit::log_filter("warn"))],
        &dir.join("operator.log"),
    )?;
    operator.wait_ready(Duration::from_secs(30)).await?;
    kit::wait_account_ready(&client, namespace, "main", Duration::from_secs(60)).await?;
    let twilio_before = total(&fake.request_counts());
    let kube_before = kube_requests(&operator).await?;
    eprintln!("bench: applying {n} TwilioApiKeys with the operator running (concurrency {})", args.concurrency);
    let run = measure(&client, namespace, n, args.apply_concurrency, None).await?;
    // Events and the last status writes may land just after the last key turned Ready.
    let kube_after = settle(&operator).await?;
    let twilio_after = total(&fake.request_counts());
    let twilio_calls_per_key = (twilio_after - twilio_before) as f64 / n as f64;
    let run_writes = writes(&kube_after) - writes(&kube_before);
    let run_reads = reads(&kube_after) - reads(&kube_before);
    eprintln!(
        "bench: operator: all {n} Ready in {:.2}s; p50 {:.0} ms, p99 {:.0} ms; {:.2} Twilio calls and {:.2} API writes ({:.2} reads) per key",
        run.seconds,
        run.p50_ms,
        run.p99_ms,
        twilio_calls_per_key,
        run_writes as f64 / n as f64,
        run_reads as f64 / n as f64
    );
    let by_verb: BTreeMap<&String, u64> =
        kube_after.iter().map(|(verb, after)| (verb, after - kube_before.get(verb).copied().unwrap_or(0))).collect();
    eprintln!("bench: operator requests to the API server during the run, by verb: {by_verb:?}");
    eprintln!("bench: idle window of {}s", args.idle_seconds);
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let kube_idle = kube_requests(&operator).await?;
    let idle_writes = writes(&kube_idle) - writes(&kube_after);
    let idle_twilio_calls = total(&fake.request_counts()) - twilio_after;
    let usage = usage(operator.id())?;
    eprintln!(
        "bench: idle: {idle_writes} API writes, {idle_twilio_calls} Twilio calls; operator peak RSS {:.1} MiB, CPU {:.2}s",
        usage.peak_rss_mib, usage.cpu_seconds
    );
    if let Err(error) = operator.terminate() {
        eprintln!("bench: stopping the operator: {error:#}");
    }

    // The floor: the same keys, only the unavoidable calls, no controller.
    let floor = if args.skip_floor {
        None
    } else {
        let namespace = "floor";
        kit::create_namespace(&client, namespace).await?;
        eprintln!("bench: floor run: {n} keys, {} workers", args.concurrency);
        let worker = FloorWorker::new(client.clone(), &fake)?;
        let floor = measure(&client, namespace, n, args.apply_concurrency, Some((worker, args.concurrency))).await?;
        eprintln!(
            "bench: floor: all {n} Ready in {:.2}s; p50 {:.0} ms, p99 {:.0} ms",
            floor.seconds, floor.p50_ms, floor.p99_ms
        );
        Some(floor)
    };

    let round = |x: f64, digits: i32| (x * 10f64.powi(digits)).round() / 10f64.powi(digits);
    Ok(json!({
        "keys": n,
        "seconds_to_all_ready": round(run.seconds, 2),
        "p50_ms": round(run.p50_ms, 1),
        "p99_ms": round(run.p99_ms, 1),
        "twilio_calls_per_key": round(twilio_calls_per_key, 3),
        "kube_writes_per_key": round(run_writes as f64 / n as f64, 3),
        "kube_reads_per_key": round(run_reads as f64 / n as f64, 3),
        "idle_seconds": args.idle_seconds,
        "idle_writes": idle_writes,
        "idle_twilio_calls": idle_twilio_calls,
        "peak_rss_mib": round(usage.peak_rss_mib, 1),
        "cpu_seconds": round(usage.cpu_seconds, 2),
        "concurrency": args.concurrency,
        "floor_seconds": floor.as_ref().map(|f| round(f.seconds, 2)),
        "floor_p50_ms": floor.as_ref().map(|f| round(f.p50_ms, 1)),
        "floor_p99_ms": floor.as_ref().map(|f| round(f.p99_ms, 1)),
        "ratio_to_floor": floor.as_ref().map(|f| round(run.seconds / f.seconds, 3)),
    }))
}

/// The hostile run: N objects of the largest size the API server accepts, applied while the
/// operator is stopped; then its start (the initial LIST of all of them) and a stall of each.
async fn hostile(args: &Args, plane: &ControlPlane, dir: &Path, n: usize) -> anyhow::Result<serde_json::Value> {
    let client = plane.client().await?;
    let fake = kit::start_fake_twilio(ACCOUNT_SID, AUTH_TOKEN).await?;
    let namespace = "hostile";
    kit::create_namespace(&client, namespace).await?;
    let keys: Api<TwilioApiKey> = Api::namespaced(client.clone(), namespace);
    let mut object_bytes = 0;
    for i in 0..n {
        let (key, bytes) = largest_key(&keys, &format!("hostile-{i}")).await?;
        object_bytes = bytes;
        if i == 0 {
            let spec = serde_json::to_vec(&key.spec).map(|v| v.len()).unwrap_or(0);
            eprintln!("bench: each hostile object holds {} KiB as JSON; spec {} KiB", bytes / 1024, spec / 1024);
        }
    }
    let binary = args.operator.clone().unwrap_or_else(kit::operator_binary);
    let metrics_addr = format!("127.0.0.1:{}", kit::free_port());
    let started = Instant::now();
    let mut operator = Operator::launch(
        &binary,
        &plane.kubeconfig,
        &fake.url(),
        &["--metrics-addr", &metrics_addr],
        &[("RUST_LOG", &kit::log_filter("warn"))],
        &dir.join("operator.log"),
    )?;
    operator.wait_ready(Duration::from_secs(60)).await?;
    // Every object stalls (no account in the namespace, or a spec the operator does not hold).
    let stalled = || async {
        let list = keys.list(&Default::default()).await?;
        let done = list.items.iter().filter(|k| k.status.as_ref().is_some_and(|s| !s.conditions.is_empty())).count();
        anyhow::Ok(done)
    };
    let limit = Instant::now() + Duration::from_secs(600);
    while stalled().await? < n {
        if Instant::now() > limit {
            bail!("the hostile objects did not all get a status within 10 minutes");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let usage = usage(operator.id())?;
    eprintln!(
        "bench: hostile: {n} objects of {} KiB each; all stalled {seconds:.1} s after the operator started; peak RSS {:.1} MiB",
        object_bytes / 1024,
        usage.peak_rss_mib
    );
    let _ = operator.terminate();
    Ok(json!({
        "hostile_objects": n,
        "object_kib": object_bytes / 1024,
        "seconds_to_all_stalled": (seconds * 10.0).round() / 10.0,
        "peak_rss_mib": (usage.peak_rss_mib * 10.0).round() / 10.0,
    }))
}

/// Creates TwilioApiKey `name` as large as the API server accepts it: every list and map at its
/// schema bound, 250 KiB of metadata annotations, and annotation values as long as the schema
/// lets them be (tried from 16 KiB down). Returns it and its size as JSON.
async fn largest_key(keys: &Api<TwilioApiKey>, name: &str) -> anyhow::Result<(TwilioApiKey, usize)> {
    let mut value_len = 16 * 1024;
    loop {
        let annotations: BTreeMap<String, String> =
            (0..64).map(|i| (format!("example.com/a{i}"), "a".repeat(value_len))).collect();
        let labels: BTreeMap<String, String> = (0..64).map(|i| (format!("example.com/l{i}"), "l".repeat(63))).collect();
        let template: BTreeMap<String, String> = (0..32).map(|i| (format!("T{i}"), "t".repeat(8192))).collect();
        let allow: Vec<String> = (0..100).map(|i| format!("/{i}/{}", "p".repeat(250))).collect();
        let key: TwilioApiKey = serde_json::from_value(json!({
            "apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioApiKey",
            "metadata": {"name": name, "annotations": {"example.com/padding": "m".repeat(250 * 1024)}},
            "spec": {
                "accountRef": {"name": "main"},
                "keyType": "Restricted",
                "policy": {"allow": allow},
                "secret": {"annotations": annotations, "labels": labels, "template": {"data": template}},
            },
        }))?;
        match keys.create(&PostParams::default(), &key).await {
            Ok(created) => {
                let bytes = serde_json::to_vec(&created).map(|v| v.len()).unwrap_or(0);
                return Ok((created, bytes));
            }
            Err(kube::Error::Api(status)) if value_len > 1024 && matches!(status.code, 413 | 422) => value_len /= 2,
            Err(error) => return Err(error.into()),
        }
    }
}

struct Measured {
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Applies N keys and waits until all are Ready (as a Ready=True condition), timing each from
/// its apply to the first sight of its Secret. With a floor worker, the keys are handed to it
/// as they are created (no operator runs).
async fn measure(
    client: &Client,
    namespace: &str,
    n: usize,
    apply_concurrency: usize,
    floor: Option<(FloorWorker, u16)>,
) -> anyhow::Result<Measured> {
    let secrets_seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (all_ready_tx, all_ready_rx) = tokio::sync::oneshot::channel::<Instant>();
    let secret_watch = {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
        let seen = secrets_seen.clone();
        tokio::spawn(watcher(api, config).applied_objects().try_for_each(move |secret: Secret| {
            let at = Instant::now();
            seen.lock().unwrap().entry(secret.name_any()).or_insert(at);
            futures::future::ready(Ok(()))
        }))
    };
    let ready_watch = {
        let api: Api<TwilioApiKey> = Api::namespaced(client.clone(), namespace);
        let mut ready = HashSet::new();
        let mut tx = Some(all_ready_tx);
        tokio::spawn(watcher(api, watcher::Config::default()).applied_objects().try_for_each(
            move |key: TwilioApiKey| {
                if kit::ready_sid(&key).is_some() {
                    ready.insert(key.name_any());
                    if ready.len() == n
                        && let Some(tx) = tx.take()
                    {
                        let _ = tx.send(Instant::now());
                    }
                }
                futures::future::ready(Ok(()))
            },
        ))
    };
    // The watches are running before the first apply.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (work_tx, work_rx) = tokio::sync::mpsc::unbounded_channel::<TwilioApiKey>();
    let workers = floor.map(|(worker, concurrency)| {
        let work = tokio_stream_from(work_rx);
        tokio::spawn(async move {
            work.map(|key| {
                let worker = &worker;
                async move { worker.deliver(&key).await }
            })
            .buffer_unordered(usize::from(concurrency))
            .try_for_each(|()| futures::future::ready(Ok(())))
            .await
        })
    });
    let applied: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (applied, work_tx) = (applied.clone(), work_tx.clone());
            async move {
                let name = format!("key-{i:05}");
                let created = kit::create_key(client, namespace, &name, json!({}))
                    .await
                    .with_context(|| format!("create {name}"))?;
                applied.lock().unwrap().insert(name, Instant::now());
                let _ = work_tx.send(created);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(apply_concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    drop(work_tx);
    let limit = Duration::from_secs(300 + n as u64 / 5);
    let all_ready = tokio::select! {
        at = all_ready_rx => at.context("the Ready watch ended")?,
        () = tokio::time::sleep(limit) => bail!("not all {n} keys were Ready within {limit:?}"),
    };
    if let Some(workers) = workers {
        workers.await??;
    }
    // A Secret is written before its key turns Ready; give the watch a moment to deliver the last.
    tokio::time::sleep(Duration::from_millis(500)).await;
    secret_watch.abort();
    ready_watch.abort();
    let applied = applied.lock().unwrap();
    let seen = secrets_seen.lock().unwrap();
    let mut latencies: Vec<f64> = applied
        .iter()
        .filter_map(|(name, at)| {
            seen.get(name).map(|secret_at| secret_at.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    if latencies.len() != n {
        bail!("saw the Secrets of {} of {n} keys", latencies.len());
    }
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1];
    Ok(Measured {
        seconds: all_ready.duration_since(started).as_secs_f64(),
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
    })
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// What any operator must do for a new key, done directly: create it in Twilio, add a
/// finalizer, write the Secret, write the status, record one Event.
struct FloorWorker {
    client: Client,
    twilio: TwilioClient,
    account: AccountConnection,
    recorder: Recorder,
}

impl FloorWorker {
    fn new(client: Client, fake: &FakeTwilio) -> anyhow::Result<Self> {
        let twilio = TwilioClient::new(Endpoint::from_flag(Some(&fake.url())), RetryPolicy::default())?;
        let account = kit::fake_connection(fake, ACCOUNT_SID, AUTH_TOKEN);
        let reporter = Reporter { controller: "bench-floor".into(), instance: None };
        Ok(Self { recorder: Recorder::new(client.clone(), reporter), client, twilio, account })
    }

    async fn deliver(&self, key: &TwilioApiKey) -> anyhow::Result<()> {
        let namespace = key.namespace().unwrap_or_default();
        let name = key.name_any();
        let request = KeyRequest { friendly_name: key.desired_friendly_name(), restricted_policy: None };
        let created = self.twilio.create_key(&self.account, &request).await?;
        let keys: Api<TwilioApiKey> = Api::namespaced(self.client.clone(), &namespace);
        let finalizer = json!({"metadata": {"finalizers": [twilio_operator::api::FINALIZER]}});
        keys.patch(&name, &PatchParams::default(), &Patch::Merge(&finalizer)).await?;
        let mut secret =
            twilio_operator::keys::secret::desired(key, &self.account, ACCOUNT_SID, &created.sid, &created.secret)
                .map_err(anyhow::Error::msg)?;
        secret.metadata.namespace = Some(namespace.clone());
        Api::<Secret>::namespaced(self.client.clone(), &namespace).create(&PostParams::default(), &secret).await?;
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let status = json!({"status": {
            "observedGeneration": key.meta().generation,
            "keySid": created.sid,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KeyReady", "message": "floor",
                            "lastTransitionTime": now, "observedGeneration": key.meta().generation}],
        }});
        keys.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
        let event = Event {
            type_: EventType::Normal,
            reason: "KeyCreated".into(),
            note: Some(format!("Created key {}", created.sid)),
            action: "CreateKey".into(),
            secondary: None,
        };
        self.recorder.publish(&event, &key.object_ref(&())).await?;
        Ok(())
    }
}

/// Waits until the operator's request counters stop moving for two seconds, and returns them.
async fn settle(operator: &Operator) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut last = kube_requests(operator).await?;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = kube_requests(operator).await?;
        if writes(&now) == writes(&last) {
            return Ok(now);
        }
        last = now;
    }
}

fn total(counts: &BTreeMap<String, u64>) -> u64 {
    counts.values().sum()
}

fn writes(counts: &BTreeMap<String, u64>) -> u64 {
    ["post", "put", "patch", "delete"].iter().filter_map(|verb| counts.get(*verb)).sum()
}

fn reads(counts: &BTreeMap<String, u64>) -> u64 {
    counts.get("get").copied().unwrap_or(0)
}

/// The operator's own count of requests to the API server, by verb.
async fn kube_requests(operator: &Operator) -> anyhow::Result<BTreeMap<String, u64>> {
    let samples = operator.metrics().await?;
    Ok(samples
        .iter()
        .filter_map(|(series, value)| {
            let labels = series.strip_prefix("twilio_operator_kube_requests_total{")?;
            Some((labels.split('"').nth(1).unwrap_or_default().to_string(), *value as u64))
        })
        .collect())
}

struct Usage {
    peak_rss_mib: f64,
    cpu_seconds: f64,
}

/// Peak resident memory (VmHWM) and CPU time so far of process `pid`, from /proc.
fn usage(pid: u32) -> anyhow::Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmHWM in /proc/<pid>/status")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default().split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or_default()
        + fields.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or_default();
    let per_second = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    Ok(Usage { peak_rss_mib: hwm_kib / 1024.0, cpu_seconds: ticks / per_second })
}
