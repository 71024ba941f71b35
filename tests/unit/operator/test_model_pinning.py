"""A model's identity and the pinning of aliases and tags (``platforms/pinning.py``).

The store is a table here (``Store``): pinning's own logic — when it asks, what an outage
does, what a changed environment does — is what is under test; the real asking (MLflow's
REST API, a registry's manifests) is tested against real servers in
``tests/integration/serving/test_model_pinning.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from serinus_operator import api
from serinus_operator.api.model import identity, moves
from serinus_operator.platforms.pinning import ModelPins, PinError
from serinus_operator.rollout import Phase, Reason
from unit.operator.kit import S, Sim, Tick, manifest, spec_dict, walk

SHA = "a" * 64
SIGNED = "https://bucket.s3.amazonaws.com/fraud/v1.onnx?X-Amz-Signature={}&X-Amz-Expires=600"


@pytest.mark.parametrize(
    ("uri", "moving"),
    [
        ("models:/fraud@champion", True),
        ("models:/fraud/3", False),
        ("oci://ghcr.io/acme/fraud:v7", True),
        ("oci://localhost:5000/acme/fraud:v7", True),
        (f"oci://ghcr.io/acme/fraud@sha256:{SHA}", False),
        ("s3://bucket/fraud.onnx", False),
        ("https://example.com/fraud.onnx", False),
        ("pvc://models/fraud.onnx", False),
    ],
)
def test_which_uris_move(uri: str, moving: bool) -> None:
    assert moves(uri) is moving


def _revision(uri: str, sha256: str | None = None) -> str:
    model = api.ModelSpec(uri=uri, version="v1", sha256=sha256)
    return api.revision_of(model, api.ServingSpec())


def test_a_re_signed_url_to_the_same_content_is_the_same_revision() -> None:
    assert _revision(SIGNED.format("aaa"), SHA) == _revision(SIGNED.format("bbb"), SHA)
    assert (
        identity(api.ModelSpec(uri=SIGNED.format("aaa"), version="v1", sha256=SHA))["uri"]
        == SIGNED.partition("?")[0]
    )


def test_without_sha256_the_whole_url_is_the_identity() -> None:
    """Nothing says the bytes behind two URLs are the same."""
    assert _revision(SIGNED.format("aaa")) != _revision(SIGNED.format("bbb"))


def test_other_content_or_path_is_another_revision() -> None:
    base = _revision(SIGNED.format("aaa"), SHA)
    assert _revision(SIGNED.format("aaa"), "b" * 64) != base
    assert _revision(SIGNED.format("aaa").replace("v1.onnx", "v2.onnx"), SHA) != base


def test_revision_hashes_without_a_query_did_not_change() -> None:
    """Every URI the CRD took before had no signature to drop: their hashes stay, so an
    operator upgrade starts no rollout (the golden files pin the rest)."""
    model = api.ModelSpec(uri="https://models.example.com/v1.onnx", version="v1", sha256=SHA)
    assert api.revision_of(model, api.ServingSpec()) == _revision(
        "https://models.example.com/v1.onnx", SHA
    )
    assert identity(model) == model.to_dict()


# --- the engine: a new URL for the same bytes ------------------------------------------------


def _signed_spec(signature: str) -> dict[str, Any]:
    return spec_dict("v1", model={"uri": SIGNED.format(signature), "version": "v1", "sha256": SHA})


def test_a_re_signed_url_starts_no_rollout_but_the_pods_get_the_new_url() -> None:
    sim = Sim.started(_signed_spec("aaa"))
    revision = sim.revision
    sim.raw["model"]["uri"] = SIGNED.format("bbb")
    sim.generation += 1
    walk(sim, [Tick(S, phase=Phase.STABLE, events=(Reason.MODEL_MOVED,), stable="v1")])
    assert sim.status.candidate is None
    stable = sim.status.stable
    assert stable is not None and stable.ref.revision == revision
    assert stable.ref.model.uri == SIGNED.format("bbb"), "restarted pods fetch with this URL"
    walk(sim, [Tick(S, phase=Phase.STABLE, events=())])  # said once


def test_a_re_signed_url_during_a_rollout_reaches_the_candidate_and_keeps_its_place() -> None:
    sim = Sim.started(spec_dict("v1"))
    sim.raw["model"] = {"uri": SIGNED.format("aaa"), "version": "v2", "sha256": SHA}
    sim.generation += 1
    sim.step()
    sim.step(S)
    walk(sim, [Tick(phase=Phase.PROGRESSING, weight=10)])
    before = sim.status.candidate
    assert before is not None
    sim.raw["model"]["uri"] = SIGNED.format("bbb")
    sim.generation += 1
    walk(sim, [Tick(S, phase=Phase.PROGRESSING, weight=10, events=())])
    after = sim.status.candidate
    assert after is not None
    assert after.ref.revision == before.ref.revision and after.started_at == before.started_at
    assert after.ref.model.uri == SIGNED.format("bbb")


# --- pinning ---------------------------------------------------------------------------------


@dataclass
class Store:
    """What each alias or tag names, and every question asked of it."""

    names: dict[str, str]
    asked: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    down: bool = False

    def __call__(self, uri: str, env: Mapping[str, str]) -> str:
        self.asked.append((uri, dict(env)))
        if self.down:
            raise PinError("the MLflow server did not answer")
        if uri not in self.names:
            raise PinError(f"{uri}: no such alias")
        return self.names[uri]


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def _md(uri: str) -> api.ModelDeployment:
    return api.parse(manifest(spec_dict("v1", model={"uri": uri, "version": "v1"})))


def _pin(pins: ModelPins, md: api.ModelDeployment, env: Mapping[str, str] | None = None) -> str:
    async def environment() -> Mapping[str, str]:
        return env or {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}

    return asyncio.run(pins.pinned(md, environment)).spec.model.uri


def test_an_alias_is_asked_at_most_once_per_refresh_and_a_move_is_seen_after() -> None:
    store, clock = Store({"models:/fraud@champion": "models:/fraud/3"}), Clock()
    pins = ModelPins(store, refresh=60, clock=clock)
    md = _md("models:/fraud@champion")
    assert _pin(pins, md) == "models:/fraud/3"
    clock.now = 59
    assert _pin(pins, md) == "models:/fraud/3"
    assert len(store.asked) == 1
    store.names["models:/fraud@champion"] = "models:/fraud/4"
    assert _pin(pins, md) == "models:/fraud/3", "not asked again before the refresh"
    clock.now = 60
    assert _pin(pins, md) == "models:/fraud/4"
    assert len(store.asked) == 2


def test_a_pinned_spec_is_a_new_revision_only_when_the_alias_names_new_bytes() -> None:
    store, clock = Store({"models:/fraud@champion": "models:/fraud/3"}), Clock()
    pins = ModelPins(store, refresh=1, clock=clock)
    md = _md("models:/fraud@champion")

    def revision() -> str:
        return asyncio.run(pins.pinned(md, _env)).spec.revision

    first = revision()
    clock.now = 5
    assert revision() == first, "asked again, same version: same revision"
    store.names["models:/fraud@champion"] = "models:/fraud/4"
    clock.now = 10
    assert revision() != first


async def _env() -> Mapping[str, str]:
    return {}


def test_an_outage_keeps_the_last_answer_and_a_first_failure_is_an_error() -> None:
    store, clock = Store({"models:/fraud@champion": "models:/fraud/3"}), Clock()
    pins = ModelPins(store, refresh=1, clock=clock)
    md = _md("models:/fraud@champion")
    assert _pin(pins, md) == "models:/fraud/3"
    store.down = True
    clock.now = 2
    assert _pin(pins, md) == "models:/fraud/3", "an outage is not a change"
    with pytest.raises(PinError, match="did not answer"):
        _pin(pins, _md("models:/other@champion"))


def test_a_changed_environment_asks_again_and_an_outage_then_is_an_error() -> None:
    """Other credentials or another tracking server may mean other bytes: the last answer
    given with the old ones does not stand for them."""
    store, clock = Store({"models:/fraud@champion": "models:/fraud/3"}), Clock()
    pins = ModelPins(store, refresh=60, clock=clock)
    md = _md("models:/fraud@champion")
    _pin(pins, md, {"MLFLOW_TRACKING_URI": "http://a"})
    store.down = True
    clock.now = 61
    with pytest.raises(PinError):
        _pin(pins, md, {"MLFLOW_TRACKING_URI": "http://b"})


def test_a_uri_that_does_not_move_is_never_asked_about() -> None:
    store = Store({})
    pins = ModelPins(store, refresh=60)
    for uri in ("s3://bucket/m.onnx", "models:/fraud/3", f"oci://r.io/a/b@sha256:{SHA}"):
        assert _pin(pins, _md(uri)) == uri
    assert store.asked == []


def test_the_environment_reaches_the_store_and_only_a_digest_of_it_is_kept() -> None:
    store = Store({"models:/fraud@champion": "models:/fraud/3"})
    pins = ModelPins(store, refresh=60)
    _pin(pins, _md("models:/fraud@champion"), {"MLFLOW_TRACKING_TOKEN": "s3cr3t"})
    assert store.asked[0][1] == {"MLFLOW_TRACKING_TOKEN": "s3cr3t"}
    assert "s3cr3t" not in repr(pins._last)


def test_recheck_in_wakes_only_moving_uris() -> None:
    pins = ModelPins(Store({}), refresh=30)
    assert pins.recheck_in(manifest(spec_dict("v1", model={"uri": "models:/m@a"}))) == 30
    assert pins.recheck_in(manifest(spec_dict("v1"))) is None
    assert pins.recheck_in({"spec": "garbage"}) is None
