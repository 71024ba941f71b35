#!/usr/bin/env bash
# Install the storage servers the model-source tests run on 127.0.0.1, into a cache folder
# outside the repo, and print that folder as the last line of stdout (progress on stderr):
#
#   ${SERINUS_SERVERS:-$HOME/.cache/serinus/servers}/<key>/venv-moto        moto's S3 (+ IAM, for
#                                                                          real signature checks)
#   ${SERINUS_SERVERS:-$HOME/.cache/serinus/servers}/<key>/venv-mlflow      an MLflow tracking
#                                                                          server and registry
#   ${SERINUS_SERVERS:-$HOME/.cache/serinus/servers}/<key>/fake-gcs-server  GCS (Go, built from
#                                                                          its module)
#   ${SERINUS_SERVERS:-$HOME/.cache/serinus/servers}/<key>/azurite          Azure Blob Storage
#                                                                          (npm)
#
# moto and mlflow each run from a virtual environment of their own: they pin botocore,
# fastapi and friends, which the project's environment must not be made to follow.
# mlflow-skinny with the few packages `mlflow server` needs is a third the size of the full
# mlflow. <key> hashes the pinned Python requirements and the Python version (a venv works
# only with the Python that made it); <key>/.complete stamps the two venvs. fake-gcs-server
# and azurite each have a .complete stamp of their own that holds their pin, so a new pin
# reinstalls only that server. A complete install is reused as is (in a few milliseconds).
# The OCI registry is Debian's docker-registry (make system-deps installs it).
set -euo pipefail

log() { printf 'hack/servers/install.sh: %s\n' "$*" >&2; }
python=${PYTHON:-python3}
requirements="moto[s3]==5.2.6 flask==3.1.2 flask-cors==6.0.1"
mlflow="mlflow-skinny==3.17.2 flask==3.1.2 flask-cors==6.0.1 sqlalchemy alembic aiohttp numpy pandas"
fake_gcs="github.com/fsouza/fake-gcs-server@v1.56.1"  # its go.mod needs Go >= 1.26
azurite="azurite@3.35.0"  # the last to run on Node 20 (3.36 wants Node >= 21)
key="$(printf '%s\n%s\n%s\n' "$requirements" "$mlflow" "$("$python" -V 2>&1)" | sha256sum | cut -c1-16)"
root="${SERINUS_SERVERS:-$HOME/.cache/serinus/servers}"
dest="$root/$key"

stamped() { [ "$(cat "$dest/$1/.complete" 2>/dev/null)" = "$2" ]; }
complete() { [ -f "$dest/.complete" ] && stamped fake-gcs-server "$fake_gcs" && stamped azurite "$azurite"; }
if complete; then
	echo "$dest"
	exit 0
fi
mkdir -p "$root"
exec 9>"$root/.lock"
flock 9  # one install at a time: a second caller waits for it, then reuses it
if complete; then
	echo "$dest"
	exit 0
fi

if [ ! -f "$dest/.complete" ]; then
	log "installing moto into $dest/venv-moto ($requirements)"
	rm -rf "$dest/venv-moto" "$dest/venv-mlflow"  # an earlier install that did not finish
	mkdir -p "$dest"
	"$python" -m venv "$dest/venv-moto"  # in place: a venv's scripts name their own path
	"$dest/venv-moto/bin/python" -m pip install --quiet $requirements >&2
	log "installing mlflow into $dest/venv-mlflow ($mlflow)"
	"$python" -m venv "$dest/venv-mlflow"
	"$dest/venv-mlflow/bin/python" -m pip install --quiet $mlflow >&2
	touch "$dest/.complete"
fi

if ! stamped fake-gcs-server "$fake_gcs"; then
	go="$(command -v go || echo /usr/local/go/bin/go)"
	if [ ! -x "$go" ]; then
		log "no 'go' on PATH or in /usr/local/go: fake-gcs-server, the GCS the model-source tests"
		log "use, is built from its Go module and needs Go >= 1.26 (Debian's golang-go is too old)."
		log "Install a Go release from https://go.dev/dl/ into /usr/local/go, then run this again."
		exit 1
	fi
	log "building $fake_gcs into $dest/fake-gcs-server (about a minute)"
	rm -rf "$dest/fake-gcs-server"
	# The module proxy and checksum database are whatever `go env` says (GOPROXY, GOSUMDB).
	CGO_ENABLED=0 GOFLAGS=-mod=mod GOBIN="$dest/fake-gcs-server" \
		"$go" install -trimpath -ldflags="-s -w" "$fake_gcs" >&2
	printf '%s\n' "$fake_gcs" >"$dest/fake-gcs-server/.complete"
fi

if ! stamped azurite "$azurite"; then
	if ! command -v npm >/dev/null; then
		log "no 'npm': azurite, the Azure Blob Storage the model-source tests use, is an npm"
		log "package (make system-deps installs Debian's nodejs and npm)."
		exit 1
	fi
	log "installing $azurite into $dest/azurite"
	rm -rf "$dest/azurite"
	npm install --prefix "$dest/azurite" --omit=dev --no-audit --no-fund --loglevel=error \
		"$azurite" >&2
	printf '%s\n' "$azurite" >"$dest/azurite/.complete"
fi
echo "$dest"
