"""Models fetched from real stores on 127.0.0.1: S3 (moto, with signature checks), GCS
(fake-gcs-server), Azure Blob Storage (Azurite, with Shared Key checks), an OCI registry (the
distribution registry) and MLflow's registry, plus ``pvc://``. What a server loads is exactly
what was stored, it is known by its digest, and a refused or missing model is explained."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from serinus_serving.errors import ModelLoadError
from serinus_serving.loading import fetch_model
from serinus_serving.runtime.base import ModelState
from serinus_serving.runtime.onnx import OnnxRuntime
from serinus_serving.sources.base import Limits, tree_sha256
from serinus_serving.sources.object_store import ObjectStoreSource
from serinus_serving.sources.pinning import pin
from support.serve import serve
from support.stores import (
    Azurite,
    FakeGcs,
    Mlflow,
    MotoS3,
    Registry,
    azurite,
    fake_gcs,
    mlflow,
    moto_s3,
    registry,
)

pytestmark = pytest.mark.integration


#: 3 MiB that is the same in no two places: a part written at the wrong offset shows.
BIG = np.random.default_rng(7).bytes(3 << 20)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def s3(logreg_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    here = tmp_path_factory.mktemp("s3")
    (here / "profile.json").write_bytes(b'{"features": []}')
    (here / "big.bin").write_bytes(BIG)
    files = {
        "models/big.onnx": here / "big.bin",
        "models/fraud/v1/model.onnx": logreg_path,
        "models/bundle/model.onnx": logreg_path,
        "models/bundle/extra/profile.json": here / "profile.json",
    }
    with moto_s3(files, here) as store:
        yield store


@pytest.fixture
def s3_env(s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> MotoS3:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return s3


def test_an_s3_object_is_fetched_streamed_and_known_by_its_digest(
    s3_env: MotoS3, logreg_path: Path, tmp_path: Path
) -> None:
    fetched = fetch_model(s3_env.uri("models/fraud/v1/model.onnx"), dest_dir=tmp_path)
    assert fetched.path.read_bytes() == logreg_path.read_bytes()
    assert fetched.sha256 == sha(logreg_path.read_bytes())
    assert fetched.path.parent.name == f"sha256-{fetched.sha256}"


def test_a_big_s3_object_is_fetched_in_parts(s3_env: MotoS3, tmp_path: Path) -> None:
    """Twelve ranged GETs, four at once, each signed and pinned to the object's ETag."""
    limits = Limits(max_bytes=1 << 30, workers=4, part_bytes=256 << 10, parts_from=512 << 10)
    fetched = ObjectStoreSource().fetch(s3_env.uri("models/big.onnx"), tmp_path, limits=limits)
    assert sha(fetched.model.read_bytes()) == sha(BIG)


def test_an_s3_prefix_is_fetched_whole_and_known_by_all_its_files(
    s3_env: MotoS3, logreg_path: Path, tmp_path: Path
) -> None:
    fetched = fetch_model(s3_env.uri("models/bundle/"), dest_dir=tmp_path)
    root = fetched.path.parent
    assert fetched.path.name == "model.onnx"
    assert (root / "extra" / "profile.json").read_bytes() == b'{"features": []}'
    assert fetched.sha256 == tree_sha256(root) != sha(logreg_path.read_bytes())
    # sha256sum's lines for the files, sorted by path, hashed again
    profile = sha(b'{"features": []}')
    lines = f"{profile}  extra/profile.json\n{sha(logreg_path.read_bytes())}  model.onnx\n"
    assert fetched.sha256 == sha(lines.encode())


def test_a_wrong_secret_is_refused_and_a_known_digest_needs_no_store(
    s3: MotoS3, logreg_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = s3.uri("models/fraud/v1/model.onnx")
    for name, value in s3.env(secret="x" * 40).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ModelLoadError, match="refused the credentials") as refused:
        fetch_model(uri, dest_dir=tmp_path, attempts=1)
    assert s3.secret not in str(refused.value) and "x" * 40 not in str(refused.value)
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing half-written is left
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    digest = sha(logreg_path.read_bytes())
    first = fetch_model(uri, sha256=digest, dest_dir=tmp_path)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x" * 40)  # the store would refuse now
    again = fetch_model(uri + "&region=us-east-1", sha256=digest, dest_dir=tmp_path)
    assert again == first


