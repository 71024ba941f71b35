#!/usr/bin/env bash
# Fetch the Gateway API's standard-channel HTTPRoute CRD from the Go module proxy (the
# sigs.k8s.io/gateway-api module ships its CRDs under config/crd/) into a cache folder
# outside the repo, and print that file's path as the last line of stdout. The real-cluster
# tests install it next to the ModelDeployment CRD, so the GatewayAPI provider's HTTPRoutes
# are validated by a real API server with the real schema and CEL rules.
#
#   ${SERINUS_KUBE_BINS:-$HOME/.cache/serinus/kube-bins}/gateway-api-<version>/httproutes.yaml
#
# Exit 3: no Go toolchain.
set -euo pipefail

version="v1.6.3" # the newest the module proxy serves that builds with this machine's Go
log() { printf 'hack/kube/gateway-api.sh: %s\n' "$*" >&2; }

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
	log "no 'go' on PATH (see hack/kube/build.sh)"
	exit 3
fi

root="${SERINUS_KUBE_BINS:-$HOME/.cache/serinus/kube-bins}"
out="$root/gateway-api-$version/httproutes.yaml"
if [ -s "$out" ]; then
	echo "$out"
	exit 0
fi
mkdir -p "$(dirname "$out")"
# Outside any module, `go mod download` fetches exactly this version, checksum-verified as
# the go command verifies every module.
dir="$(cd / && GOFLAGS= go mod download -json "sigs.k8s.io/gateway-api@$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
src="$dir/config/crd/standard/gateway.networking.k8s.io_httproutes.yaml"
[ -s "$src" ] || { log "no $src in the module"; exit 1; }
cp "$src" "$out.tmp"
mv "$out.tmp" "$out"
log "fetched the HTTPRoute CRD of gateway-api $version into $out"
echo "$out"
