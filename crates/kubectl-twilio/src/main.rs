//! `kubectl twilio`: the kubectl plugin of twilio-operator (install the binary `kubectl-twilio` on
//! the PATH). What is shown and decided lives in pure, unit-tested modules (`status`, `rotate`,
//! `revoke`, `inspect`); this file is the thin I/O around them: the kube client, reads, patches,
//! the prompt and the exit codes.

mod cli;
mod inspect;
mod keys;
mod revoke;
mod rotate;
mod status;
mod table;
mod time;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use clap::Parser;
use k8s_openapi::api::core::v1::{Event, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use twilio_operator_api::{
    AccountKind, AccountRef, ClusterTwilioAccount, ROTATE_ANNOTATION, TwilioAccount, TwilioApiKey,
};

use cli::{Cli, Command, Inspect, RevokeArgs, RotateArgs, Target};
use status::AccountView;

/// The field manager of the plugin's writes.
const FIELD_MANAGER: &str = "kubectl-twilio";

/// The answer is no: not Ready, timed out, not confirmed.
const EXIT_NO: u8 = 1;
/// The command could not do its work (clap uses 2 for bad arguments too).
const EXIT_ERROR: u8 = 2;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{}", table::terminal_safe(&format!("error: {error:#}")));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (client, namespace) = connect(&cli.target).await?;
    match cli.command {
        Command::Status { name } => status(client, &namespace, &name).await,
        Command::Rotate(args) => rotate(client, &namespace, args).await,
        Command::Revoke(args) => revoke(client, &namespace, args).await,
        Command::Inspect(Inspect::Secret { name }) => inspect_secret(client, &namespace, &name).await,
        Command::Keys { account } => list_keys(client, &namespace, account.as_deref()).await,
    }
}

/// `keys`: the accounts of the namespace and the cluster (or the one named), each with its keys.
async fn list_keys(client: Client, namespace: &str, only: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut accounts: Vec<keys::AccountRow> = Vec::new();
    let namespaced: Api<TwilioAccount> = Api::namespaced(client.clone(), namespace);
    for account in namespaced.list(&ListParams::default()).await.context("listing TwilioAccounts")?.items {
        accounts.push(keys::AccountRow {
            label: format!("TwilioAccount {namespace}/{}", account.name_any()),
            account_sid: account.spec.account_sid.clone(),
            status: account.status.clone(),
        });
    }
    if let Some(name) = only {
        accounts.retain(|a| a.label == format!("TwilioAccount {namespace}/{name}"));
    }
    if only.is_none() || accounts.is_empty() {
        let cluster: Api<ClusterTwilioAccount> = Api::all(client.clone());
        match cluster.list(&ListParams::default()).await {
            Ok(list) => {
                accounts.extend(list.items.into_iter().filter(|a| only.is_none_or(|name| a.name_any() == name)).map(
                    |a| keys::AccountRow {
                        label: format!("ClusterTwilioAccount {}", a.name_any()),
                        account_sid: a.spec.account_sid.clone(),
                        status: a.status.clone(),
                    },
                ))
            }
            // Tenants may not list cluster-scoped accounts: their namespace's are still shown.
            Err(kube::Error::Api(status)) if status.code == 403 && only.is_none() => {}
            Err(error) => return Err(error).context("listing ClusterTwilioAccounts"),
        }
    }
    if accounts.is_empty() {
        bail!(match only {
            Some(name) =>
                format!("no TwilioAccount {name:?} in namespace {namespace:?}, nor ClusterTwilioAccount {name:?}"),
            None => format!("no TwilioAccount in namespace {namespace:?}, and no ClusterTwilioAccount"),
        });
    }
    // Keys of every namespace record keys of shared accounts; without that right, the namespace's.
    let resources = match Api::<TwilioApiKey>::all(client.clone()).list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(status)) if status.code == 403 => {
            eprintln!(
                "note: TwilioApiKeys of other namespaces cannot be read; keys they manage show as theirs only by count"
            );
            Api::<TwilioApiKey>::namespaced(client.clone(), namespace)
                .list(&ListParams::default())
                .await
                .context("listing TwilioApiKeys")?
                .items
        }
        Err(error) => return Err(error).context("listing TwilioApiKeys"),
    };
    let now = Timestamp::now();
    let text: Vec<String> = accounts.iter().map(|a| keys::render_account(a, &resources, now)).collect();
    print!("{}", table::terminal_safe(&text.join("\n")));
    Ok(ExitCode::SUCCESS)
}

