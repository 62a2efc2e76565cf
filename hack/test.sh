#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, and the integration tests that run the
# operator binary against a real control plane (built once and cached, see control-plane.sh)
# and the project's fake Twilio.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
hack/control-plane.sh build > /dev/null
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets
