#!/usr/bin/env bash
# Install the storage servers the model-source tests run on 127.0.0.1, into a cache folder
# outside the repo, and print that folder as the last line of stdout (progress on stderr):
#
#   ${SERINUS_SERVERS:-$HOME/.cache/serinus/servers}/<key>/venv-moto     moto's S3 (+ IAM, for
#                                                                       real signature checks)
#   ${SERINUS_SERVERS:-$HOME/.cache/serinus/servers}/<key>/venv-mlflow   an MLflow tracking
#                                                                       server and registry
#
# Each runs from a virtual environment of its own: they pin botocore, fastapi and friends,
# which the project's environment must not be made to follow. mlflow-skinny with the few
# packages `mlflow server` needs is a third the size of the full mlflow. <key> hashes the pinned requirements and
# the Python version; a folder with its .complete stamp is reused as is.
# The OCI registry is Debian's docker-registry (make system-deps installs it).
set -euo pipefail

log() { printf 'hack/servers/install.sh: %s\n' "$*" >&2; }
python=${PYTHON:-python3}
requirements="moto[s3]==5.2.6 flask==3.1.2 flask-cors==6.0.1"
mlflow="mlflow-skinny==3.17.2 flask==3.1.2 flask-cors==6.0.1 sqlalchemy alembic aiohttp numpy pandas"
key="$(printf '%s\n%s\n%s\n' "$requirements" "$mlflow" "$("$python" -V 2>&1)" | sha256sum | cut -c1-16)"
root="${SERINUS_SERVERS:-$HOME/.cache/serinus/servers}"
dest="$root/$key"
if [ -f "$dest/.complete" ]; then
	echo "$dest"
	exit 0
fi
log "installing moto into $dest/venv-moto ($requirements)"
rm -rf "$dest"  # an earlier install that did not finish
mkdir -p "$dest"
"$python" -m venv "$dest/venv-moto"  # in place: a venv's scripts name their own path
"$dest/venv-moto/bin/python" -m pip install --quiet $requirements >&2
log "installing mlflow into $dest/venv-mlflow ($mlflow)"
"$python" -m venv "$dest/venv-mlflow"
"$dest/venv-mlflow/bin/python" -m pip install --quiet $mlflow >&2
touch "$dest/.complete"
echo "$dest"
