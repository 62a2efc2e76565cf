#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, and the integration tests that run the
# operator binary against a real control plane (built once and cached, see control-plane.sh)
# and the project's fake Twilio.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
hack/control-plane.sh build > /dev/null
# The node (kubelet, kube-proxy, kube-scheduler, containerd) for the tests that need Pods
# (tests/pods.rs); it needs root, as CI has. Without root those tests skip.
if [ "$(id -u)" = 0 ]; then
  hack/control-plane.sh build-node > /dev/null
else
  echo "== not root: no node, so tests/pods.rs skips (it runs in CI, as root)"
fi
# Helm v4 (its Go library, through the helm-sdkpy wheel) for the chart tests; Debian has no helm.
if ! python3 -c 'import helm_sdkpy, cffi, yaml' 2> /dev/null; then
  echo "== installing helm-sdkpy (Helm v4), cffi and PyYAML from PyPI"
  python3 -m pip install --quiet --ignore-requires-python 'helm-sdkpy==0.1.32' cffi pyyaml
fi
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
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --all-targets
