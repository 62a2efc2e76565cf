//! Wiring of the controllers: which resources are watched, in which namespaces, and which
//! changes wake which keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::join_all;
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use std::hash::{DefaultHasher, Hash, Hasher};

use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, watcher};
use kube::runtime::{PredicateConfig, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};

use crate::accounts;
use crate::api::{
    AccountKind, ClusterTwilioAccount, MANAGED_BY_LABEL, MANAGED_BY_VALUE, ROTATE_ANNOTATION, TwilioAccount,
    TwilioApiKey, TwilioSubaccount,
};
use crate::keys::reconcile;
use crate::runtime::context::{Context, ScopeCaches};

/// Secrets seen metadata-only: enough to know which changed, without holding their data.
type SecretMeta = PartialObjectMeta<Secret>;

/// Runs every controller until a shutdown signal arrives. `namespaces` empty means all.
pub async fn run(ctx: Arc<Context>, namespaces: Vec<String>, concurrency: u16, ready: Arc<AtomicBool>) {
    let scopes: Vec<Option<String>> =
        if namespaces.is_empty() { vec![None] } else { namespaces.into_iter().map(Some).collect() };
    let config = ControllerConfig::default().concurrency(concurrency);
    let mut tasks = Vec::new();
    let all_secrets: Vec<Api<SecretMeta>> = scopes.iter().map(|scope| scoped(&ctx, scope.as_deref())).collect();
    for scope in &scopes {
        tasks.push(keys_controller(ctx.clone(), scope.clone(), config.clone()).boxed());
        let accounts: Api<TwilioAccount> = scoped(&ctx, scope.as_deref());
        let secrets: Api<SecretMeta> = scoped(&ctx, scope.as_deref());
        tasks.push(account_controller(ctx.clone(), accounts, vec![secrets], config.clone()));
    }
    for scope in &scopes {
        let subaccounts: Api<TwilioSubaccount> = scoped(&ctx, scope.as_deref());
        tasks.push(subaccount_controller(ctx.clone(), subaccounts, config.clone()));
    }
    let cluster_accounts: Api<ClusterTwilioAccount> = Api::all(ctx.client.clone());
    tasks.push(account_controller(ctx.clone(), cluster_accounts, all_secrets, config));
    ready.store(true, Ordering::SeqCst);
    join_all(tasks).await;
}

/// The controller of one account kind. A change to a credentials Secret (watched metadata-only)
/// re-verifies the accounts that use it. An account being deleted waits for its last key by
/// polling the keys cache (see `Error::AccountInUse`): watching every key for that rare wait cost
/// each key write two more watch events.
fn account_controller<A: accounts::AccountResource>(
    ctx: Arc<Context>,
    accounts: Api<A>,
    secret_scopes: Vec<Api<SecretMeta>>,
    config: ControllerConfig,
) -> futures::future::BoxFuture<'static, ()> {
    // Like keys, accounts are not woken by their own status writes (each would repeat the
    // verification call, refused or not); the resync interval and credentials changes wake them.
    let (store, writer) = reflector::store();
    let changes = watcher(accounts, watch_config())
        .backoff(watch_backoff())
        .modify(crate::keys::held::strip_metadata)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(account_intent_hash, PredicateConfig::default());
    let controller = Controller::for_stream(changes, store.clone()).with_config(config).trigger_backoff(TriggerBackoff);
    let controller = secret_scopes.into_iter().fold(controller, |controller, secrets| {
        let store = store.clone();
        let (filter_ctx, map_ctx) = (ctx.clone(), ctx.clone());
        // The operator's own finalizer write on a credentials Secret is not new credentials, and
        // the Secrets it delivers are not credentials (the API server leaves them out of the watch).
        let unmanaged = watch_config().labels(&format!("{MANAGED_BY_LABEL}!={MANAGED_BY_VALUE}"));
        let changes = watcher(secrets, unmanaged)
            .backoff(watch_backoff())
            .touched_objects()
            .try_filter(move |secret| std::future::ready(!filter_ctx.own_writes.is_own_credentials_write(secret)));
        controller.watches_stream(changes, move |secret: SecretMeta| {
            let (namespace, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
            // Keys read it anew too, not only the accounts woken here.
            map_ctx.credentials.forget(&namespace, &name);
            store
                .state()
                .iter()
                .filter(|account| {
                    let source = account.source();
                    source.secret_namespace == namespace && source.secret_name == name
                })
                .map(|account| ObjectRef::from_obj(account.as_ref()))
                .collect::<Vec<_>>()
        })
    });
    controller
        .shutdown_on_signal()
        .run(accounts::reconcile::reconcile::<A>, account_error_policy, ctx)
        .for_each(log_outcome)
        .boxed()
}

