#!/usr/bin/env bash
# Build hack/kstatus (a tiny command around sigs.k8s.io/cli-utils/pkg/kstatus, the status
# library behind `flux ... --wait` and Flux's health checks) into a cache folder outside
# the repo, and print the binary's path as the last line of stdout (progress goes to stderr).
#
#   ${SERINUS_KUBE_BINS:-$HOME/.cache/serinus/kube-bins}/kstatus-<key>/kstatus
#
# <key> hashes go.mod, go.sum, main.go, the build flags and `go version`, so a binary that
# exists is reused as is. Usage: `echo '{...}' | kstatus` prints {"status", "message", ...}.
# Exit 3: no Go toolchain.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf 'hack/kstatus/build.sh: %s\n' "$*" >&2; }

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
	log "no 'go' on PATH: the kstatus tests need Go >= 1.26 (see hack/kube/build.sh)"
	exit 3
fi

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
ldflags="-s -w"
key="$(
	{
		(cd "$here" && sha256sum go.mod go.sum main.go)
		go version
		echo "CGO_ENABLED=$CGO_ENABLED -trimpath -ldflags=$ldflags"
	} | sha256sum | cut -c1-16
)"
root="${SERINUS_KUBE_BINS:-$HOME/.cache/serinus/kube-bins}"
out="$root/kstatus-$key/kstatus"
if [ -x "$out" ]; then
	echo "$out"
	exit 0
fi

mkdir -p "$root"
exec 9>"$root/.lock-kstatus"
flock 9 # one build at a time: a second caller waits for it, then reuses it
if [ -x "$out" ]; then
	echo "$out"
	exit 0
fi
tmp="$(mktemp -d "$root/.build-kstatus-$key.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
start=$SECONDS
log "building kstatus (sigs.k8s.io/cli-utils $(awk '$1 == "sigs.k8s.io/cli-utils" {print $2}' "$here/go.mod")) into $out"
(cd "$here" && go build -trimpath -ldflags="$ldflags" -o "$tmp/kstatus" .)
mv -T "$tmp" "$(dirname "$out")"
log "built in $((SECONDS - start)) s"
echo "$out"
