#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, and the integration tests that run the
# operator binary against a real control plane (built once and cached, see control-plane.sh)
# and the project's fake Twilio.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Kubernetes from its Go modules (hack/k8s/), built once per version and cached: the newest
# (1.37) for the whole suite, the oldest the operator supports (1.33, the control plane only) for
# the compatibility set below; and Helm 4 and the kstatus helper (hack/tools/).
# With root, as CI has, the node too (kubelet, kube-proxy, kube-scheduler, containerd) for the
# tests that need Pods (tests/pods.rs); without root those tests skip.
if [ "$(id -u)" = 0 ]; then
  hack/control-plane.sh build-node > /dev/null
else
  hack/control-plane.sh build > /dev/null
  echo "== not root: no node, so tests/pods.rs skips (it runs in CI, as root)"
fi
TWILIO_OPERATOR_KUBERNETES=1.33 hack/control-plane.sh build > /dev/null
hack/tools.sh build > /dev/null
# Debian tools the suite runs: promtool (the prometheus package) for the alert rules' unit
# tests, and Lua 5.1 (the Lua of Argo CD's gopher-lua) for the Argo CD health check tests.
debian_tool() {
  local command=$1 package=$2
  command -v "$command" > /dev/null && return 0
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo > /dev/null; then
      echo "== $command is missing: apt-get install $package (its tests skip, or fail when CI is set)"
      return 0
    fi
    sudo=(sudo)
  fi
  echo "== installing $command (Debian's $package package)"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$package" > /dev/null \
    || { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$package" > /dev/null; }
}
debian_tool promtool prometheus
debian_tool lua5.1 lua5.1
# The exact release hack/k8s/vMINOR/go.mod pins.
kubernetes_version() {
  TWILIO_OPERATOR_KUBERNETES=$1 hack/control-plane.sh version
}
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# No two files of a crate's src/ import each other, directly or around a circle.
python3 hack/module-cycles.py
echo "== the whole suite on Kubernetes $(kubernetes_version 1.37)"
cargo test --workspace --all-targets
# What depends on the API server's own behaviour, again on the oldest Kubernetes the operator's
# client (kube 5, k8s-openapi 0.29) supports: CRDs and their CEL rules at admission, server-side
# apply as GitOps tools use it, the chart's install, RBAC and admission policies, and the key
# lifecycle, its safety rules, adoption and crash recovery (finalizers, foreground and namespace
# deletion, watches, status), an API server restart, and the account's own credentials (auth token
# rotation under SIGKILLs, subaccounts).
echo "== the compatibility set on Kubernetes $(kubernetes_version 1.33)"
TWILIO_OPERATOR_KUBERNETES=1.33 cargo test --test cel --test crds --test gitops --test chart \
  --test admission_policy --test lifecycle --test safety --test crash --test adoption --test apiserver_restart \
  --test account_credentials