/// The TwilioSubaccount controller: woken by spec changes (not by its own status writes) and
/// the resync; while it waits for its TwilioAccount to go, it polls.
fn subaccount_controller(
    ctx: Arc<Context>,
    subaccounts: Api<TwilioSubaccount>,
    config: ControllerConfig,
) -> futures::future::BoxFuture<'static, ()> {
    let (store, writer) = reflector::store();
    let changes = watcher(subaccounts, watch_config())
        .backoff(watch_backoff())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(account_intent_hash, PredicateConfig::default());
    Controller::for_stream(changes, store)
        .with_config(config)
        .trigger_backoff(TriggerBackoff)
        .shutdown_on_signal()
        .run(crate::subaccounts::reconcile, crate::subaccounts::error_policy, ctx)
        .for_each(log_outcome)
        .boxed()
}

/// Watches are renewed at least every minute: an API server that restarts can leave a watch
/// open that never delivers another event (seen with 1.20), and a renewal relists. Lists come in
/// pages of [`WATCH_PAGE_SIZE`]: a page is held whole while it is decoded, before the caches
/// strip what they do not keep, so the page size bounds what a list of objects as large as the
/// API server accepts costs at once (kube's default, 500, would be hundreds of MiB).
fn watch_config() -> watcher::Config {
    watcher::Config::default().timeout(WATCH_TIMEOUT_SECS).page_size(WATCH_PAGE_SIZE)
}

const WATCH_PAGE_SIZE: u32 = 25;

/// How long a failed watch waits before it tries again: 250 ms, doubling to at most 1 s, reset
/// by the first event that arrives. kube's default grows to 30 s and resets only after two quiet
/// minutes: after an API server restart (connections refused for seconds, then each watch's
/// resourceVersion expired once, at its own moment) the watches came back late. A retry every
/// second per watch while the API server is away costs it nothing worth saving.
fn watch_backoff() -> WatchBackoff {
    WatchBackoff { next: WatchBackoff::FIRST }
}

struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(1);
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    /// The next delay, with up to a fifth more of jitter so that the watches do not retry in step.
    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (delay * 2).min(Self::MAX);
        Some(delay + delay.mul_f64(rand::random_range(0.0..0.2)))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// The pause of a controller's merged watches after an error of any of them: none to speak of.
/// Each watch already waits by itself ([`watch_backoff`]); kube's default pauses them all (up to
/// 30 s, growing with each error), and after an API server restart, where every watch meets one
/// error at its own moment, those pauses added up to minutes before the controller saw a change.
struct TriggerBackoff;

impl Iterator for TriggerBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(10))
    }
}

impl Backoff for TriggerBackoff {
    fn reset(&mut self) {}
}

const WATCH_TIMEOUT_SECS: u32 = 20;

fn scoped<K>(ctx: &Context, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    }
}

async fn keys_controller(ctx: Arc<Context>, scope: Option<String>, config: ControllerConfig) {
    let keys: Api<TwilioApiKey> = scoped(&ctx, scope.as_deref());
    let secrets: Api<SecretMeta> = scoped(&ctx, scope.as_deref());
    let accounts: Api<TwilioAccount> = scoped(&ctx, scope.as_deref());
    let cluster_accounts: Api<ClusterTwilioAccount> = Api::all(ctx.client.clone());
    let managed = watch_config().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
    let (store, writer) = reflector::store();
    let changes = watcher(keys, watch_config())
        .backoff(watch_backoff())
        // The cache holds every key, so only what the operator reads: a tenant's writes must not
        // decide the operator's memory (see keys::held).
        .modify(crate::keys::held::strip_key)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(intent_hash, PredicateConfig::default())
        // After the predicate, which so remembers the finalizer this process added.
        .try_filter({
            let ctx = ctx.clone();
            move |resource| std::future::ready(!ctx.own_writes.is_own_key_event(resource))
        });
    let controller = Controller::for_stream(changes, store.clone()).with_config(config).trigger_backoff(TriggerBackoff);
    let by_account = store.clone();
    // Only the Secrets this operator writes, metadata-only: any change to one (its data
    // included) bumps its resourceVersion and wakes its resource, which then reads it.
    let filter_ctx = ctx.clone();
    let owned_secrets = watcher(secrets, managed)
        .backoff(watch_backoff())
        .touched_objects()
        .try_filter(move |secret| std::future::ready(!filter_ctx.own_writes.is_own_secret_event(secret)));
    let (account_store, account_writer) = reflector::store();
    let (cluster_store, cluster_writer) = reflector::store();
    ctx.caches.register(
        scope.as_deref(),
        ScopeCaches { keys: store.clone(), accounts: account_store, cluster_accounts: cluster_store },
    );
    controller
        .watches_stream(owned_secrets, |secret: SecretMeta| {
            // The Secret names its resource in an annotation (it has no ownerReference, see
            // crate::keys::secret); a Secret that names none wakes nothing.
            let owner = secret.annotations().get(crate::api::ownership::OWNER_ANNOTATION)?;
            Some(ObjectRef::new(owner).within(&secret.namespace()?))
        })
        .watches_stream(spec_changes(accounts, account_writer), move |account: TwilioAccount| {
            keys_using(&by_account, AccountKind::TwilioAccount, &account.name_any(), account.namespace())
        })
        .watches_stream(spec_changes(cluster_accounts, cluster_writer), move |account: ClusterTwilioAccount| {
            keys_using(&store, AccountKind::ClusterTwilioAccount, &account.name_any(), None)
        })
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(log_outcome)
        .await;
}

