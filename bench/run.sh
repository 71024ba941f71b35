#!/usr/bin/env bash
# `make bench`: serinus serve vs MLServer, KServe and a bare ASGI floor (see bench/bench.py).
#
# First run: installs wrk (apt-get, as root) and gives MLServer and KServe each their own
# venv under .bench/ so they never touch the project's dependencies. A peer that cannot be
# installed is reported and skipped. Later runs reuse them (a stamp holds the pip spec).
#
# Knobs: BENCH_SUITES (serve,router,drift), BENCH_ROUNDS (3), BENCH_SECONDS (5), BENCH_WARMUP (1),
#        BENCH_MODEL (the serve suite's models, run in turn: logreg,mlp),
#        BENCH_SERVERS (comma-separated subset of serinus,serinus-unbatched,mlserver,kserve,floor),
#        BENCH_MLSERVER_MAX_BATCH_SIZE / BENCH_MLSERVER_MAX_BATCH_TIME_MS (MLServer's batching),
#        BENCH_MAX_OTHER_PCT (5), BENCH_RETRIES (2): see bench/bench.py,
#        BENCH_MLSERVER_PIP / BENCH_KSERVE_PIP (pip requirements of each peer's venv).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/.bench"
PY="$ROOT/.venv/bin/python"
PIDFILE="$OUT/run/servers.pgids"
mkdir -p "$OUT/logs" "$OUT/run"

# MLServer's uvicorn picks httptools when it is installed (KServe's requirements already
# pull it in); with it every server here parses HTTP the same way.
MLSERVER_PIP=${BENCH_MLSERVER_PIP:-"mlserver onnxruntime httptools"}
KSERVE_PIP=${BENCH_KSERVE_PIP:-"kserve onnxruntime"}

say() { printf 'bench: %s\n' "$*" >&2; }

if [[ ! -x $PY ]]; then
  say "no project venv at $PY (run: make venv)"
  exit 1
fi

wanted() { # is server $1 selected by BENCH_SERVERS (default: all)?
  [[ -z ${BENCH_SERVERS:-} ]] || [[ ",${BENCH_SERVERS// /,}," == *",$1,"* ]]
}

ensure_wrk() {
  command -v wrk >/dev/null && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing wrk (apt-get)"
    apt-get update -qq >"$OUT/logs/apt.log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >>"$OUT/logs/apt.log" 2>&1 || true
  fi
  if ! command -v wrk >/dev/null; then
    say "wrk is missing and could not be installed (see $OUT/logs/apt.log); install it and retry"
    exit 1
  fi
}

# ensure_venv NAME "PIP SPEC": .bench/venv-NAME with the spec installed, or a
# .bench/venv-NAME.failed note that bench.py reports when it skips the server.
ensure_venv() {
  local name=$1 spec=$2 venv="$OUT/venv-$1"
  local stamp="$venv/.bench-stamp" failed="$OUT/venv-$1.failed" log="$OUT/logs/install-$1.log"
  if [[ -f $stamp && $(<"$stamp") == "$spec" ]]; then
    return 0
  fi
  say "installing $name into ${venv#"$ROOT"/} (pip install $spec); log: ${log#"$ROOT"/}"
  rm -rf "$venv" "$failed"
  local base
  base=$("$PY" -c 'import sys; print(sys._base_executable)')
  # shellcheck disable=SC2086  # the spec is a list of requirements
  if "$base" -m venv "$venv" >"$log" 2>&1 &&
    "$venv/bin/python" -m pip install --quiet --upgrade pip >>"$log" 2>&1 &&
    "$venv/bin/python" -m pip install $spec >>"$log" 2>&1; then
    printf '%s' "$spec" >"$stamp"
  else
    printf 'pip install %s failed (see %s): %s\n' "$spec" "${log#"$ROOT"/}" \
      "$(grep -E 'ERROR|error:' "$log" | tail -n 1)" >"$failed"
    say "WARNING: $name could not be installed; it will be SKIPPED. $(<"$failed")"
  fi
}

# nginx for the router comparison; the package must not start a system nginx on install.
ensure_nginx() {
  command -v nginx >/dev/null && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing nginx-light (apt-get)"
    local policy=/usr/sbin/policy-rc.d created=
    if [[ ! -e $policy ]]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >>"$OUT/logs/apt.log" 2>&1 || true
    [[ -n $created ]] && rm -f "$policy"
  fi
  command -v nginx >/dev/null || say "nginx is missing; the router bench will skip it"
}

ensure_wrk
command -v taskset >/dev/null || { say "taskset (util-linux) is missing"; exit 1; }
# BENCH_SUITES: serve (serinus serve vs peers), router (router vs direct vs nginx), drift
# (serinus serve with vs without --profile); all by default.
SUITES=${BENCH_SUITES:-serve,router,drift}
# The peers' venvs are only for the serve suite: `BENCH_SUITES=router` needs neither.
if [[ ",$SUITES," == *",serve,"* ]]; then
  wanted mlserver && ensure_venv mlserver "$MLSERVER_PIP"
  wanted kserve && ensure_venv kserve "$KSERVE_PIP"
fi

# bench.py stops every server it starts, on errors and on SIGINT/SIGTERM too. This trap is
# the backstop: it forwards the signal, waits, then kills any server process group that
# bench.py recorded in $PIDFILE and did not get to stop.
bench_pid=
cleanup() {
  trap - EXIT INT TERM HUP
  if [[ -n $bench_pid ]] && kill -0 "$bench_pid" 2>/dev/null; then
    kill -TERM "$bench_pid" 2>/dev/null || true
    for _ in $(seq 150); do
      kill -0 "$bench_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$bench_pid" 2>/dev/null || true
  fi
  if [[ -s $PIDFILE ]]; then
    while read -r pgid; do
      [[ -n $pgid ]] && kill -KILL -- "-$pgid" 2>/dev/null || true
    done <"$PIDFILE"
  fi
  rm -f "$PIDFILE"
  # Scratch dirs of servers that were not stopped cleanly.
  find "$OUT/run" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} + 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

rc=0
if [[ ",$SUITES," == *",serve,"* ]]; then
  "$PY" "$ROOT/bench/bench.py" &
  bench_pid=$!
  wait "$bench_pid" || rc=$?
  bench_pid=
fi
if [[ $rc -eq 0 && ",$SUITES," == *",router,"* ]]; then
  ensure_nginx
  "$PY" "$ROOT/bench/router_bench.py" &
  bench_pid=$!
  wait "$bench_pid" || rc=$?
  bench_pid=
  if [[ $rc -eq 0 ]]; then
    "$PY" "$ROOT/bench/shadow_rate.py" &
    bench_pid=$!
    wait "$bench_pid" || rc=$?
    bench_pid=
  fi
fi
if [[ $rc -eq 0 && ",$SUITES," == *",drift,"* ]]; then
  "$PY" "$ROOT/bench/drift_bench.py" &
  bench_pid=$!
  wait "$bench_pid" || rc=$?
  bench_pid=
fi
exit "$rc"
