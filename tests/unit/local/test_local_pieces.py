"""The local platform's pure pieces: file-SD targets and the Prometheus configuration,
the state directory and its lock, the stored object, the manifest reader and watcher."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from serinus_operator.local.cli import find_instance
from serinus_operator.local.manifest import ManifestError, ManifestWatcher, parse_manifest
from serinus_operator.platforms.base import Conflict
from serinus_operator.platforms.local_prometheus import (
    INSTALL_HINT,
    PrometheusMissing,
    Target,
    config,
    file_sd,
    find_binary,
)
from serinus_operator.platforms.local_state import AlreadyRunning, StateDir, instances
from serinus_operator.platforms.local_store import ObjectStore
from serinus_operator.platforms.processes import Backoff

pytestmark = pytest.mark.unit

MANIFEST = """
apiVersion: serinus.dev/v1alpha1
kind: ModelDeployment
metadata: {name: fraud}
spec:
  model: {uri: models/fraud.onnx, version: v1, profile: /abs/profile.json}
  strategy: {type: Canary, canary: {steps: [{setWeight: 50}]}}
"""


# --- Prometheus ------------------------------------------------------------------------------


def test_file_sd_gives_each_target_its_labels_in_a_stable_order() -> None:
    doc = file_sd(
        [
            Target("127.0.0.1:9002", {"revision": "b", "namespace": "ml", "model": "fraud"}),
            Target("127.0.0.1:9001", {"component": "router", "namespace": "ml"}),
        ]
    )
    assert doc == [
        {"targets": ["127.0.0.1:9001"], "labels": {"component": "router", "namespace": "ml"}},
        {
            "targets": ["127.0.0.1:9002"],
            "labels": {"model": "fraud", "namespace": "ml", "revision": "b"},
        },
    ]
    assert list(doc[1]["labels"]) == ["model", "namespace", "revision"]


def test_config_scrapes_the_file_sd_targets_with_honor_labels(tmp_path: Path) -> None:
    cfg = config(targets_file=tmp_path / "targets.json", scrape_interval=1)
    assert cfg["global"]["scrape_interval"] == "1s"
    (job,) = cfg["scrape_configs"]
    assert job["honor_labels"] is True
    assert job["file_sd_configs"] == [
        {"files": [str(tmp_path / "targets.json")], "refresh_interval": "5s"}
    ]
    assert config(targets_file=tmp_path, scrape_interval=0.5)["global"]["scrape_interval"] == (
        "500ms"
    )
    yaml.safe_dump(cfg)  # what is written to prometheus.yml


def test_a_missing_prometheus_names_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PrometheusMissing) as err:
        find_binary()
    assert str(err.value) == INSTALL_HINT
    assert "apt-get install prometheus" in INSTALL_HINT
    with pytest.raises(PrometheusMissing, match="not an executable"):
        find_binary(str(tmp_path / "nope"))
    fake = tmp_path / "prometheus"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_binary() == str(fake)


def test_backoff_doubles_up_to_its_maximum() -> None:
    b = Backoff(initial=1, maximum=8)
    assert [b.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]


# --- the state directory ---------------------------------------------------------------------


def test_a_second_holder_of_the_lock_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    state = StateDir.of(tmp_path, "ml", "fraud")
    assert state.path == tmp_path / "ml-fraud"
    assert not state.running()
    with state.lock():
        assert state.running()
        with pytest.raises(AlreadyRunning) as err, state.lock():
            pass
        assert f"pid {os.getpid()}" in str(err.value)
        assert "ml-fraud" in str(err.value)
    assert not state.running()
    with state.lock():  # released: free again
        pass


def test_events_and_objects_round_trip_and_instances_are_found(tmp_path: Path) -> None:
    state = StateDir.of(tmp_path, "ml", "fraud")
    assert state.load_object() is None
    assert state.events() == []
    state.save_object({"metadata": {"name": "fraud", "namespace": "ml"}})
    for i in range(3):
        state.append_event({"reason": f"R{i}"})
    state.events_file.write_text(state.events_file.read_text() + "not json\n")
    assert [e["reason"] for e in state.events()] == ["R0", "R1", "R2"]
    assert [e["reason"] for e in state.events(limit=2)] == ["R2"]  # the broken line counts
    state.trim_events()
    assert "not json" not in state.events_file.read_text()
    assert [s.path for s in instances(tmp_path)] == [state.path]
    assert not list(tmp_path.glob("ml-fraud/.*"))  # no temporary files left


def test_status_finds_an_instance_by_name_or_namespace_and_name(tmp_path: Path) -> None:
    assert "nothing has run" in str(find_instance(tmp_path, None))
    one = StateDir.of(tmp_path, "ml", "fraud")
    one.save_object({"metadata": {"name": "fraud", "namespace": "ml"}})
    assert find_instance(tmp_path, None) == one
    two = StateDir.of(tmp_path, "default", "fraud")
    two.save_object({"metadata": {"name": "fraud", "namespace": "default"}})
    assert "several" in str(find_instance(tmp_path, None))
    assert "ambiguous" in str(find_instance(tmp_path, "fraud"))
    assert find_instance(tmp_path, "ml/fraud") == one
    assert "no ModelDeployment 'churn'" in str(find_instance(tmp_path, "churn"))


# --- the stored object -----------------------------------------------------------------------


def test_generation_grows_with_the_spec_only_and_status_is_a_merge_patch(tmp_path: Path) -> None:
    state = StateDir.of(tmp_path, "default", "fraud")
    store = ObjectStore(state)
    manifest = parse_manifest(MANIFEST, base=tmp_path)
    assert store.apply(manifest)
    meta = store.object["metadata"]
    assert (meta["generation"], meta["namespace"], meta["resourceVersion"]) == (1, "default", "1")
    assert not store.apply(manifest)  # kubectl apply of the same file: nothing changes
    stored = store.write_status(
        {"phase": "Stable", "traffic": {"stable": 100}}, resource_version="1"
    )
    assert stored["status"] == {"phase": "Stable", "traffic": {"stable": 100}}
    with pytest.raises(Conflict):
        store.write_status({"phase": "Degraded"}, resource_version="1")
    store.write_status({"traffic": {"stable": None}}, resource_version="2")
    assert store.object["status"] == {"phase": "Stable", "traffic": {}}
    annotated = json.loads(json.dumps(manifest))
    annotated["metadata"]["annotations"] = {"serinus.dev/action": "promote:1"}
    assert store.apply(annotated)
    assert store.object["metadata"]["generation"] == 1  # metadata is not spec
    edited = json.loads(json.dumps(annotated))
    edited["spec"]["model"]["version"] = "v2"
    assert store.apply(edited)
    assert store.object["metadata"]["generation"] == 2
    assert store.object["status"]["phase"] == "Stable"  # status survives an apply
    assert json.loads(state.object_file.read_text()) == store.object
    resumed = ObjectStore(state, state.load_object())
    assert not resumed.apply(edited)


# --- the manifest ----------------------------------------------------------------------------


def test_relative_model_paths_are_taken_from_the_files_directory(tmp_path: Path) -> None:
    manifest = parse_manifest(MANIFEST, base=tmp_path)
    assert manifest["spec"]["model"]["uri"] == str(tmp_path / "models" / "fraud.onnx")
    assert manifest["spec"]["model"]["profile"] == "/abs/profile.json"
    assert manifest["metadata"]["namespace"] == "default"
    other = MANIFEST.replace("models/fraud.onnx", "s3://bucket/fraud.onnx")
    assert parse_manifest(other, base=tmp_path)["spec"]["model"]["uri"] == "s3://bucket/fraud.onnx"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [", "not valid YAML"),
        ("kind: Deployment\n", "no document of kind ModelDeployment"),
        ("kind: ModelDeployment\napiVersion: v1\n", "apiVersion must be serinus.dev/v1alpha1"),
        ("kind: ModelDeployment\napiVersion: serinus.dev/v1alpha1\n", "metadata.name"),
    ],
)
def test_an_unreadable_manifest_is_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(text, base=Path("/"))


def test_the_watcher_reports_edits_refusals_and_renames(tmp_path: Path) -> None:
    path = tmp_path / "md.yaml"
    path.write_text(MANIFEST)
    watcher = ManifestWatcher(path)
    assert watcher.load()["spec"]["model"]["version"] == "v1"
    assert watcher.identity == ("default", "fraud")
    assert watcher.poll() is None
    path.write_text(MANIFEST.replace("version: v1", "version: v2"))
    change = watcher.poll()
    assert change is not None
    assert change.manifest is not None
    assert change.manifest["spec"]["model"]["version"] == "v2"
    assert watcher.poll() is None
    path.write_text("spec: [")
    change = watcher.poll()
    assert change is not None
    assert change.error is not None
    assert "keeping the last good version" in change.error
    path.write_text(MANIFEST.replace("name: fraud", "name: churn"))
    change = watcher.poll()
    assert change is not None
    assert change.error is not None
    assert "default/fraud" in change.error
    path.unlink()
    assert watcher.poll() is None  # mid-replace: what runs keeps running
    with pytest.raises(ManifestError, match="cannot read"):
        ManifestWatcher(path).load()
