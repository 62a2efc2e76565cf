//! The process itself: whether it leads, and what it asks of the API server.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabels {
    verb: &'static str,
}

pub struct ProcessMetrics {
    leader: Gauge,
    kube_requests: Family<VerbLabels, Counter>,
}

impl ProcessMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let leader = Gauge::default();
        registry.register("leader", "1 while this process reconciles (holds the lease, or runs alone)", leader.clone());
        let kube_requests = Family::default();
        registry.register(
            "kube_requests",
            "Requests to the Kubernetes API server by verb (get, list or watch, post, put, patch, delete)",
            kube_requests.clone(),
        );
        Self { leader, kube_requests }
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Counts a request to the Kubernetes API server (called by the client's request layer).
    pub fn kube_request<B>(&self, request: &http::Request<B>) {
        let verb = match *request.method() {
            http::Method::GET if request.uri().query().is_some_and(|q| q.contains("watch=true")) => "watch",
            http::Method::GET => "get",
            http::Method::POST => "post",
            http::Method::PUT => "put",
            http::Method::PATCH => "patch",
            http::Method::DELETE => "delete",
            _ => "other",
        };
        self.kube_requests.get_or_create(&VerbLabels { verb }).inc();
    }
}
