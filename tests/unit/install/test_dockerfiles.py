"""The images' Dockerfiles, read as a builder would: a pinned base, the wheel built in a
builder stage, and a final stage with nothing to build with, running as a numeric non-root
user. (No Docker engine runs here; `make images` builds them where one does, and the
integration tests also run hadolint on them.)"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from unit.install.kit import ROOT

pytestmark = pytest.mark.unit

DOCKERFILES = {
    "operator": ROOT / "operator" / "Dockerfile",
    "serving": ROOT / "serving" / "Dockerfile",
}
#: An exact CPython release on a named Debian release, optionally pinned by digest too.
PINNED_BASE = re.compile(r"^python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?$")
BUILD_TOOLS = re.compile(r"\b(apt-get|apt|apk|gcc|g\+\+|make|build-essential|pip|curl|wget)\b")


@dataclass
class Instruction:
    op: str
    args: str


def parse(path: Path) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            out.append(Instruction(op.upper(), args.strip()))
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.op == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def build_args(instructions: list[Instruction]) -> dict[str, str]:
    """ARGs declared before the first FROM, with their defaults."""
    out = {}
    for ins in instructions:
        if ins.op == "FROM":
            break
        if ins.op == "ARG":
            name, _, default = ins.args.partition("=")
            out[name] = default
    return out


def resolve(image: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], image)


@pytest.fixture(params=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, list[Instruction]]:
    return request.param, parse(DOCKERFILES[request.param])


def test_base_image_is_pinned_and_shared(dockerfile: tuple[str, list[Instruction]]) -> None:
    _, instructions = dockerfile
    args = build_args(instructions)
    froms = [i.args.split()[0] for i in instructions if i.op == "FROM"]
    assert len(froms) == 2, "a builder stage and a final stage"
    bases = {resolve(f, args) for f in froms}
    assert len(bases) == 1, "builder and final stage must share the interpreter (the venv moves)"
    [base] = bases
    assert PINNED_BASE.match(base), f"{base} is not an exact python:3.11.N-slim-<debian> tag"


def test_wheel_is_built_in_a_builder_stage(dockerfile: tuple[str, list[Instruction]]) -> None:
    _, instructions = dockerfile
    builder, final = stages(instructions)
    assert builder[0].args.split()[-2:] == ["AS", "builder"]
    run = " ".join(i.args for i in builder if i.op == "RUN")
    assert "pip wheel" in run and "--no-deps" in run
    assert "--no-cache-dir" in run
    copies = [i.args for i in final if i.op == "COPY"]
    assert copies and all(c.startswith("--from=builder ") for c in copies)


def test_builder_copies_what_the_distribution_is_built_from(
    dockerfile: tuple[str, list[Instruction]],
) -> None:
    _, instructions = dockerfile
    builder = stages(instructions)[0]
    copied = {src.rstrip("/") for i in builder if i.op == "COPY" for src in i.args.split()[:-1]}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert {"pyproject.toml", project["project"]["readme"]} <= copied
    for where in project["tool"]["setuptools"]["packages"]["find"]["where"]:
        for package in sorted((ROOT / where).glob("serinus_*/__init__.py")):
            assert f"{where}/{package.parent.name}" in copied
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[next(i for i, line in enumerate(ignore) if not line.startswith("#"))] == "*"
    for path in copied:
        assert any(line.rstrip("/") == f"!{path}" for line in ignore), f".dockerignore hides {path}"


def test_final_stage_has_nothing_to_build_with(dockerfile: tuple[str, list[Instruction]]) -> None:
    _, instructions = dockerfile
    final = stages(instructions)[1]
    assert [i for i in final if i.op in ("RUN", "ADD")] == []
    for ins in final:
        assert not BUILD_TOOLS.search(ins.args) or ins.op in ("LABEL", "ENV"), ins


def test_runs_as_a_numeric_non_root_user(dockerfile: tuple[str, list[Instruction]]) -> None:
    _, instructions = dockerfile
    final = stages(instructions)[1]
    users = [i.args for i in final if i.op == "USER"]
    assert users, "the final stage must set USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) > 0
    assert group.isdigit() and int(group) > 0


def test_entrypoint_and_no_healthcheck(dockerfile: tuple[str, list[Instruction]]) -> None:
    name, instructions = dockerfile
    final = stages(instructions)[1]
    ops = {i.op: i.args for i in final}
    assert json.loads(ops["ENTRYPOINT"]) == ["serinus"]
    expected_cmd = {"operator": ["operator"], "serving": ["serve", "--help"]}[name]
    assert json.loads(ops["CMD"]) == expected_cmd
    assert "HEALTHCHECK" not in {i.op for i in instructions}, "Kubernetes probes do this"


def test_exposed_ports_are_the_ones_kubernetes_uses() -> None:
    from serinus_operator.resources.meta import REVISION_PORT

    values = (ROOT / "charts" / "serinus" / "values.yaml").read_text()
    metrics_port = re.search(r"^  port: (\d+)$", values, re.M)
    assert metrics_port is not None
    expose = {
        name: [i.args for i in parse(path) if i.op == "EXPOSE"]
        for name, path in DOCKERFILES.items()
    }
    assert expose == {"operator": [metrics_port.group(1)], "serving": [str(REVISION_PORT)]}
