"""A shadow judged on labels against the stable: 3 points worse is rolled back, as good is
promoted (issue 21), through ``serinus local up``.

Real: ``serinus local up`` (the reconcile loop and its analysis), a ``serinus serve`` process
per revision, ``serinus router`` (mirroring to the shadow, its in-memory prediction log,
``POST /v2/models/{m}/feedback``) and Prometheus scraping them. The ONNX models are built
here with ``onnx.helper``; the traffic is this module's threads, one row per request, every
request labelled with the truth ~0.5 s after its answer (in batches, as a labelling
pipeline would), ids in the ``x-request-id`` header or the OIP body ``id`` in turn.

Accuracies are exact by construction: x ~ Uniform(0, 1) (float32, seeded), truth
``x > 0.5``, and each model answers the truth except on half-open bands of x where it
flips it:

- stable S: wrong on [0.10, 0.15): 95%;
- "worse":  wrong there and on [0.60, 0.63): 92%, 3 points below S, never right where S is
  wrong (paired cells: 92% both right, 3% only S right, 5% both wrong);
- "equal":  wrong on [0.11, 0.16): 95%, its mistakes partly elsewhere (1% only S right,
  1% only it right, 4% both wrong).

One ``serinus local up`` run plays two acts from S, each a YAML edit to a Shadow rollout
(``mirrorPercent: 100``, ``then: Promote``) gated only by ``accuracy`` with
``compare: {maxDegradation: 0.01, minSamples: 200}`` at 95% (``error-rate`` as a dry run),
``interval: 2s``, ``failureLimit: 0``, ``inconclusiveLimit: 100``:

1. "worse" is RolledBack with reason AnalysisFailed: the accuracy check failed, its status
   shows the value below the baseline, samples, and a p-value under 5%;
2. "equal" is Promoted: its status showed the accuracy check's Pass (value, baseline,
   samples, p-value) before the promotion, which ``then: Promote`` only does on a passing
   measurement once ``duration`` (20 s) is over; no measurement ever failed.

Both are judged on the router's paired cells (``serinus_feedback_paired_total``), which the
test also reads: every label sent was matched, "worse" was never right where S was wrong,
"equal" was right and wrong where S was not, and no user was ever answered by a shadow.

Labels needed (``test_the_seeded_inputs_decide_as_designed`` replays the seeded inputs
through ``compare_paired`` from 60 starting points, a look every 25 labels): "worse" fails
after 400-1,325 paired labels (median ~575; docs/analysis.md's -3 point row says ~1,570 at
90% accuracy with its coarser looks), "equal" passes after 650-3,275 (median ~1,700, fewer
than the docs' A/A row because its discordance is 2%, not 6%), and neither ever gets the
other verdict. At 400 labelled requests/s a look (every 2 s) sees ~800 more labels, so
in practice "worse" fails at its first or second look past ``minSamples``, on ~550-1,450
labels, 5-8 s after its YAML edit; "equal" shows its first Pass on ~1,200-2,300 labels
6.5-9 s after its edit and is promoted when the duration ends (~23 s). The module takes
35-45 s.
"""

from __future__ import annotations

import functools
import itertools
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper
from prometheus_client.parser import text_string_to_metric_families

from serinus_operator.analysis.sequential import Paired, Settings, compare_paired
from support.local_run import wait_status
from support.serve import free_port

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "demo"))

from serinus_demo.localup import LocalUp  # noqa: E402

pytestmark = pytest.mark.integration

NAME, NAMESPACE = "scores", "labels"
Bands = tuple[tuple[float, float], ...]
#: Where each model flips the truth (``x > 0.5``): half-open bands of x.
BANDS: Mapping[str, Bands] = {
    "stable": ((0.10, 0.15),),
    "worse": ((0.10, 0.15), (0.60, 0.63)),
    "equal": ((0.11, 0.16),),
}
ACCURACY = {"stable": 0.95, "worse": 0.92, "equal": 0.95}

MAX_DEGRADATION = 0.01
CONFIDENCE = 0.95
MIN_SAMPLES = 200
INTERVAL = "2s"
#: The shadow runs at least this long, then is promoted on a passing measurement. A Pass
#: (seen ~5-6 s after the mirror starts; ~11 s for the slowest stretch of the stream) then
#: shows in status with its numbers before the promotion, which clears status.analysis.
SHADOW_DURATION = "20s"
RATE = 400.0  # requests per second, over WORKERS threads
WORKERS = 4
LABEL_DELAY = 0.5  # seconds from an answer to its label, at least
LABEL_BATCH_EVERY = 0.25
SEED = 21
N_INPUTS = 100_000
ACT_TIMEOUT = 90.0

