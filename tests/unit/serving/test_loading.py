"""Model fetching: paths, file:// and http:// (a real server on 127.0.0.1), checksums,
size limits and retries."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from serinus_serving.errors import ModelLoadError
from serinus_serving.loading import fetch_model
from serinus_serving.sources.base import quiet_client_logs

pytestmark = pytest.mark.unit


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_path_and_file_uri(logreg_path: Path) -> None:
    digest = sha(logreg_path)
    assert fetch_model(str(logreg_path)).sha256 == digest
    assert fetch_model(logreg_path.as_uri(), sha256=digest.upper()).path == logreg_path


@pytest.mark.parametrize(
    ("uri", "kwargs", "message"),
    [
        ("/nonexistent/model.onnx", {}, "does not exist"),
        ("ftp://host/model.onnx", {}, "unsupported model URI scheme 'ftp'"),
        ("{model}", {"sha256": "ab" * 32}, "sha256 mismatch"),
        ("{model}", {"max_bytes": 10}, "over the limit of 10"),
    ],
)
def test_local_failures_are_explained(
    logreg_path: Path, uri: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        fetch_model(uri.format(model=logreg_path), **kwargs)  # type: ignore[arg-type]


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    failures_left: dict[str, int] = {}

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if self.failures_left.get(path, 0) > 0:
            self.failures_left[path] -= 1
            self.send_error(503)
            return
        data = self.files.get(path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_models(logreg_path: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.files = {"/models/logreg.onnx": logreg_path.read_bytes()}
    _Handler.failures_left = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_download_is_verified_and_reused(
    http_models: str, logreg_path: Path, tmp_path: Path
) -> None:
    digest = sha(logreg_path)
    fetched = fetch_model(f"{http_models}/models/logreg.onnx", sha256=digest, dest_dir=tmp_path)
    assert fetched.path.read_bytes() == logreg_path.read_bytes()
    assert fetched.sha256 == digest
    assert not list(tmp_path.glob("*.partial"))
    _Handler.files.clear()  # a second fetch with the same digest needs no server
    again = fetch_model(f"{http_models}/models/logreg.onnx", sha256=digest, dest_dir=tmp_path)
    assert again.path == fetched.path


def test_http_transient_errors_are_retried(http_models: str, tmp_path: Path) -> None:
    _Handler.failures_left["/models/logreg.onnx"] = 2
    fetched = fetch_model(f"{http_models}/models/logreg.onnx", dest_dir=tmp_path, attempts=3)
    assert fetched.size > 0


@pytest.mark.parametrize(
    ("path", "kwargs", "message"),
    [
        ("/models/missing.onnx", {}, "HTTP 404"),
        ("/models/logreg.onnx", {"sha256": "00" * 32}, "sha256 mismatch"),
        ("/models/logreg.onnx", {"max_bytes": 100}, "over the limit of 100"),
    ],
)
def test_http_failures_are_explained_and_leave_nothing(
    http_models: str, tmp_path: Path, path: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        fetch_model(http_models + path, dest_dir=tmp_path, **kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_fails_after_retries(tmp_path: Path) -> None:
    from support.serve import free_port

    uri = f"http://127.0.0.1:{free_port()}/model.onnx"
    with pytest.raises(ModelLoadError, match="after 2 attempts"):
        fetch_model(uri, dest_dir=tmp_path, attempts=2, timeout=1)


def test_a_prefetched_model_is_loaded_from_the_init_containers_copy(
    http_models: str, logreg_path: Path, tmp_path: Path
) -> None:
    """``serinus fetch`` (the init container) then ``serinus serve --prefetched``: one
    download, no sha256 in the spec, and the copy is checked again before it is used."""
    uri = f"{http_models}/models/logreg.onnx"
    fetched = fetch_model(uri, dest_dir=tmp_path)
    assert uri not in "".join(p.name for p in tmp_path.iterdir()), "a URI is not spelled out"
    _Handler.files.clear()  # the server's fetch needs no store
    assert fetch_model(uri, dest_dir=tmp_path, prefetched=True) == fetched
    with pytest.raises(ModelLoadError, match="HTTP 404"):
        fetch_model(uri, dest_dir=tmp_path), "without --prefetched it downloads again"
    fetched.path.write_bytes(b"changed on disk")
    with pytest.raises(ModelLoadError, match="HTTP 404"):
        fetch_model(uri, dest_dir=tmp_path, prefetched=True)  # not trusted: fetched again
    _Handler.files["/models/logreg.onnx"] = logreg_path.read_bytes()
    again = fetch_model(uri, dest_dir=tmp_path, prefetched=True)
    assert again.path.read_bytes() == logreg_path.read_bytes(), "the changed copy is replaced"
    assert fetch_model(uri, dest_dir=tmp_path / "empty", prefetched=True).sha256 == sha(
        logreg_path
    ), "no copy there: fetched"


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/models/missing.onnx", {}),
        ("/models/logreg.onnx", {"sha256": "00" * 32}),
        ("/models/logreg.onnx", {"max_bytes": 100}),
        ("/models/logreg.onnx", {}),
    ],
)
def test_a_presigned_urls_signature_never_reaches_a_message_or_the_log(
    http_models: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    path: str,
    kwargs: dict[str, object],
) -> None:
    """What a failed fetch says ends in a pod's termination message, its log and the
    model's metadata: the URL is shown without its query (or user and password)."""
    host = http_models.removeprefix("http://")
    uri = f"http://reader:pa55word@{host}{path}?X-Amz-Signature=s3cr3t&X-Amz-Expires=60"
    caplog.set_level("DEBUG")
    caplog.set_level("DEBUG", logger="serinus_serving")
    quiet_client_logs()  # as serinus serve and serinus fetch do
    said: list[str] = []
    if kwargs or "missing" in path:
        with pytest.raises(ModelLoadError) as failed:
            fetch_model(uri, dest_dir=tmp_path, attempts=1, **kwargs)  # type: ignore[arg-type]
        said.append(str(failed.value))
        assert f"http://{host}{path}?…" in said[0]
    else:
        fetch_model(uri, dest_dir=tmp_path, attempts=1)
        assert "fetched http://" in caplog.text
    said.append(caplog.text)
    assert not [text for text in said if "s3cr3t" in text or "pa55word" in text]


def test_serinus_fetch_says_why_without_the_signature(http_models: str, tmp_path: Path) -> None:
    """The init container's whole output (its log, and the termination message's source)."""
    import subprocess
    import sys

    uri = f"{http_models}/models/missing.onnx?X-Amz-Signature=s3cr3t"
    done = subprocess.run(
        [sys.executable, "-m", "serinus_operator.cli", "fetch", "--model", uri,
         "--model-dir", str(tmp_path), "--log-level", "debug"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "cannot fetch the model: downloading" in done.stderr and "HTTP 404" in done.stderr
    assert "s3cr3t" not in done.stdout + done.stderr