/// A client as kubectl would make it: --kubeconfig, else $KUBECONFIG or ~/.kube/config (else the
/// in-cluster config); --context, else the current context. The namespace: -n, else the context's.
async fn connect(target: &Target) -> anyhow::Result<(Client, String)> {
    let options = KubeConfigOptions { context: target.context.clone(), cluster: None, user: None };
    let config = match &target.kubeconfig {
        Some(path) => {
            let kubeconfig =
                Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await.context("loading the kubeconfig")?
        }
        None if target.context.is_some() => {
            Config::from_kubeconfig(&options).await.context("loading the kubeconfig")?
        }
        None => Config::infer()
            .await
            .context("no kubeconfig found (set KUBECONFIG or --kubeconfig), and not running in a cluster")?,
    };
    let namespace = target.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).context("creating the Kubernetes client")?;
    Ok((client, namespace))
}

async fn get_key(keys: &Api<TwilioApiKey>, namespace: &str, name: &str) -> anyhow::Result<TwilioApiKey> {
    keys.get_opt(name)
        .await
        .with_context(|| format!("reading TwilioApiKey {name:?} in namespace {namespace:?}"))?
        .ok_or_else(|| anyhow!("TwilioApiKey {name:?} not found in namespace {namespace:?}"))
}

fn params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
}

async fn status(client: Client, namespace: &str, name: &str) -> anyhow::Result<ExitCode> {
    let keys: Api<TwilioApiKey> = Api::namespaced(client.clone(), namespace);
    let resource = get_key(&keys, namespace, name).await?;
    let account = read_account(&client, namespace, &resource.spec.account_ref).await;
    let events = match read_events(&client, namespace, &resource).await {
        Ok(events) => events,
        Err(error) => {
            eprintln!(
                "{}",
                table::terminal_safe(&format!("warning: the Events about {name} could not be read: {error:#}"))
            );
            Vec::new()
        }
    };
    print!("{}", table::terminal_safe(&status::render_status(&resource, &account, &events, Timestamp::now())));
    Ok(if status::is_ready(&resource) { ExitCode::SUCCESS } else { ExitCode::from(EXIT_NO) })
}

async fn read_account(client: &Client, namespace: &str, account: &AccountRef) -> AccountView {
    let found = match account.kind {
        AccountKind::TwilioAccount => Api::<TwilioAccount>::namespaced(client.clone(), namespace)
            .get_opt(&account.name)
            .await
            .map(|a| a.map(|a| (a.spec.account_sid.clone(), a.status.clone(), a.metadata.deletion_timestamp.clone()))),
        AccountKind::ClusterTwilioAccount => Api::<ClusterTwilioAccount>::all(client.clone())
            .get_opt(&account.name)
            .await
            .map(|a| a.map(|a| (a.spec.account_sid.clone(), a.status.clone(), a.metadata.deletion_timestamp.clone()))),
    };
    match found {
        Ok(Some((account_sid, status, deleting))) => AccountView::Found {
            account_sid,
            conditions: status.map(|s| s.conditions).unwrap_or_default(),
            deleting: deleting.is_some(),
        },
        Ok(None) => AccountView::NotFound,
        Err(kube::Error::Api(status)) => AccountView::Unreadable(status.message.clone()),
        Err(error) => AccountView::Unreadable(error.to_string()),
    }
}

/// The Events about the resource (core/v1, which also shows those recorded through events.k8s.io).
async fn read_events(client: &Client, namespace: &str, resource: &TwilioApiKey) -> anyhow::Result<Vec<Event>> {
    let Some(uid) = resource.uid() else {
        return Ok(Vec::new());
    };
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    Ok(events.list(&ListParams::default().fields(&format!("involvedObject.uid={uid}"))).await?.items)
}