PAIRED = ("both_right", "only_shadow_right", "only_primary_right", "both_wrong")


# --- models ----------------------------------------------------------------------------------


def band_model(bands: Bands) -> bytes:
    """``label = (x > 0.5) xor (x in any band)``; x FLOAT [batch, 1], label INT64 [batch]."""
    inits = [
        helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
        helper.make_tensor("flat", TensorProto.INT64, [1], [-1]),
    ]
    nodes = [helper.make_node("Greater", ["x", "half"], ["truth"])]
    flip = ""
    for i, (lo, hi) in enumerate(bands):
        inits += [
            helper.make_tensor(f"lo{i}", TensorProto.FLOAT, [], [lo]),
            helper.make_tensor(f"hi{i}", TensorProto.FLOAT, [], [hi]),
        ]
        nodes += [
            helper.make_node("GreaterOrEqual", ["x", f"lo{i}"], [f"above{i}"]),
            helper.make_node("Less", ["x", f"hi{i}"], [f"below{i}"]),
            helper.make_node("And", [f"above{i}", f"below{i}"], [f"in{i}"]),
        ]
        if flip:
            nodes.append(helper.make_node("Or", [flip, f"in{i}"], [f"any{i}"]))
            flip = f"any{i}"
        else:
            flip = f"in{i}"
    nodes += [
        helper.make_node("Xor", ["truth", flip], ["answer"]),
        helper.make_node("Cast", ["answer"], ["label2d"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["label2d", "flat"], ["label"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bands",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def right(x: np.ndarray, bands: Bands) -> np.ndarray:
    """Where :func:`band_model` answers the truth (float32 comparisons, as ONNX Runtime's)."""
    wrong = np.zeros(x.shape, dtype=bool)
    for lo, hi in bands:
        wrong |= (x >= np.float32(lo)) & (x < np.float32(hi))
    return ~wrong


def inputs() -> np.ndarray:
    return np.random.default_rng(SEED).random(N_INPUTS).astype(np.float32)


def manifest(models: Mapping[str, Path], version: str) -> str:
    compare = {
        "baseline": "stable",
        "maxDegradation": MAX_DEGRADATION,
        "confidence": CONFIDENCE,
        "minSamples": MIN_SAMPLES,
    }
    doc = {
        "apiVersion": "serinus.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "model": {"uri": str(models[version]), "version": version},
            "strategy": {
                "type": "Shadow",
                "scaleDownDelay": "1s",
                "shadow": {"mirrorPercent": 100, "duration": SHADOW_DURATION, "then": "Promote"},
            },
            "analysis": {
                "interval": INTERVAL,
                "failureLimit": 0,
                # A sequential test is Inconclusive until it has the evidence: never pause.
                "inconclusiveLimit": 100,
                "metrics": [
                    {"name": "accuracy", "compare": compare},
                    {"name": "error-rate", "max": 0.01, "dryRun": True},
                ],
            },
            "progressDeadline": "3m",
        },
    }
    return yaml.safe_dump(doc, sort_keys=False)


# --- traffic ---------------------------------------------------------------------------------


@dataclass
class Traffic:
    """``WORKERS`` threads sending ``RATE`` one-row requests/s, taking x in order from one
    seeded stream, and every answered request's label ``LABEL_DELAY`` s later."""

    url: str
    x: np.ndarray
    lock: threading.Lock = field(default_factory=threading.Lock)
    answered: Counter[str] = field(default_factory=Counter)  # by revision
    correct: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    labels_sent: int = 0
    label_failures: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _next: Iterator[int] = field(default_factory=itertools.count)

    def start(self) -> None:
        for _ in range(WORKERS):
            thread = threading.Thread(target=self._work, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def _work(self) -> None:
        period = WORKERS / RATE
        due: deque[tuple[float, dict[str, Any]]] = deque()
        next_at = flush_at = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self._stop.is_set():
                label = self._infer(client, next(self._next))
                if label is not None:
                    due.append((time.monotonic() + LABEL_DELAY, label))
                now = time.monotonic()
                if due and due[0][0] <= now and now >= flush_at:
                    batch = []
                    while due and due[0][0] <= now:
                        batch.append(due.popleft()[1])
                    self._feedback(client, batch)
                    flush_at = now + LABEL_BATCH_EVERY
                next_at += period
                time.sleep(max(0.0, next_at - time.monotonic()))

    def _infer(self, client: httpx.Client, i: int) -> dict[str, Any] | None:
        x = float(self.x[i])
        truth = int(x > 0.5)
        request_id = f"r{i}"
        body: dict[str, Any] = {
            "inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [x]}]
        }
        headers = {}
        if i % 2:
            body["id"] = request_id  # the OIP body's id ...
        else:
            headers["x-request-id"] = request_id  # ... or the header
        try:
            response = client.post(f"/v2/models/{NAME}/infer", json=body, headers=headers)
        except httpx.HTTPError as exc:
            with self.lock:
                self.failures[type(exc).__name__] += 1
            return None
        if response.status_code != 200:
            with self.lock:
                self.failures[f"HTTP {response.status_code}"] += 1
            return None
        revision = response.headers.get("x-serinus-revision", "?")
        (answer,) = response.json()["outputs"][0]["data"]
        with self.lock:
            self.answered[revision] += 1
            self.correct[revision] += int(answer) == truth
        return {"id": request_id, "label": truth}

    def _feedback(self, client: httpx.Client, batch: list[dict[str, Any]]) -> None:
        try:
            response = client.post(f"/v2/models/{NAME}/feedback", json={"labels": batch})
        except httpx.HTTPError as exc:
            with self.lock:
                self.label_failures[type(exc).__name__] += 1
            return
        with self.lock:
            if response.status_code == 200:
                self.labels_sent += len(batch)
            else:
                self.label_failures[f"HTTP {response.status_code}: {response.text}"] += 1


# --- the play --------------------------------------------------------------------------------


@dataclass
class Act:
    version: str
    revision: str
    entry: dict[str, Any]  # its history entry
    status: dict[str, Any]  # the first status with that entry
    measurements: list[list[dict[str, Any]]]  # status.analysis.metrics, each one seen
    seen_at: list[float]  # when each was first seen, in seconds after the YAML edit
    seconds: float  # from the YAML edit to the outcome
    cells: dict[str, float]  # the router's paired cells (stable, this revision) right after

    def accuracy(self) -> list[dict[str, Any]]:
        return [m for ms in self.measurements for m in ms if m["name"] == "accuracy"]


@dataclass
class Played:
    stable: str
    acts: dict[str, Act]
    traffic: Traffic
    router: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    seconds: float


wait_for = functools.partial(wait_status, timeout=ACT_TIMEOUT)


def history_entry(status: Mapping[str, Any], version: str) -> dict[str, Any] | None:
    for entry in reversed(status.get("history") or []):
        if entry.get("version") == version:
            return dict(entry)
    return None


def router_metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def paired_cells(
    metrics: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], primary: str, shadow: str
) -> dict[str, float]:
    cells = dict.fromkeys(PAIRED, 0.0)
    for (name, labels), value in metrics.items():
        found = dict(labels)
        if name == "serinus_feedback_paired_total" and (
            found.get("primary"),
            found.get("shadow"),
        ) == (primary, shadow):
            cells[found["outcome"]] = value
    return cells


def play_act(run: LocalUp, models: Mapping[str, Path], version: str, stable: str) -> Act:
    """Edit the YAML to roll ``version`` out as a shadow; wait for its outcome."""
    started = time.monotonic()
    run.write(manifest(models, version))
    measurements: list[list[dict[str, Any]]] = []
    seen_at: list[float] = []
    revision = ""

    def seen(status: dict[str, Any]) -> None:
        nonlocal revision
        candidate = status.get("candidate") or {}
        if candidate.get("version") == version:
            revision = candidate["revision"]
        elif history_entry(status, version) is None:
            return
        analysis = status.get("analysis") or {}
        metrics = analysis.get("metrics") or []
        if metrics and (not measurements or measurements[-1] != metrics):
            measurements.append(list(metrics))
            seen_at.append(time.monotonic() - started)

    status = wait_for(
        run, lambda s: history_entry(s, version) is not None, f"{version} decided", seen=seen
    )
    entry = history_entry(status, version)
    assert entry is not None
    cells = paired_cells(router_metrics(run.url), stable, entry["revision"])
    return Act(
        version,
        revision or entry["revision"],
        entry,
        status,
        measurements,
        seen_at,
        time.monotonic() - started,
        cells,
    )


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    work = tmp_path_factory.mktemp("shadow-on-labels")
    models = {}
    for version, bands in BANDS.items():
        models[version] = work / f"{version}.onnx"
        models[version].write_bytes(band_model(bands))
    run = LocalUp(
        work / f"{NAME}.yaml",
        state_dir=work / "state",
        port=free_port(),
        namespace=NAMESPACE,
        name=NAME,
    )
    traffic = Traffic(run.url, inputs())
    started = time.monotonic()
    run.write(manifest(models, "stable"))
    run.start()
    try:
        status = wait_for(
            run,
            lambda s: (
                s.get("phase") == "Stable" and (s.get("stable") or {}).get("version") == "stable"
            ),
            "the stable model",
        )
        stable = status["stable"]["revision"]
        wait_for(
            run,
            lambda _: any(
                p.get("role") == "router" and p.get("state") == "Ready"
                for p in run.info().get("processes") or []
            ),
            "the router ready",
        )
        traffic.start()
        acts = {}
        for version in ("worse", "equal"):
            acts[version] = play_act(run, models, version, stable)
        traffic.stop()
        played = Played(stable, acts, traffic, router_metrics(run.url), 0.0)
        played.seconds = time.monotonic() - started
        yield played
    except BaseException:
        print(run.output())
        raise
    finally:
        traffic.stop()
        left = run.stop()
        assert not left, f"processes left behind: {left}"


# --- what the design promises ----------------------------------------------------------------


def paired_stream(version: str) -> np.ndarray:
    """Cumulative paired cells (stable, ``version``) over the seeded inputs: shape (4, n+1)."""
    x = inputs()
    s, c = right(x, BANDS["stable"]), right(x, BANDS[version])
    cells = np.stack([s & c, c & ~s, s & ~c, ~s & ~c]).astype(np.int64)
    return np.concatenate([np.zeros((4, 1), np.int64), np.cumsum(cells, axis=1)], axis=1)


def test_the_seeded_inputs_decide_as_designed() -> None:
    """The accuracies are the designed ones, and whichever stretch of the stream a run
    happens to judge, the sequential test says Fail for "worse" and Pass for "equal" within
    a few thousand labels, and never the opposite (no process is started here)."""
    x = inputs()
    for version, accuracy in ACCURACY.items():
        assert abs(float(np.mean(right(x, BANDS[version]))) - accuracy) < 0.002, version
    settings = Settings(
        max_degradation=MAX_DEGRADATION, confidence=CONFIDENCE, min_samples=MIN_SAMPLES
    )
    for version, verdict, within in (("worse", "Fail", 2_000), ("equal", "Pass", 5_000)):
        cum = paired_stream(version)
        firsts = []
        for start in range(0, 30_000, 500):  # wherever the act starts in the stream
            first = None
            for n in range(MIN_SAMPLES, 2 * within, 25):  # a look every 25 labels
                cells = (cum[:, start + n] - cum[:, start]).astype(float)
                got = compare_paired(Paired(*cells), settings=settings).verdict.value
                assert got in ("Inconclusive", verdict), (version, start, n, got)
                if got == verdict and first is None:
                    first = n
            assert first is not None and first <= within, (version, start, first)
            firsts.append(first)
        print(
            f"\n{version}: {verdict} after {min(firsts)}-{max(firsts)} labels, "
            f"median {float(np.median(firsts)):.0f}"
        )


# --- the acts ----------------------------------------------------------------------------------


def test_a_shadow_3_points_worse_is_rolled_back_on_labels(played: Played) -> None:
    act = played.acts["worse"]
    assert (act.entry["outcome"], act.entry["reason"]) == ("RolledBack", "AnalysisFailed"), act
    assert act.status["stable"]["revision"] == played.stable
    assert (act.status.get("rolledBack") or {}).get("revision") == act.revision
    # The decisive measurement, as status shows it.
    last = {m["name"]: m for m in act.status["analysis"]["metrics"]}
    accuracy = last["accuracy"]
    assert accuracy["result"] == "Fail", accuracy
    assert not accuracy.get("dryRun")
    assert accuracy["value"] < accuracy["baseline"] - MAX_DEGRADATION, accuracy
    assert accuracy["threshold"] == pytest.approx(accuracy["baseline"] - MAX_DEGRADATION)
    # Near the designed 92% against 95% (a few hundred labels: a few points of noise).
    assert 0.01 < accuracy["baseline"] - accuracy["value"] < 0.07, accuracy
    assert abs(accuracy["baseline"] - ACCURACY["stable"]) < 0.04, accuracy
    assert MIN_SAMPLES <= accuracy["samples"] < 5_000, accuracy
    assert accuracy["pValue"] < 1 - CONFIDENCE, accuracy
    assert "always-valid interval" in accuracy["message"]
    assert last["error-rate"]["dryRun"] is True and last["error-rate"]["result"] != "Fail"
    # Nothing passed before: it was Inconclusive (gathering evidence), then failed.
    results = [m["result"] for m in act.accuracy()]
    assert "Pass" not in results, results
    assert act.entry["message"].startswith("analysis failed: accuracy"), act.entry
    # The router's cells: the shadow is never right where the stable is wrong.
    cells = act.cells
    assert cells["only_shadow_right"] == 0, cells
    assert cells["only_primary_right"] > 0 and cells["both_wrong"] > 0, cells
    assert sum(cells.values()) >= accuracy["samples"] * 0.9, (cells, accuracy)
    assert played.traffic.answered[act.revision] == 0, "a user got the shadow's answer"
    print(
        f"\nworse: rolled back {act.seconds:.1f} s after the edit on {accuracy['samples']:.0f} "
        f"paired labels: {accuracy['message']}"
    )


def test_an_equally_accurate_shadow_is_promoted_on_labels(played: Played) -> None:
    act = played.acts["equal"]
    assert (act.entry["outcome"], act.entry["reason"]) == ("Promoted", "Promoted"), act
    # The promotion keeps the numbers that decided it (the analysis status is cleared).
    assert act.entry["message"].startswith("shadow analysis passed (accuracy: Pass: candidate")
    assert "always-valid interval" in act.entry["message"] and "p=" in act.entry["message"]
    assert act.status["stable"]["revision"] == act.revision
    results = [m["result"] for m in act.accuracy()]
    assert "Fail" not in results, results
    passed = [m for m in act.accuracy() if m["result"] == "Pass"]
    assert passed, (
        f"no passing accuracy measurement in status before the promotion: {results}; a Pass "
        f"that comes only after the {SHADOW_DURATION} duration promotes in the same pass"
    )
    first = passed[0]
    passed_at = next(
        t
        for t, ms in zip(act.seen_at, act.measurements, strict=True)
        if any(m["name"] == "accuracy" and m["result"] == "Pass" for m in ms)
    )
    assert not first.get("dryRun")
    assert abs(first["value"] - first["baseline"]) < MAX_DEGRADATION, first
    assert (
        first["value"] >= first["threshold"] == pytest.approx(first["baseline"] - MAX_DEGRADATION)
    )
    assert abs(first["value"] - ACCURACY["equal"]) < 0.04, first
    assert abs(first["baseline"] - ACCURACY["stable"]) < 0.04, first
    assert MIN_SAMPLES <= first["samples"] < 10_000, first
    assert first["pValue"] < 1 - CONFIDENCE, first
    assert "not worse than baseline by more than 0.01" in first["message"], first
    # Discordant both ways: it is right where the stable is wrong, and the other way round.
    cells = act.cells
    assert cells["only_shadow_right"] > 0 and cells["only_primary_right"] > 0, cells
    assert cells["both_wrong"] > cells["only_shadow_right"], cells
    # Users got the stable's answers until the promotion, then its own.
    assert played.traffic.answered[played.stable] > 0
    print(
        f"\nequal: first Pass seen {passed_at:.1f} s after the edit, on {first['samples']:.0f} "
        f"paired labels: {first['message']}; promoted {act.seconds:.1f} s after the edit"
    )


def test_every_label_is_joined_and_users_saw_no_error(played: Played) -> None:
    traffic, router = played.traffic, played.router
    assert not traffic.failures, traffic.failures
    assert not traffic.label_failures, traffic.label_failures
    results = {
        dict(labels)["result"]: value
        for (name, labels), value in router.items()
        if name == "serinus_feedback_labels_total"
    }
    assert results["matched"] == traffic.labels_sent > 0, (results, traffic.labels_sent)
    assert results["unknown_id"] == results["expired"] == results["duplicate"] == 0, results
    # Users' answers are as accurate as designed, by the revision that gave them.
    for version, revision in (("stable", played.stable), ("equal", played.acts["equal"].revision)):
        n = traffic.answered[revision]
        if n >= 1_000:
            assert abs(traffic.correct[revision] / n - ACCURACY[version]) < 0.02, version
    print(
        f"\n{played.seconds:.1f} s in all; {sum(traffic.answered.values())} requests, "
        f"{traffic.labels_sent} labels, all matched"
    )
