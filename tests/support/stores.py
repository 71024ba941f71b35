"""Real storage servers on 127.0.0.1 for the model-source tests.

- ``MotoS3``: moto's S3 server (installed by ``hack/servers/install.sh`` into a venv of
  its own), with an IAM user whose key the tests use and signature checking turned on, so
  a wrong secret is refused as AWS would refuse it. It lacks what moto lacks: no real
  durability, no multi-node behaviour, and only the S3 and IAM calls used here are
  relied on.
- ``Registry``: Debian's ``docker-registry`` (the CNCF distribution registry, the same code
  as Docker Hub's), storing on disk, plain HTTP, anonymous. Artifacts are pushed with the
  registry's own HTTP API, as ``oras push`` does (ORAS conventions: an empty config, one
  layer per file named by its title annotation).
- ``FakeGcs``: fake-gcs-server (Go, built from its module by ``hack/servers/install.sh``),
  Google Cloud Storage's JSON and XML APIs in memory, the objects loaded from a folder at
  start. It checks no credentials at all: any token or none is let in, so only how the
  client finds its credentials (``GOOGLE_SERVICE_ACCOUNT``) is tested against it, never a
  refusal. No IAM, no signed URLs, one process.
- ``Azurite``: Microsoft's Azure Storage emulator (npm, same install), its Blob service on
  disk. It checks Shared Key signatures against the account's key as Azure does, so a wrong
  key is refused. What it lacks: no Entra ID (OAuth) tokens without HTTPS, no workload
  identity, accounts addressed by path (``HOST/ACCOUNT``) rather than by host name.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import hmac
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.serve import free_port

ROOT = Path(__file__).resolve().parents[2]
EMPTY_CONFIG = b"{}"

_SETUP = """
import json, sys
import boto3
from botocore.config import Config
endpoint, files = sys.argv[1], json.loads(sys.argv[2])
def client(service, key="test", secret="test"):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(s3={"addressing_style": "path"}))
iam = client("iam")
iam.create_user(UserName="serinus")
iam.put_user_policy(UserName="serinus", PolicyName="read", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="serinus")["AccessKey"]
s3 = client("s3", key["AccessKeyId"], key["SecretAccessKey"])
for bucket in sorted({name.split("/", 1)[0] for name in files}):
    s3.create_bucket(Bucket=bucket)
for name, path in files.items():
    bucket, object_key = name.split("/", 1)
    s3.upload_file(path, bucket, object_key)
