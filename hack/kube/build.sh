#!/usr/bin/env bash
# Build etcd, kube-apiserver and kube-controller-manager from the Go modules
# pinned in hack/kube/{etcd,k8s} into a cache folder outside the repo, and print
# that folder as the last line of stdout (progress goes to stderr).
#
#   ${SERINUS_KUBE_BINS:-$HOME/.cache/serinus/kube-bins}/<key>/
#
# <key> hashes the pinned module files, the build flags and `go version`, so a
# folder that exists is complete and is reused as is (in about 20 ms).
# Exit 3: no Go toolchain.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf 'hack/kube/build.sh: %s\n' "$*" >&2; }

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
	log "no 'go' on PATH: the real-cluster tests build Kubernetes from source and need Go >= 1.26"
	log "(Debian bookworm's golang-go is 1.19, too old). Install a Go >= 1.26 release from"
	log "https://go.dev/dl/ into /usr/local/go, or put the folder holding 'go' on PATH."
	exit 3
fi

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
ldflags="-s -w"
inputs=(k8s/go.mod k8s/go.sum k8s/tools.go etcd/go.mod etcd/go.sum etcd/main.go)
key="$(
	{
		(cd "$here" && sha256sum "${inputs[@]}")
		go version
		echo "CGO_ENABLED=$CGO_ENABLED -trimpath -ldflags=$ldflags"
	} | sha256sum | cut -c1-16
)"
root="${SERINUS_KUBE_BINS:-$HOME/.cache/serinus/kube-bins}"
out="$root/$key"

complete() {
	for b in etcd kube-apiserver kube-controller-manager; do [ -x "$1/$b" ] || return 1; done
}
if complete "$out"; then
	echo "$out"
	exit 0
fi

mkdir -p "$root"
exec 9>"$root/.lock"
flock 9 # one build at a time: a second caller waits for it, then reuses it
if complete "$out"; then
	echo "$out"
	exit 0
fi

# The version the binaries report (/version, --version), as Kubernetes' own build sets it.
kube="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/k8s/go.mod")"
minor="${kube#v*.}"
version=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	version+=" -X $pkg.gitVersion=$kube -X $pkg.gitTreeState=clean"
	version+=" -X $pkg.gitMajor=${kube:1:1} -X $pkg.gitMinor=${minor%%.*}"
done

rm -rf "$out" # incomplete: someone removed a binary
tmp="$(mktemp -d "$root/.build-$key.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
start=$SECONDS
log "building etcd, kube-apiserver, kube-controller-manager ($kube) into $out"
log "cold, this downloads ~155 MB of modules (~850 MB unpacked) and compiles ~6 min on 2 cores"
(cd "$here/etcd" && go build -trimpath -ldflags="$ldflags" -o "$tmp/etcd" .)
(cd "$here/k8s" && go build -trimpath -ldflags="$ldflags$version" -o "$tmp/" \
	k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
complete "$tmp"
mv -T "$tmp" "$out"
log "built in $((SECONDS - start)) s: $(du -sh "$out" | cut -f1) in $out"
echo "$out"
