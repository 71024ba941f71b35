"""The routing table is the contract between the operator and the router, and neither side
imports the other's code for it: the operator writes ``routes.json`` with
``resources.routing.routing_table`` and reads it back as JSON (``RouterProvider.read``); the
router parses it with ``serinus_serving.router.table.parse_table``. Here both sides meet:

- every table the operator writes, the router accepts, steering the same weights and shadow;
- whatever ``read`` accepts, the router accepts with the routes ``read`` reports, so the
  operator never believes in a table the router refuses or reads differently.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serinus_operator.resources.meta import ROUTES_KEY
from serinus_operator.traffic import Routes, make_provider
from serinus_serving.router.table import RoutingTable, TableError, parse_table
from unit.traffic import kit

pytestmark = pytest.mark.unit

LABEL = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?\Z")


@st.composite
def any_routes(draw: st.DrawFn) -> Routes:
    stable = draw(LABEL)
    candidate = draw(st.none() | LABEL.filter(lambda c: c != stable))
    if candidate is None:
        return Routes(stable)
    return Routes(stable, candidate, draw(st.integers(0, 100)), draw(st.integers(0, 100)))


def router_objects(routes: Routes, port: int = 8080) -> list[dict[str, Any]]:
    return make_provider("Router", port=port).desired(kit.md(), routes)


def configmap(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [cm] = [o for o in objects if o["kind"] == "ConfigMap"]
    return cm


def router_reads(table: RoutingTable) -> tuple[dict[str, int], tuple[str, float] | None]:
    shadow = None if table.shadow is None else (table.shadow.revision, table.shadow.percent)
    return table.weights, shadow


def operator_reads(routes: Routes) -> tuple[dict[str, int], tuple[str, float] | None]:
    shadow = None if routes.mirror is None else (routes.mirror, float(routes.mirror_percent))
    return routes.weights, shadow


@settings(max_examples=200, deadline=None)
@given(routes=any_routes(), port=st.sampled_from([80, 8080, 9000]))
def test_the_router_parses_what_the_operator_writes_as_the_operator_reads_it(
    routes: Routes, port: int
) -> None:
    objects = router_objects(routes, port)
    table = parse_table(configmap(objects)["data"][ROUTES_KEY])
    assert table.model == "fraud"
    assert router_reads(table) == operator_reads(routes)
    assert {r: (b.host, b.port) for r, b in table.backends.items()} == {
        r: (f"fraud-{r}.ml.svc", port) for r in routes.weights
    }
    assert make_provider("Router", port=port).read(objects) == routes


Edit = Callable[[dict[str, Any]], None]

#: Hand edits of a found table: some the router refuses, some it reads differently, some it
#: reads the same. ``read`` must never accept one that the router refuses or reads otherwise.
EDITS: dict[str, Edit] = {
    "stable weight true": lambda t: (
        t["revisions"]["7f3c"].update(weight=True),
        t["revisions"]["9a1e"].update(weight=99),
    ),
    "stable weight float": lambda t: t["revisions"]["7f3c"].update(weight=90.0),
    "candidate weight float": lambda t: t["revisions"]["9a1e"].update(weight=10.0),
    "candidate weight string": lambda t: t["revisions"]["9a1e"].update(weight="10"),
    "weights not 100": lambda t: t["revisions"]["9a1e"].update(weight=5),
    "weight missing": lambda t: t["revisions"]["9a1e"].pop("weight"),
    "shadow percent missing": lambda t: t["shadow"].pop("percent"),
    "shadow percent float": lambda t: t["shadow"].update(percent=30.0),
    "shadow percent fraction": lambda t: t["shadow"].update(percent=12.5),
    "shadow percent zero": lambda t: t["shadow"].update(percent=0),
    "shadow null": lambda t: t.update(shadow=None),
    "shadow dropped": lambda t: t.pop("shadow"),
    "shadow to stable": lambda t: t["shadow"].update(revision="7f3c"),
    "shadow to unknown": lambda t: t["shadow"].update(revision="zzz"),
    "url path": lambda t: t["revisions"]["9a1e"].update(url="http://fraud-9a1e.ml.svc:8080/x"),
    "url https": lambda t: t["revisions"]["9a1e"].update(url="https://fraud-9a1e.ml.svc:8080"),
    "url other port": lambda t: t["revisions"]["9a1e"].update(url="http://fraud-9a1e.ml.svc:1"),
    "extra revision": lambda t: t["revisions"].update(zzz={"url": "http://z:1", "weight": 0}),
    "version": lambda t: t["revisions"]["9a1e"].update(version="v7"),
    "stickiness": lambda t: t.update(stickiness={"header": "x-user"}),
    "timeout": lambda t: t.update(timeoutSeconds=5),
    "model renamed": lambda t: t.update(model="other"),
    "emptied": lambda t: t.clear(),
}


@pytest.mark.parametrize("edit", list(EDITS.values()), ids=list(EDITS))
def test_read_accepts_nothing_the_router_refuses_or_reads_otherwise(edit: Edit) -> None:
    routes = Routes("7f3c", "9a1e", 10, 30)
    objects = router_objects(routes)
    cm = configmap(objects)
    table = json.loads(cm["data"][ROUTES_KEY])
    edit(table)
    cm["data"][ROUTES_KEY] = json.dumps(table)
    found = make_provider("Router").read(copy.deepcopy(objects))
    try:
        parsed = parse_table(cm["data"][ROUTES_KEY])
    except TableError:
        assert found is None
        return
    if found is not None:
        assert router_reads(parsed) == operator_reads(found)
