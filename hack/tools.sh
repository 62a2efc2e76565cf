#!/usr/bin/env bash
# The client tools the tests and the demo run, built once from their Go modules (hack/tools/go.mod,
# through the Go module proxy) and cached outside the repository:
#   helm     Helm 4 (helm.sh/helm/v4/cmd/helm), the CLI users install the chart with
#   kstatus  the kstatus status of objects read on stdin (hack/tools/kstatus: what Flux, kpt and
#            Helm 4's watcher wait on)
# kubectl comes with the Kubernetes binaries (hack/control-plane.sh build).
#
#   hack/tools.sh build     build (or reuse) them; prints their directory
set -Eeuo pipefail

HACK_DIR=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
MODULE_DIR="$HACK_DIR/tools"
CACHE_ROOT="${TWILIO_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/twilio-operator}"
HELM_VERSION=$(awk '$1 == "helm.sh/helm/v4" {print $2}' "$MODULE_DIR/go.mod")
# Keyed by Helm's version and by what else goes into the build (the module's pins, the helper).
RECIPE=$(cat "$MODULE_DIR/go.sum" "$MODULE_DIR"/kstatus/*.go "$0" | sha256sum | cut -c1-12)
BIN_DIR="$CACHE_ROOT/tools-helm-$HELM_VERSION-$RECIPE/bin"

log() { echo "tools: $*" >&2; }

build() {
  local go
  go=$("$HACK_DIR/control-plane.sh" find-go)
  local env=(GOMODCACHE="$CACHE_ROOT/go-mod" GOCACHE="$CACHE_ROOT/go-build" GOFLAGS=-mod=readonly CGO_ENABLED=0)
  mkdir -p "$BIN_DIR"
  local cmd pkg ldflags started built=0
  for cmd in helm kstatus; do
    [ -x "$BIN_DIR/$cmd" ] && continue
    built=1
    case "$cmd" in
      helm) pkg=helm.sh/helm/v4/cmd/helm
        ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" ;;
      kstatus) pkg=./kstatus; ldflags="-s -w" ;;
    esac
    log "go build $cmd (once; cached in $BIN_DIR)"
    started=$SECONDS
    (cd "$MODULE_DIR" && env "${env[@]}" "$go" build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/$cmd.tmp" "$pkg" >&2)
    mv "$BIN_DIR/$cmd.tmp" "$BIN_DIR/$cmd"
    log "go build $cmd took $((SECONDS - started)) s"
  done
  # Go's build cache only serves a rebuild (see control-plane.sh): emptied once they are built.
  [ "$built" = 0 ] || (cd "$MODULE_DIR" && env "${env[@]}" "$go" clean -cache)
  echo "$BIN_DIR"
}

case "${1:-}" in
  build) build ;;
  *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