/// Accounts whose spec changed or that became Ready (a repaired credential turns an account Ready
/// and so wakes its stalled keys); other status writes do not wake the keys.
/// The accounts are cached on the way (see [`Context::scope_caches`]).
fn spec_changes<A>(
    api: Api<A>,
    cache: reflector::store::Writer<A>,
) -> impl futures::Stream<Item = Result<A, watcher::Error>> + Send + 'static
where
    A: accounts::AccountResource,
{
    let spec_and_readiness = |account: &A| {
        let mut hasher = DefaultHasher::new();
        account.meta().generation.hash(&mut hasher);
        let conditions = account.account_status().map(|s| s.conditions.as_slice()).unwrap_or_default();
        // Only becoming usable matters: an account turning not-Ready must not make its keys
        // try again, which would repeat a call Twilio has just refused.
        crate::api::conditions::ready_of(conditions).is_some_and(|(status, _)| status == "True").hash(&mut hasher);
        Some(hasher.finish())
    };
    watcher(api, watch_config())
        .backoff(watch_backoff())
        .modify(crate::keys::held::strip_metadata)
        .reflect(cache)
        .touched_objects()
        .predicate_filter(spec_and_readiness, PredicateConfig::default())
}

/// What a change to a key must alter to wake it: its spec (generation), its deletion, its
/// finalizers or the rotate annotation. The operator's own status writes do not wake it, so a
/// stalled key is not retried just because its status was written.
fn intent_hash(resource: &TwilioApiKey) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    resource.meta().generation.hash(&mut hasher);
    resource.meta().deletion_timestamp.is_some().hash(&mut hasher);
    resource.finalizers().hash(&mut hasher);
    resource.annotations().get(ROTATE_ANNOTATION).hash(&mut hasher);
    Some(hasher.finish())
}

/// What a change to an account must alter to wake it: its spec, its deletion or its finalizers
/// (the finalizer helper adds the finalizer and waits for that change to verify the account).
fn account_intent_hash<A: Resource>(account: &A) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    account.meta().generation.hash(&mut hasher);
    account.meta().deletion_timestamp.is_some().hash(&mut hasher);
    account.finalizers().hash(&mut hasher);
    Some(hasher.finish())
}

/// Keys that refer to an account, so that a change to the account re-reconciles them.
fn keys_using(
    store: &Store<TwilioApiKey>,
    kind: AccountKind,
    name: &str,
    namespace: Option<String>,
) -> Vec<ObjectRef<TwilioApiKey>> {
    store
        .state()
        .iter()
        .filter(|resource| resource.spec.account_ref.kind == kind && resource.spec.account_ref.name == name)
        .filter(|resource| namespace.is_none() || resource.namespace() == namespace)
        .map(|resource| ObjectRef::from_obj(resource.as_ref()))
        .collect()
}

fn account_error_policy<A: accounts::AccountResource>(
    account: Arc<A>,
    error: &crate::error::Error,
    ctx: Arc<Context>,
) -> kube::runtime::controller::Action {
    let delay = ctx.backoff.next(account.as_ref(), error.retry_cap());
    tracing::warn!(%error, ?delay, kind = A::KIND, "account reconciliation failed; retrying");
    kube::runtime::controller::Action::requeue(delay)
}

async fn log_outcome<K, E: std::fmt::Display, A>(result: Result<(ObjectRef<K>, A), E>)
where
    K: kube::Resource,
    K::DynamicType: std::fmt::Debug,
{
    match result {
        Ok((object, _)) => tracing::debug!(object = %object, "reconciled"),
        Err(error) => tracing::debug!(%error, "reconcile attempt ended with an error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_retries_double_to_a_second_and_start_over_after_success() {
        let mut backoff = watch_backoff();
        let delays: Vec<Duration> = backoff.by_ref().take(6).collect();
        let floors = [250, 500, 1000, 1000, 1000, 1000].map(Duration::from_millis);
        for (delay, floor) in delays.iter().zip(floors) {
            assert!(*delay >= floor && *delay <= floor.mul_f64(1.2), "{delays:?}");
        }
        backoff.reset();
        assert!(backoff.next().unwrap() < Duration::from_millis(301));
    }
}
