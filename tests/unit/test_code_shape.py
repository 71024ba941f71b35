"""The shape docs/architecture.md promises: small functions in small modules.

A function over 60 lines mixes several decisions; a package whose typical module is long
hides its concepts. Both limits are issue 15's, kept here so that they stay true.
"""

from __future__ import annotations

import ast
import statistics
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (ROOT / "operator" / "serinus_operator", ROOT / "serving" / "serinus_serving")
MAX_FUNCTION_LINES = 60
MAX_MEDIAN_MODULE_LINES = 150


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in package.rglob("*.py"))


def test_no_production_function_is_longer_than_60_lines() -> None:
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert not long, "split these functions:\n" + "\n".join(long)


def test_the_median_module_is_at_most_150_lines() -> None:
    sizes = [len(p.read_text().splitlines()) for p in _modules()]
    assert len(sizes) > 50
    assert statistics.median(sizes) <= MAX_MEDIAN_MODULE_LINES


def _declared() -> set[str]:
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    specs = [*project["dependencies"], *extras["parquet"], *extras["redis"]]
    return {
        re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in specs
    }


def test_every_third_party_import_is_a_declared_dependency() -> None:
    """A package imported only because another dependency happens to bring it breaks the
    day that dependency stops bringing it (aiohttp, starlette, httptools and uvloop were)."""
    import importlib.metadata
    import sys

    owners = importlib.metadata.packages_distributions()
    ours = {"serinus_operator", "serinus_serving"}
    missing = set()
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ours:
                    continue
                dists = {d.lower().replace("_", "-") for d in owners.get(top, [top])}
                if not dists & _declared():
                    missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert not missing, "declare these in pyproject.toml:\n" + "\n".join(sorted(missing))
