"""One fetch of the model-fetch bench (bench/model_fetch.py), in a process of its own.

``python fetch_client.py SPEC_JSON``: imports the client library the spec names, downloads
one file to ``spec["out"]`` and prints a JSON line: seconds to import, seconds and CPU
seconds of the fetch itself, the process's peak RSS after the import and at the end (KiB,
``VmHWM``), and the bytes written. Only the standard library is imported at the top: the
same file runs in the project's venv (serinus, obstore) and in the side venv that holds
fsspec with s3fs and gcsfs.

Clients (``spec["client"]``):

- ``serinus``: the source ``serinus fetch`` / ``fetch_model`` uses for the URI's scheme,
  with ``Limits(workers=spec["workers"])`` (the default Limits: 16 MiB parts, 4 workers);
  ``workers=1`` is one stream. ``fetch_model`` adds a sha256 pass over the file on top.
- ``obstore``: ``obstore.get(store, key)`` and its stream written to the file, as a
  program using obstore directly would.
- ``fsspec``: ``fsspec.filesystem(protocol, **options).get(path, out)``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any


def _peak_rss_kib() -> int:
    """The process's peak RSS (VmHWM). Not ``ru_maxrss``: across the exec from the parent's
    ``vfork`` that keeps the parent's peak, so every client would show the bench's own."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _serinus(spec: dict[str, Any]) -> tuple[Any, Any]:
    from serinus_serving.loading import SOURCES, scheme_of
    from serinus_serving.sources.base import Limits

    def fetch(out: Path) -> int:
        limits = Limits(max_bytes=1 << 40, workers=spec["workers"])
        source = SOURCES[scheme_of(spec["uri"])]
        fetched = source.fetch(spec["uri"], out.parent, limits=limits)
        fetched.model.rename(out)
        return out.stat().st_size

    return fetch, None


def _obstore(spec: dict[str, Any]) -> tuple[Any, Any]:
    import obstore
    from obstore.store import from_url

    def fetch(out: Path) -> int:
        store = from_url(spec["store"], **spec.get("options", {}))
        written = 0
        with out.open("wb") as f:
            for chunk in obstore.get(store, spec["key"]).stream():
                written += f.write(chunk)
        return written

    return fetch, obstore.__version__


def _fsspec(spec: dict[str, Any]) -> tuple[Any, Any]:
    import fsspec

    if spec["protocol"] == "gcs":
        import gcsfs  # noqa: F401
    elif spec["protocol"] == "s3":
        import s3fs  # noqa: F401
    else:
        import aiohttp  # noqa: F401

    def fetch(out: Path) -> int:
        fs = fsspec.filesystem(spec["protocol"], **spec.get("options", {}))
        fs.get_file(spec["path"], str(out))
        return out.stat().st_size

    return fetch, fsspec.__version__


CLIENTS = {"serinus": _serinus, "obstore": _obstore, "fsspec": _fsspec}


def main() -> None:
    spec = json.loads(sys.argv[1])
    out = Path(spec["out"])
    began = time.perf_counter()
    fetch, _version = CLIENTS[spec["client"]](spec)
    imported = time.perf_counter()
    rss_after_import = _peak_rss_kib()
    cpu_before = _cpu()
    start = time.perf_counter()
    size = fetch(out)
    seconds = time.perf_counter() - start
    cpu = _cpu() - cpu_before
    result = {
        "import_s": imported - began,
        "fetch_s": seconds,
        "fetch_cpu_s": cpu,
        "bytes": size,
        "maxrss_after_import_kib": rss_after_import,
        "maxrss_kib": _peak_rss_kib(),
        "pid": os.getpid(),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
