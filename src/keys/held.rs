//! What the operator holds of each resource in memory: its watch caches keep only the fields it
//! reads, and a TwilioApiKey whose spec is larger than [`MAX_SPEC_BYTES`] is held without the
//! parts that make it large, marked so that its reconciliation stalls (InvalidSpec) instead of
//! acting on a spec it does not have. A tenant's writes thus bound what it costs the operator.

use std::collections::BTreeMap;
use std::io::Write;

use kube::ResourceExt;

use crate::api::{ROTATE_ANNOTATION, TwilioApiKey};

/// The most bytes a TwilioApiKey's spec may hold (as JSON). Annotations, labels, templates and a
/// policy of any real use take a few KiB.
pub const MAX_SPEC_BYTES: usize = 32 * 1024;

/// The longest value of the rotate annotation the operator acts on (it is recorded in status).
pub const MAX_ROTATE_ANNOTATION_LEN: usize = 253;

/// On a cached TwilioApiKey only, never written: the spec held more than [`MAX_SPEC_BYTES`]
/// bytes, or the rotate annotation was too long, and was stripped; the value says which. One
/// set on the object by a tenant is stripped with the other annotations.
const OVERSIZED_MARK: &str = "twilio-operator.dev/held-oversized";

/// Strips a TwilioApiKey for the cache: managedFields, labels, owner references and every
/// annotation but the rotate annotation go (the operator reads none of them); an oversized spec
/// loses its maps and policy, and is marked.
pub fn strip_key(resource: &mut TwilioApiKey) {
    let meta = &mut resource.metadata;
    meta.managed_fields = None;
    meta.labels = None;
    meta.owner_references = None;
    let rotate = meta.annotations.take().and_then(|mut all| all.remove(ROTATE_ANNOTATION));
    let mut problems = Vec::new();
    let mut kept = BTreeMap::new();
    match rotate {
        Some(value) if value.len() > MAX_ROTATE_ANNOTATION_LEN => problems.push(format!(
            "its {ROTATE_ANNOTATION} annotation is {} characters long; at most {MAX_ROTATE_ANNOTATION_LEN} are acted on",
            value.len()
        )),
        Some(value) => {
            kept.insert(ROTATE_ANNOTATION.to_string(), value);
        }
        None => {}
    }
    let size = json_size(&resource.spec);
    if size > MAX_SPEC_BYTES {
        let secret = &mut resource.spec.secret;
        secret.annotations.clear();
        secret.labels.clear();
        secret.template = None;
        resource.spec.policy = None;
        resource.spec.rollout_restart_targets.clear();
        problems.push(format!(
            "its spec holds {} KiB; the operator acts on at most {} KiB (annotations, labels, template and policy together)",
            size.div_ceil(1024),
            MAX_SPEC_BYTES / 1024
        ));
    }
    if !problems.is_empty() {
        kept.insert(OVERSIZED_MARK.to_string(), problems.join("; and "));
    }
    resource.metadata.annotations = (!kept.is_empty()).then_some(kept);
}

/// Why the cached resource was stripped, if it was: the InvalidSpec problem to report.
pub fn oversized(resource: &TwilioApiKey) -> Option<String> {
    resource.annotations().get(OVERSIZED_MARK).map(|problem| format!("{problem}; shrink it to have it reconciled"))
}

/// Strips an account (TwilioAccount, ClusterTwilioAccount) for the cache: the operator reads its
/// spec and status, never its labels, annotations, owner references or managedFields.
pub fn strip_metadata<K: kube::Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    meta.labels = None;
    meta.annotations = None;
    meta.owner_references = None;
}

/// Bytes of `value` as JSON, counted without building it.
fn json_size<T: serde::Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serializing a spec cannot fail; a failure counts as too large.
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::fixtures::resource;

    #[test]
    fn the_cache_keeps_what_the_operator_reads_and_a_small_spec_whole() {
        let mut key = resource(serde_json::json!({
            "accountRef": {"name": "prod"},
            "secret": {"annotations": {"team": "payments"}, "template": {"data": {"ENV": "K={{ apiKeySid }}"}}},
        }));
        key.metadata.annotations =
            Some([(ROTATE_ANNOTATION.to_string(), "3".to_string()), ("big".to_string(), "x".repeat(200_000))].into());
        key.metadata.labels = Some([("app".to_string(), "x".to_string())].into());
        let spec = key.spec.clone();
        strip_key(&mut key);
        assert_eq!(key.spec, spec);
        assert_eq!(key.annotations().len(), 1);
        assert_eq!(key.annotations().get(ROTATE_ANNOTATION).map(String::as_str), Some("3"));
        assert!(key.labels().is_empty());
        assert_eq!(oversized(&key), None);
    }

    #[test]
    fn an_oversized_spec_is_held_stripped_and_marked_and_a_mark_set_by_a_tenant_is_not_believed() {
        let annotations: BTreeMap<String, String> = (0..16).map(|i| (format!("a{i}"), "v".repeat(4096))).collect();
        let mut key =
            resource(serde_json::json!({"accountRef": {"name": "prod"}, "secret": {"annotations": annotations}}));
        strip_key(&mut key);
        assert!(key.spec.secret.annotations.is_empty());
        let problem = oversized(&key).expect("marked");
        assert!(problem.contains("its spec holds 65 KiB; the operator acts on at most 32 KiB"), "{problem}");

        let mut forged = resource(serde_json::json!({"accountRef": {"name": "prod"}}));
        forged.metadata.annotations = Some([(OVERSIZED_MARK.to_string(), "x".to_string())].into());
        strip_key(&mut forged);
        assert_eq!(oversized(&forged), None);

        let mut long_rotate = resource(serde_json::json!({"accountRef": {"name": "prod"}}));
        long_rotate.metadata.annotations = Some([(ROTATE_ANNOTATION.to_string(), "r".repeat(300))].into());
        strip_key(&mut long_rotate);
        assert!(oversized(&long_rotate).unwrap().contains("annotation is 300 characters long"));
        assert_eq!(long_rotate.annotations().get(ROTATE_ANNOTATION), None);
    }
}
