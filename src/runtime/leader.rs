//! Leader election on a coordination.k8s.io Lease: with several replicas, only the holder
//! reconciles; when it dies, another takes over once the lease expires; a clean shutdown
//! releases the lease so that the takeover is immediate.

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const LEASE_NAME: &str = "twilio-operator";
/// How long a lease stays valid without renewal; a standby takes over within this time.
pub const LEASE_SECONDS: u64 = 15;
/// The holder renews this long before expiry (and tolerates this much clock skew).
const GRACE_SECONDS: u64 = 5;

pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, kube_lease_manager::LeaseManagerError>>,
}

/// Waits until this process holds the lease.
pub async fn acquire(client: Client, namespace: &str, identity: &str) -> anyhow::Result<Leadership> {
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(GRACE_SECONDS)
        .build()
        .await?;
    let (mut state, task) = manager.watch().await;
    tracing::info!(lease = %format!("{namespace}/{LEASE_NAME}"), identity, "waiting to become the leader");
    while !*state.borrow_and_update() {
        state.changed().await?;
    }
    tracing::info!(identity, "became the leader");
    Ok(Leadership { state, task })
}

impl Leadership {
    /// Resolves when another process took the lease (or the lease can no longer be watched).
    pub async fn lost(&mut self) {
        while *self.state.borrow_and_update() {
            if self.state.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives the lease up so that a standby replica takes over at once.
    pub async fn release(self) {
        drop(self.state);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("released the leader lease"),
            Ok(Err(error)) => tracing::warn!(%error, "could not release the leader lease"),
            Err(error) => tracing::warn!(%error, "leader lease task failed"),
        }
    }
}