print(json.dumps([key["AccessKeyId"], key["SecretAccessKey"]]))
"""


def _wait(url: str, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} never answered:\n{log.read_text()}")


@contextlib.contextmanager
def _process(
    args: list[str], log: Path, url: str, what: str, env: dict[str, str] | None = None
) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    try:
        _wait(url, what, process, log)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class MotoS3:
    endpoint: str
    key: str
    secret: str

    def env(self, *, secret: str | None = None) -> dict[str, str]:
        """The environment a server reads its S3 credentials from (as from a Secret)."""
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret if secret is None else secret,
            "AWS_REGION": "us-east-1",
        }

    def uri(self, bucket_key: str) -> str:
        return f"s3://{bucket_key}?endpoint={self.endpoint}&path_style=true"


def servers_dir() -> Path:
    """Where hack/servers/install.sh put the servers (installing them if it has not)."""
    result = subprocess.run(
        ["bash", str(ROOT / "hack" / "servers" / "install.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"hack/servers/install.sh failed (make system-deps runs it):\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])


def _server(relative: str) -> Path:
    binary = servers_dir() / relative
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: run `make system-deps` (hack/servers/install.sh)")
    return binary


@contextlib.contextmanager
def moto_s3(files: dict[str, Path], log_dir: Path) -> Iterator[MotoS3]:
    """moto's S3 holding ``files`` (``"bucket/key": local path``), checking signatures."""
    venv = _server("venv-moto/bin/python").parents[1]
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    args = [str(venv / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with _process(args, log_dir / "moto.log", f"{endpoint}/moto-api/", "moto_server"):
        setup = subprocess.run(
            [str(venv / "bin" / "python"), "-c", _SETUP, endpoint,
             json.dumps({k: str(v) for k, v in files.items()})],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert setup.returncode == 0, setup.stderr
        key, secret = json.loads(setup.stdout)
        # From here on, every request must be signed by a key moto knows.
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()
        yield MotoS3(endpoint, key, secret)


@dataclass(frozen=True)
class Registry:
    address: str  # host:port

    def push(self, repo: str, tag: str, files: dict[str, bytes]) -> str:
        """Push ``files`` as an ORAS-style artifact; the manifest's digest."""
        base = f"http://{self.address}/v2/{repo}"
        layers = []
        for name, data in [("", EMPTY_CONFIG), *files.items()]:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            started = httpx.post(f"{base}/blobs/uploads/")
            started.raise_for_status()
            location = started.headers["location"]
            location = (
                location if location.startswith("http") else f"http://{self.address}{location}"
            )
            sep = "&" if "?" in location else "?"
            octets = {"content-type": "application/octet-stream"}
            uploaded = httpx.put(f"{location}{sep}digest={digest}", content=data, headers=octets)
            uploaded.raise_for_status()
            if name:
                layers.append({
                    "mediaType": "application/vnd.onnx.model" if name.endswith(".onnx")
                    else "application/octet-stream",
                    "digest": digest, "size": len(data),
                    "annotations": {"org.opencontainers.image.title": name},
                })  # fmt: skip
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.serinus.model.v1",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                       "digest": "sha256:" + hashlib.sha256(EMPTY_CONFIG).hexdigest(),
                       "size": 2, "data": "e30="},
            "layers": layers,
        }).encode()  # fmt: skip
        httpx.put(f"{base}/manifests/{tag}", content=manifest,
                  headers={"content-type": "application/vnd.oci.image.manifest.v1+json"},
                  ).raise_for_status()  # fmt: skip
        return "sha256:" + hashlib.sha256(manifest).hexdigest()


@contextlib.contextmanager
def registry(directory: Path) -> Iterator[Registry]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is missing: make system-deps installs it (apt)")
    port = free_port()
    config = directory / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {directory / 'data'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
        "health: {storagedriver: {enabled: false}}\n"
    )
    with _process([binary, "serve", str(config)], directory / "registry.log",
                  f"http://127.0.0.1:{port}/v2/", "docker-registry"):  # fmt: skip
        yield Registry(f"127.0.0.1:{port}")


@dataclass(frozen=True)
class Mlflow:
    """A real MLflow tracking server and model registry (SQLite, artifacts on disk, served
    through its artifact proxy). Models are registered with its REST API, as a client
    library would; what it lacks: no authentication (MLflow's basic-auth app is not on)."""

    url: str

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, f"{self.url}{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else {}

    def register(self, name: str, files: dict[str, bytes]) -> str:
        """A new version of ``name`` holding ``files``: its number."""
        api = "/api/2.0/mlflow"
        exp = self._call("POST", f"{api}/experiments/create", json={"name": f"e-{time.time_ns()}"})
        run = self._call("POST", f"{api}/runs/create", json={"experiment_id": exp["experiment_id"]})
        info = run["run"]["info"]
        location = f"{info['artifact_uri']}/model"
        relative = location.removeprefix("mlflow-artifacts:").lstrip("/")
        for file, data in files.items():
            self._call(
                "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{relative}/{file}", content=data
            )
        with contextlib.suppress(httpx.HTTPStatusError):  # exists already
            self._call("POST", f"{api}/registered-models/create", json={"name": name})
        version = self._call(
            "POST", f"{api}/model-versions/create",
            json={"name": name, "source": location, "run_id": info["run_id"]},
        )["model_version"]  # fmt: skip
        return str(version["version"])

    def alias(self, name: str, alias: str, version: str) -> None:
        self._call("POST", "/api/2.0/mlflow/registered-models/alias",
                   json={"name": name, "alias": alias, "version": version})  # fmt: skip