async fn rotate(client: Client, namespace: &str, args: RotateArgs) -> anyhow::Result<ExitCode> {
    let keys: Api<TwilioApiKey> = Api::namespaced(client, namespace);
    let resource = get_key(&keys, namespace, &args.name).await?;
    if let Some(why) = rotate::refusal(&resource) {
        bail!(why);
    }
    let previous = resource.annotations().get(ROTATE_ANNOTATION).cloned();
    let value = rotate::next_value(previous.as_deref(), Timestamp::now());
    let old_sid = resource.status.as_ref().and_then(|s| s.key_sid.clone());
    let patched = keys
        .patch(&args.name, &params(), &Patch::Merge(rotate::patch(&value)))
        .await
        .with_context(|| format!("annotating TwilioApiKey {:?}", args.name))?;
    print!("{}", table::terminal_safe(&rotate::requested(&patched, &value, previous.as_deref())));
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    println!("Waiting up to {} for the new key...", time::human(args.timeout.as_secs() as i64));
    let _ = std::io::stdout().flush();
    let deadline = tokio::time::Instant::now() + args.timeout;
    loop {
        let current = get_key(&keys, namespace, &args.name).await?;
        if let Some(done) = rotate::done(&current, old_sid.as_deref()) {
            print!("{}", table::terminal_safe(&done));
            return Ok(ExitCode::SUCCESS);
        }
        if tokio::time::Instant::now() >= deadline {
            let timed_out = format!(
                "Timed out after {}: no new key is Ready yet; the resource is {}.\n\
                 See why with: kubectl twilio status {} -n {namespace}",
                time::human(args.timeout.as_secs() as i64),
                status::verdict(&current),
                args.name
            );
            eprintln!("{}", table::terminal_safe(&timed_out));
            return Ok(ExitCode::from(EXIT_NO));
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

async fn revoke(client: Client, namespace: &str, args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let keys: Api<TwilioApiKey> = Api::namespaced(client, namespace);
    let resource = get_key(&keys, namespace, &args.name).await?;
    let revoked = !args.undo;
    if let Some(nothing_to_do) = revoke::already(&resource, revoked) {
        print!("{}", table::terminal_safe(&nothing_to_do));
        return Ok(ExitCode::SUCCESS);
    }
    if revoked && !args.yes {
        eprint!("{}", table::terminal_safe(&revoke::confirmation(&resource)));
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).context("reading the answer")?;
        if !revoke::is_yes(&answer) {
            eprintln!("Not revoked.");
            return Ok(ExitCode::from(EXIT_NO));
        }
    }
    let patched = keys
        .patch(&args.name, &params(), &Patch::Merge(revoke::patch(revoked)))
        .await
        .with_context(|| format!("patching TwilioApiKey {:?}", args.name))?;
    print!("{}", table::terminal_safe(&revoke::done(&patched, revoked)));
    Ok(ExitCode::SUCCESS)
}

async fn inspect_secret(client: Client, namespace: &str, name: &str) -> anyhow::Result<ExitCode> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    // Errors are reported by their context and the API server's message; never with the Secret.
    let secret = secrets
        .get_opt(name)
        .await
        .with_context(|| format!("reading Secret {name:?} in namespace {namespace:?}"))?
        .ok_or_else(|| anyhow!("Secret {name:?} not found in namespace {namespace:?}"))?;
    let owner = match inspect::claimed_owner(&secret) {
        Some(owner) => {
            let keys: Api<TwilioApiKey> = Api::namespaced(client, namespace);
            keys.get_opt(&owner).await.with_context(|| format!("reading TwilioApiKey {owner:?}, the Secret's owner"))?
        }
        None => None,
    };
    print!("{}", table::terminal_safe(&inspect::render_secret(&secret, owner.as_ref(), Timestamp::now())));
    Ok(ExitCode::SUCCESS)
}