@pytest.mark.parametrize(
    ("key", "extra", "message"),
    [
        ("models/nothing.onnx", {}, "does not exist"),
        ("models/fraud/v1/model.onnx", {"max_bytes": 100}, "over the limit of 100"),
        ("models/fraud/v1/model.onnx", {"sha256": "00" * 32}, "sha256 mismatch"),
    ],
)
def test_s3_failures_are_explained(
    s3_env: MotoS3, tmp_path: Path, key: str, extra: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        fetch_model(s3_env.uri(key), dest_dir=tmp_path, attempts=1, **extra)  # type: ignore[arg-type]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".fetching")]


def test_secrets_in_an_s3_uri_are_refused(s3_env: MotoS3, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="credentials go in the environment"):
        fetch_model("s3://models/m.onnx?secret_access_key=abc", dest_dir=tmp_path)


def test_serve_loads_its_model_from_s3(s3: MotoS3, tmp_path: Path) -> None:
    uri = s3.uri("models/fraud/v1/model.onnx")
    with serve("--model", uri, "--name", "m", log_dir=tmp_path, env=s3.env()) as server:
        body = {"inputs": [{"name": "X", "shape": [1, 20], "datatype": "FP32",
                            "data": np.ones(20).tolist()}]}  # fmt: skip
        answer = httpx.post(f"{server.url}/v2/models/m/infer", content=orjson.dumps(body))
        assert answer.status_code == 200, answer.text
        meta = httpx.get(f"{server.url}/v2/models/m").json()
        assert "secret" not in server.logs().lower() and s3.secret not in server.logs()
    assert len(meta["parameters"]["sha256"]) == 64


@pytest.fixture(scope="module")
def oci(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


def test_an_oci_artifact_is_fetched_by_tag_and_by_digest(
    oci: Registry, logreg_path: Path, tmp_path: Path
) -> None:
    model = logreg_path.read_bytes()
    digest = oci.push("models/fraud", "v1", {"model.onnx": model})
    by_tag = fetch_model(f"oci://{oci.address}/models/fraud:v1", dest_dir=tmp_path / "a")
    by_digest = fetch_model(f"oci://{oci.address}/models/fraud@{digest}", dest_dir=tmp_path / "b")
    assert by_tag.path.read_bytes() == by_digest.path.read_bytes() == model
    assert by_tag.sha256 == by_digest.sha256 == sha(model)


def test_an_oci_artifact_of_several_files_is_one_model(
    oci: Registry, tmp_path: Path, logreg_path: Path
) -> None:
    oci.push("models/bundle", "v2", {"model.onnx": logreg_path.read_bytes(), "profile.json": b"{}"})
    fetched = fetch_model(f"oci://{oci.address}/models/bundle:v2", dest_dir=tmp_path)
    assert fetched.path.name == "model.onnx"
    assert (fetched.path.parent / "profile.json").read_bytes() == b"{}"
    assert fetched.sha256 == tree_sha256(fetched.path.parent)


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("models/fraud:nope", "no manifest nope"),
        ("models/fraud@sha256:" + "0" * 64, "no manifest"),
        ("Models/Bad Name:v1", "is not oci://REGISTRY/REPOSITORY:TAG"),
    ],
)
def test_oci_failures_are_explained(
    oci: Registry, logreg_path: Path, tmp_path: Path, reference: str, message: str
) -> None:
    oci.push("models/fraud", "v1", {"model.onnx": logreg_path.read_bytes()})
    with pytest.raises(ModelLoadError, match=message):
        fetch_model(f"oci://{oci.address}/{reference}", dest_dir=tmp_path, attempts=1)


