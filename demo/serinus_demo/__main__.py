"""``make demo``: a whole rollout story on this machine, in about two minutes.

Builds four fraud models and their drift profiles, brings the first up with ``serinus local
up``, sends it traffic, and edits the ModelDeployment three times: a canary that is
promoted, a shadow that is rolled back, a blue-green switch. Prints each outcome and why,
and exits non-zero if any is not the expected one or a process is left behind.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from serinus_demo import models as demo_models
from serinus_demo.localup import SERINUS, LocalUp
from serinus_demo.scenario import DEMO, NAME, NAMESPACE, Outcome, play, summary
from serinus_demo.traffic import Traffic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def has_profile_command() -> bool:
    done = subprocess.run([*SERINUS, "profile", "--help"], capture_output=True, check=False)
    return done.returncode == 0


def build_profiles(built: dict[str, demo_models.DemoModel]) -> dict[str, Path]:
    out = {}
    for version, model in built.items():
        target = model.path.with_suffix(".profile.json")
        command = [*SERINUS, "profile", "--model", str(model.path), "--data", str(model.data)]
        command += ["--categorical", "region", "-o", str(target)]
        subprocess.run(command, check=True, capture_output=True)
        out[version] = target
    return out


def main() -> int:
    from serinus_operator.platforms.local_prometheus import PrometheusMissing, find_binary

    try:
        find_binary()
    except PrometheusMissing as exc:
        print(f"make demo: {exc}", file=sys.stderr)
        return 1
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {text}", flush=True)

    work = Path(".serinus/demo").resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    say(f"building the demo models in {work / 'models'}")
    built = demo_models.build(work / "models")
    for model in built.values():
        say(f"   {model.version}: {model.description}")
    profiles: dict[str, Path] = {}
    if has_profile_command():
        profiles = build_profiles(built)
        say("   and their drift profiles (serinus profile)")
    else:
        say("   (no `serinus profile` here: the shadow is judged without drift)")
    port = free_port()
    run = LocalUp(
        work / "fraud.yaml", state_dir=work / "state", port=port, namespace=NAMESPACE, name=NAME
    )
    traffic = Traffic(run.url, NAME, rate=DEMO.rate)
    say(f"serinus local up {run.manifest} --port {port}   (its log: {run.log})")
    outcomes: list[Outcome] = []
    error = ""
    try:
        outcomes = play(
            run,
            traffic,
            models={v: m.path for v, m in built.items()},
            profiles=profiles,
            timings=DEMO,
            say=say,
        )
    except (TimeoutError, RuntimeError) as exc:
        error = str(exc)
    except KeyboardInterrupt:
        error = "interrupted"
    finally:
        traffic.stop()
        say("stopping serinus local (Ctrl-C)")
        left = run.stop()
    print()
    print("Summary")
    print(summary(outcomes))
    stats = traffic.stats
    versions = _versions(run)
    accuracy = []
    for revision in sorted({r for (r, _) in stats.answers}, key=lambda r: versions.get(r, r)):
        share = stats.accuracy(revision)
        if share is not None and revision in versions:
            accuracy.append(f"{versions[revision]} {share:.0%}")
    print(f"requests sent: {stats.total()}, answered with an error: {stats.errors()}")
    if accuracy:
        print("accuracy on live traffic (true labels): " + ", ".join(accuracy))
    if left:
        print(f"FAIL processes left running: {left}")
    else:
        print("ok   stopped cleanly: no process left behind")
    if error:
        print(f"FAIL {error}")
        print(f"     the log of serinus local up is {run.log}")
    failed = bool(error) or bool(left) or not outcomes or not all(o.ok for o in outcomes)
    print()
    elapsed = time.monotonic() - started
    print(f"{'FAILED' if failed else 'All outcomes as expected'} in {elapsed:.0f} s.")
    if not failed:
        rel = work.relative_to(Path.cwd()) if work.is_relative_to(Path.cwd()) else work
        print(f"Look back:  .venv/bin/serinus local status --state-dir {rel / 'state'}")
        print(f"Try it:     .venv/bin/serinus local up {rel / 'fraud.yaml'}   then edit its")
        print("            spec.model (another fraud-vN.onnx and version) and save; docs/local.md")
    return 1 if failed else 0


def _versions(run: LocalUp) -> dict[str, str]:
    """Revision -> version, from the history kept in status."""
    status = run.status()
    out = {}
    for entry in status.get("history") or []:
        out[str(entry.get("revision"))] = str(entry.get("version"))
    stable = status.get("stable") or {}
    if stable:
        out[str(stable.get("revision"))] = str(stable.get("version"))
    return out


if __name__ == "__main__":
    sys.exit(main())