@contextlib.contextmanager
def mlflow(directory: Path) -> Iterator[Mlflow]:
    venv = _server("venv-mlflow/bin/mlflow").parents[1]
    port = free_port()
    args = [
        str(venv / "bin" / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{directory / 'db.sqlite'}",
        "--artifacts-destination", str(directory / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    quiet = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job runner
    with _process(args, directory / "mlflow.log", f"{url}/health", "mlflow server", quiet):
        yield Mlflow(url)


@dataclass(frozen=True)
class FakeGcs:
    endpoint: str
    key_file: Path  # a service-account key for emulators: no OAuth, so no token is fetched

    def env(self) -> dict[str, str]:
        """The environment a server reads its GCS credentials from (as from a Secret)."""
        return {"GOOGLE_SERVICE_ACCOUNT": str(self.key_file)}

    def uri(self, bucket_key: str) -> str:
        return f"gs://{bucket_key}?endpoint={self.endpoint}"


@contextlib.contextmanager
def fake_gcs(files: dict[str, Path], directory: Path) -> Iterator[FakeGcs]:
    """fake-gcs-server holding ``files`` (``"bucket/key": local path``)."""
    binary = _server("fake-gcs-server/fake-gcs-server")
    for name, path in files.items():  # -data: each folder a bucket, each file an object
        (directory / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, directory / "data" / name)
    key_file = directory / "service-account.json"
    key_file.write_text(json.dumps({
        "disable_oauth": True, "client_email": "", "private_key": "", "private_key_id": ""
    }))  # fmt: skip
    port = free_port()
    args = [
        str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
        "-public-host", f"127.0.0.1:{port}",  # path-style object URLs on this host
        "-backend", "memory", "-data", str(directory / "data"), "-log-level", "warn",
    ]  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    with _process(args, directory / "fake-gcs.log", f"{endpoint}/storage/v1/b", "fake-gcs-server"):
        yield FakeGcs(endpoint, key_file)


@dataclass(frozen=True)
class Azurite:
    port: int
    account: str
    key: str  # base64, as the Azure portal shows it

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.account}"

    def env(self, *, key: str | None = None) -> dict[str, str]:
        """The environment a server reads its Azure credentials from (as from a Secret)."""
        return {
            "AZURE_STORAGE_ACCOUNT_NAME": self.account,
            "AZURE_STORAGE_ACCOUNT_KEY": self.key if key is None else key,
        }

    def uri(self, container_path: str) -> str:
        return f"az://{container_path}?endpoint={self.endpoint}"

    def request(
        self, method: str, path: str, *, query: dict[str, str], content: bytes = b""
    ) -> None:
        """A Blob service call signed with the account key (Shared Key, as Azure's SDKs do)."""
        headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
        if "restype" not in query:
            headers["x-ms-blob-type"] = "BlockBlob"
        length = str(len(content)) if content else ""
        canonical = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
        resource = f"/{self.account}/{self.account}/{path}"  # the account is in the path too
        resource += "".join(f"\n{k}:{v}" for k, v in sorted(query.items()))
        to_sign = f"{method}\n\n\n{length}\n\n\n\n\n\n\n\n\n{canonical}{resource}"
        mac = hmac.new(base64.b64decode(self.key), to_sign.encode(), hashlib.sha256)
        headers["authorization"] = (
            f"SharedKey {self.account}:{base64.b64encode(mac.digest()).decode()}"
        )
        url = f"{self.endpoint}/{path}"
        httpx.request(
            method, url, params=query, headers=headers, content=content
        ).raise_for_status()


@contextlib.contextmanager
def azurite(files: dict[str, Path], directory: Path) -> Iterator[Azurite]:
    """Azurite's Blob service holding ``files`` (``"container/path": local path``) in an
    account of its own, whose key is made up here."""
    binary = _server("azurite/node_modules/.bin/azurite-blob")
    account, key = "serinus", base64.b64encode(secrets.token_bytes(64)).decode()
    port = free_port()
    args = [
        str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port),
        "--location", str(directory / "data"), "--disableTelemetry", "--silent",
    ]  # fmt: skip
    env = {"AZURITE_ACCOUNTS": f"{account}:{key}"}  # in place of the well-known dev account
    with _process(args, directory / "azurite.log", f"http://127.0.0.1:{port}/", "azurite", env):
        store = Azurite(port, account, key)
        for container in sorted({name.split("/", 1)[0] for name in files}):
            store.request("PUT", container, query={"restype": "container"})
        for name, path in files.items():
            store.request("PUT", name, query={}, content=path.read_bytes())
        yield store