def test_a_pvc_path_is_read_in_place(
    logreg_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = tmp_path / "claims" / "models-pvc" / "fraud"
    claim.mkdir(parents=True)
    (claim / "model.onnx").write_bytes(logreg_path.read_bytes())
    monkeypatch.setenv("SERINUS_PVC_ROOT", str(tmp_path / "claims"))
    fetched = fetch_model("pvc://models-pvc/fraud/model.onnx")
    assert fetched.path == claim / "model.onnx"
    assert fetch_model("pvc://models-pvc/fraud/").path == claim / "model.onnx"
    with pytest.raises(ModelLoadError, match="a path inside the claim"):
        fetch_model("pvc://models-pvc/../etc/passwd")
    assert os.environ["SERINUS_PVC_ROOT"]


def bundle_files(logreg_path: Path, directory: Path) -> dict[str, Path]:
    """A single-file model and a directory model (the .onnx file and its profile), by key."""
    (directory / "profile.json").write_bytes(b'{"features": []}')
    return {
        "models/fraud/v1/model.onnx": logreg_path,
        "models/bundle/model.onnx": logreg_path,
        "models/bundle/extra/profile.json": directory / "profile.json",
    }


def loaded(uri: str, model_dir: Path) -> OnnxRuntime:
    """The model at ``uri`` fetched and loaded as ``serinus serve`` loads it."""
    runtime = OnnxRuntime(uri, model_dir=model_dir)
    asyncio.run(runtime.load())
    assert runtime.state is ModelState.READY, runtime.reason
    return runtime


@pytest.fixture(scope="module")
def gcs(logreg_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGcs]:
    here = tmp_path_factory.mktemp("gcs")
    with fake_gcs(bundle_files(logreg_path, here), here) as store:
        yield store


def test_a_gcs_object_and_a_gcs_prefix_are_fetched_and_loaded(
    gcs: FakeGcs, logreg_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fake-gcs-server checks no credentials: what is tested is that the client takes them
    from GOOGLE_SERVICE_ACCOUNT or GOOGLE_SERVICE_ACCOUNT_KEY (a key that, for emulators,
    asks for no token) and reaches the store at the URI's endpoint."""
    for name, value in gcs.env().items():
        monkeypatch.setenv(name, value)
    single = loaded(gcs.uri("models/fraud/v1/model.onnx"), tmp_path)
    assert single.sha256 == sha(logreg_path.read_bytes())
    monkeypatch.delenv("GOOGLE_SERVICE_ACCOUNT")  # the key itself, as a Secret's value is
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT_KEY", gcs.key_file.read_text())
    bundle = loaded(gcs.uri("models/bundle/"), tmp_path)
    root = tmp_path / f"sha256-{bundle.sha256}"
    assert (root / "extra" / "profile.json").read_bytes() == b'{"features": []}'
    assert bundle.sha256 == tree_sha256(root) != single.sha256
    with pytest.raises(ModelLoadError, match="does not exist"):
        fetch_model(gcs.uri("models/nothing.onnx"), dest_dir=tmp_path, attempts=1)


@pytest.fixture(scope="module")
def azure(logreg_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    here = tmp_path_factory.mktemp("azure")
    with azurite(bundle_files(logreg_path, here), here) as store:
        yield store


def test_an_azure_blob_and_an_azure_prefix_are_fetched_and_loaded(
    azure: Azurite, logreg_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in azure.env().items():
        monkeypatch.setenv(name, value)
    single = loaded(azure.uri("models/fraud/v1/model.onnx"), tmp_path)
    assert single.sha256 == sha(logreg_path.read_bytes())
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME")  # the account named in the URI instead
    bundle = loaded(azure.uri("models/bundle/") + f"&account={azure.account}", tmp_path)
    root = tmp_path / f"sha256-{bundle.sha256}"
    assert (root / "extra" / "profile.json").read_bytes() == b'{"features": []}'
    assert bundle.sha256 == tree_sha256(root) != single.sha256


def test_a_wrong_azure_key_is_refused_and_never_told(
    azure: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = base64.b64encode(secrets.token_bytes(64)).decode()
    for key, message in [(wrong, "refused the credentials"), ("not base64!", "Invalid Access Key")]:
        for name, value in azure.env(key=key).items():
            monkeypatch.setenv(name, value)
        for uri in (azure.uri("models/fraud/v1/model.onnx"), azure.uri("models/bundle/")):
            with pytest.raises(ModelLoadError, match=message) as refused:
                fetch_model(uri, dest_dir=tmp_path, attempts=1)
            assert key not in str(refused.value) and azure.key not in str(refused.value)
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing half-written is left


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("gs:///model.onnx", "names no bucket"),
        ("az://models/m.onnx?sas_key=abc", "credentials go in the environment"),
        ("gs://models/m.onnx?token=abc", "credentials go in the environment"),
        ("gs://models/m.onnx?region=eu", "gs:// takes only endpoint, not region"),
        ("az://models/m.onnx?path_style=true", "az:// takes only account, endpoint, not path"),
    ],
)
def test_object_store_uris_are_checked_before_any_request(
    uri: str, message: str, tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        fetch_model(uri, dest_dir=tmp_path)


@pytest.fixture(scope="module")
def registry_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mlflow]:
    with mlflow(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


MLMODEL = b"flavors:\n  onnx:\n    data: model.onnx\n"


def test_an_mlflow_version_and_alias_resolve_to_the_version_files(
    registry_server: Mlflow,
    logreg_path: Path,
    zipmap_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry_server.url)
    v1 = registry_server.register(
        "fraud", {"MLmodel": MLMODEL, "model.onnx": logreg_path.read_bytes()}
    )
    v2 = registry_server.register(
        "fraud", {"MLmodel": MLMODEL, "model.onnx": zipmap_path.read_bytes()}
    )
    registry_server.alias("fraud", "champion", v1)
    first = fetch_model("models:/fraud@champion", dest_dir=tmp_path)
    pinned = fetch_model(f"models:/fraud/{v1}", dest_dir=tmp_path)
    assert first == pinned  # the alias is the version: the same model, kept once
    assert first.path.read_bytes() == logreg_path.read_bytes()
    assert (first.path.parent / "MLmodel").read_bytes() == MLMODEL
    registry_server.alias("fraud", "champion", v2)  # the alias moves to new bytes
    moved = fetch_model("models:/fraud@champion", dest_dir=tmp_path)
    assert moved.sha256 != first.sha256
    assert moved.path.read_bytes() == zipmap_path.read_bytes()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/fraud@nobody", "nobody"),
        ("models:/fraud/99", "99"),
        ("models:/nothing/1", "nothing"),
        ("models:/fraud", "is not models:/NAME/VERSION or models:/NAME@ALIAS"),
    ],
)
def test_mlflow_failures_are_explained(
    registry_server: Mlflow,
    logreg_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    uri: str,
    message: str,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry_server.url)
    registry_server.register("fraud", {"model.onnx": logreg_path.read_bytes()})
    with pytest.raises(ModelLoadError, match=message):
        fetch_model(uri, dest_dir=tmp_path, attempts=1)


# --- pinning: what the operator asks before deciding (sources/pinning.py) ----------------------


def test_an_alias_is_pinned_to_its_version_with_the_given_environment_only(
    registry_server: Mlflow,
    logreg_path: Path,
    zipmap_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The operator asks with the pods' environment (``env``), never its own."""
    files = {"MLmodel": MLMODEL, "model.onnx": logreg_path.read_bytes()}
    v1 = registry_server.register("pinned", files)
    v2 = registry_server.register("pinned", {**files, "model.onnx": zipmap_path.read_bytes()})
    registry_server.alias("pinned", "champion", v1)
    env = {"MLFLOW_TRACKING_URI": registry_server.url}
    assert pin("models:/pinned@champion", env=env) == f"models:/pinned/{v1}"
    assert pin("models:/pinned@champion", env=env) == f"models:/pinned/{v1}"  # asked again
    registry_server.alias("pinned", "champion", v2)
    assert pin("models:/pinned@champion", env=env) == f"models:/pinned/{v2}"
    assert pin(f"models:/pinned/{v1}", env={}) == f"models:/pinned/{v1}", "asks nothing"
    with pytest.raises(ModelLoadError, match="MLFLOW_TRACKING_URI"):
        pin("models:/pinned@champion", env={})
    with pytest.raises(ModelLoadError, match="nobody"):
        pin("models:/pinned@nobody", env=env, attempts=1)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry_server.url)  # the pods' environment
    fetched = fetch_model(f"models:/pinned/{v2}", dest_dir=tmp_path)
    assert fetched.path.read_bytes() == zipmap_path.read_bytes()


def test_a_tag_is_pinned_to_its_manifest_digest_and_follows_a_push(
    oci: Registry, logreg_path: Path, zipmap_path: Path, tmp_path: Path
) -> None:
    first = oci.push("acme/pinned", "prod", {"model.onnx": logreg_path.read_bytes()})
    uri = f"oci://{oci.address}/acme/pinned:prod"
    assert pin(uri, env={}) == f"oci://{oci.address}/acme/pinned@{first}"
    second = oci.push("acme/pinned", "prod", {"model.onnx": zipmap_path.read_bytes()})
    assert second != first
    pinned = pin(uri, env={})
    assert pinned == f"oci://{oci.address}/acme/pinned@{second}"
    assert pin(pinned, env={}) == pinned
    fetched = fetch_model(pinned, dest_dir=tmp_path)  # the digest is checked while fetching
    assert fetched.path.read_bytes() == zipmap_path.read_bytes()
    with pytest.raises(ModelLoadError, match="no manifest"):
        pin(f"oci://{oci.address}/acme/pinned:nothing", env={}, attempts=1)
