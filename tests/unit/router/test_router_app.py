"""``RouterApp.handle`` without a transport: the router's own endpoints and the answers it
gives before any backend is involved; and how request targets are split."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from serinus_serving.http1 import Request, Response, split_target
from serinus_serving.router.app import RouterApp
from serinus_serving.router.table import parse_table

pytestmark = pytest.mark.unit


def call(app: RouterApp, path: str, *headers: tuple[bytes, bytes]) -> Response:
    request = Request(b"GET", path.encode(), path, list(headers))
    response: Response = asyncio.run(app.handle(request))
    return response


def table() -> bytes:
    return orjson.dumps(
        {
            "model": "fraud",
            "revisions": {
                "a": {"url": "http://127.0.0.1:9", "weight": 100},
                "b": {"url": "http://127.0.0.1:10", "weight": 0},
            },
            "shadow": {"revision": "b", "percent": 50},
        }
    )


def test_own_endpoints_follow_the_table_and_draining() -> None:
    app = RouterApp()
    assert call(app, "/-/live").status == 200
    not_yet = call(app, "/-/ready")
    assert not_yet.status == 503 and orjson.loads(not_yet.body) == {"ready": False, "model": None}
    proxied = call(app, "/v2/models/fraud/infer")
    assert proxied.status == 503 and b"no routing table yet" in proxied.body
    assert orjson.loads(call(app, "/-/routes").body) is None

    app.apply(parse_table(table()))
    assert call(app, "/-/ready").status == 200
    assert orjson.loads(call(app, "/-/routes").body) == {
        "model": "fraud",
        "weights": {"a": 100, "b": 0},
        "shadow": {"revision": "b", "percent": 50},
    }
    metrics = call(app, "/metrics")
    assert dict(metrics.headers)[b"content-type"].startswith(b"text/plain")
    assert b'serinus_router_weight{model="fraud",revision="a"} 100.0' in metrics.body
    missing = call(app, "/-/nope")
    assert missing.status == 404 and orjson.loads(missing.body) == {
        "error": "no router endpoint /-/nope"
    }

    app.draining = True  # SIGTERM
    assert call(app, "/-/ready").status == 503


def test_an_unknown_pin_is_a_400_before_any_backend() -> None:
    app = RouterApp()
    app.apply(parse_table(table()))
    response = call(app, "/v2/models/fraud/infer", (b"x-serinus-revision", b"zz"))
    assert response.status == 400
    assert orjson.loads(response.body) == {"error": "x-serinus-revision 'zz' is not one of: a, b"}
    assert response.after is None


@pytest.mark.parametrize(
    ("url", "target", "path"),
    [
        (b"/v2/models/m/infer", b"/v2/models/m/infer", "/v2/models/m/infer"),
        (b"/v1/models/m:predict?x=1", b"/v1/models/m:predict?x=1", "/v1/models/m:predict"),
        (b"/a%20b/%2F?q=%20", b"/a%20b/%2F?q=%20", "/a b//"),
        (b"http://h:1/p?q", b"/p?q", "/p"),
        (b"http://h:1", b"/", "/"),
        (b"*", b"*", "*"),
    ],
)
def test_split_target(url: bytes, target: bytes, path: str) -> None:
    assert split_target(url) == (target, path)
