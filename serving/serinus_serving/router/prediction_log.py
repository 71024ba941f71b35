"""The prediction log: which revision answered what, per request id, shared by routers.

Labels arrive later and at any router replica, so the answers they are judged against
live in a store behind :class:`PredictionLog`: ``memory_log`` (one process: one replica,
``serinus local``) or ``redis_log`` (every replica of the model). An entry is a key (the
model and the bounded request id, :func:`id_key`) holding one encoded :func:`answer_of`
per revision, a "labelled" mark that lets each id be labelled once across replicas, and a
TTL. Also here, pure: the request id of a request body, and an answer from a response.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from serinus_serving.drift.outcomes import choose_target

#: Longer request ids are stored as their SHA-256: a hostile 1 MiB id costs 71 bytes.
MAX_ID_BYTES = 256
#: An answer (one revision's predicted rows) larger than this is not recorded.
MAX_ANSWER_BYTES = 16 << 10
#: Each row takes at least 2 bytes of an encoded answer (a value and its comma), so an
#: answer with more rows never fits: refused from its row count, before its data is read.
MAX_ANSWER_ROWS = MAX_ANSWER_BYTES // 2
#: Bodies over this are searched for an ``id`` only as their first member (a constant cost
#: on the request path, whatever the body's size).
_FULL_PARSE_BYTES = 64 << 10
_FIRST_ID = re.compile(rb'\A\s*\{\s*"id"\s*:\s*"((?:[^"\\]|\\.)*)"')

Role = Literal["primary", "shadow"]
#: The inference protocol of a response, from its request's path (``/v1/``: KServe v1).
Api = Literal["v1", "v2"]
Status = Literal["found", "unknown_id", "expired", "duplicate"]


class PredictionLogError(Exception):
    """The store cannot be reached or answered an error (the feedback endpoint's 503)."""


@dataclass(frozen=True, slots=True)
class Record:
    key: str
    revision: str
    #: The encoded answer (:func:`answer_of`).
    answer: bytes
    #: A primary answer starts the entry afresh: a reused id refers to its latest request.
    primary: bool


@dataclass(frozen=True, slots=True)
class Lookup:
    status: Status
    #: revision -> encoded answer, when found.
    answers: dict[str, bytes]


class PredictionLog(Protocol):
    async def record(self, records: Sequence[Record]) -> None:
        """Store answers; raises :class:`PredictionLogError`."""

    async def lookup(self, keys: Sequence[str]) -> list[Lookup]:
        """What each key holds, without changing it."""

    async def mark(self, keys: Sequence[str]) -> list[bool]:
        """Mark keys labelled; True for each this call marked first (across replicas)."""

    async def close(self) -> None: ...


def id_key(request_id: str) -> str:
    """A request id bounded in bytes: longer ones become their SHA-256, so that labels
    with the same long id still find their prediction."""
    if len(request_id) <= MAX_ID_BYTES // 4:
        return request_id
    raw = request_id.encode("utf-8", "surrogatepass")
    if len(raw) <= MAX_ID_BYTES:
        return request_id
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def body_request_id(body: bytes) -> str | None:
    """The OIP v2 ``id`` of a request body: its first member found in constant time, else,
    for bodies up to 64 KiB, wherever it is."""
    if b'"id"' not in body:
        return None
    match = _FIRST_ID.match(body[: _FULL_PARSE_BYTES + 64])
    try:
        if match is not None:
            found: Any = orjson.loads(b'"' + match.group(1) + b'"')
        elif len(body) <= _FULL_PARSE_BYTES:
            doc = orjson.loads(body)
            found = doc.get("id") if isinstance(doc, dict) else None
        else:
            return None
    except orjson.JSONDecodeError:
        return None
    return found if isinstance(found, str) and found else None


def request_api(request: bytes) -> Api:
    """The protocol of an encoded HTTP request, from its request line's target."""
    return "v1" if request.startswith(b"/v1/", request.find(b" ") + 1) else "v2"


def answer_of(body: bytes, role: Role, api: Api) -> bytes | None:
    """The compact answer of an OIP v2 response, or (``api`` "v1") of a v1
    ``{"predictions": [...]}``: the output a label is compared with (the same choice as
    ``serinus serve``'s without a profile) as one value per row, null where the model gave
    none (a regressor's NaN). None when the response has no such output or the answer is
    over ``MAX_ANSWER_BYTES``."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    found = doc.get("predictions" if api == "v1" else "outputs") if isinstance(doc, dict) else None
    if not isinstance(found, list):
        return None
    by_name = _v1_outputs(found) if api == "v1" else _v2_outputs(found)
    chosen = choose_target((n, d, s) for n, (d, s, _) in by_name.items())
    if chosen is None:
        return None
    name, task = chosen
    _, shape, data = by_name[name]
    if shape[0] > MAX_ANSWER_ROWS:  # could never fit: not worth reading
        return None
    values = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in data]
    if len(values) != shape[0] or any(isinstance(v, list | dict) for v in values):
        return None
    encoded = orjson.dumps({"role": role, "task": task, "values": values})
    return encoded if len(encoded) <= MAX_ANSWER_BYTES else None


_Outputs = dict[str, tuple[str, list[int], list[Any]]]
#: A v1 row's missing key: makes its column untyped (a row lacking it is not a null).
_MISSING = object()


def _v2_outputs(outputs: list[Any]) -> _Outputs:
    """OIP v2 outputs by name: (datatype, shape, data), for those with a usable shape."""
    by_name: _Outputs = {}
    for out in outputs:
        if isinstance(out, dict) and isinstance(out.get("data"), list):
            shape = out.get("shape")
            if isinstance(shape, list) and shape and all(type(d) is int for d in shape):
                by_name[str(out.get("name"))] = (str(out.get("datatype")), shape, out["data"])
    return by_name


def _v1_outputs(predictions: list[Any]) -> _Outputs:
    """A v1 answer as v2-like outputs: one column (``predictions``), or one per key when
    each row is an object (a model with several outputs). v1 carries no datatypes, so each
    is read from the JSON values; only columns of one value per row are kept, the only
    ones a label can be compared with. Nothing is built for more rows than an answer holds."""
    rows = len(predictions)
    if rows > MAX_ANSWER_ROWS:
        return {}
    if rows and all(isinstance(row, dict) for row in predictions):
        names = list(predictions[0])
        columns = {n: [row.get(n, _MISSING) for row in predictions] for n in names}
    else:
        columns = {"predictions": predictions}
    by_name: _Outputs = {}
    for name, column in columns.items():
        values = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in column]
        datatype = _json_datatype(values)
        if datatype is not None:
            by_name[name] = (datatype, [rows], values)
    return by_name


def _json_datatype(values: list[Any]) -> str | None:
    """The OIP datatype JSON scalars stand for (``1`` INT64, ``1.0`` FP64), or None. Nulls
    (a prediction the model did not make) do not count: ``[1, null]`` is INT64, ``[null]``
    nothing."""
    kinds = {bool if type(v) is bool else type(v) for v in values if v is not None}
    if not kinds:
        return None
    if kinds == {bool}:
        return "BOOL"
    if kinds == {str}:
        return "BYTES"
    if kinds == {int}:
        return "INT64"
    if kinds <= {int, float}:
        return "FP64"
    return None


def parse_answer(encoded: bytes) -> tuple[Role, str, list[Any]] | None:
    """An answer back from the store: (role, task, values), None if unreadable."""
    try:
        doc = orjson.loads(encoded)
        role, task, values = doc["role"], doc["task"], doc["values"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if role not in ("primary", "shadow") or task not in ("classification", "regression"):
        return None
    return (role, task, values) if isinstance(values, list) else None
