"""The images' one Dockerfile, read as a builder would: a pinned base, the wheel built in a
builder stage, a shared runtime stage with nothing to build with, running as a numeric
non-root user, and one target per image (`operator`, `serving`) that differs from the other
only in LABEL, EXPOSE and CMD. (No Docker engine runs here; `make images` builds them where
one does, and the integration tests also run hadolint on it.)"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from unit.install.kit import ROOT

pytestmark = pytest.mark.unit

DOCKERFILE = ROOT / "Dockerfile"
#: The images, each a target of DOCKERFILE.
TARGETS = ("operator", "serving")
#: What a target may set on top of the shared runtime stage.
TARGET_OPS = {"FROM", "LABEL", "EXPOSE", "CMD"}
#: An exact CPython release on a named Debian release, optionally pinned by digest too.
PINNED_BASE = re.compile(r"^python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?$")
BUILD_TOOLS = re.compile(r"\b(apt-get|apt|apk|gcc|g\+\+|make|build-essential|pip|curl|wget)\b")


@dataclass
class Instruction:
    op: str
    args: str


@dataclass
class Stage:
    base: str  # the FROM image, build args not resolved
    name: str
    instructions: list[Instruction]  # FROM first


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


def stages(instructions: list[Instruction]) -> list[Stage]:
    out: list[Stage] = []
    for ins in instructions:
        if ins.op == "FROM":
            words = ins.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            out.append(Stage(words[0], name, []))
        if out:
            out[-1].instructions.append(ins)
    return out


def image(target: str, all_stages: list[Stage]) -> list[Stage]:
    """The stages whose instructions end up in `target`'s image, its first stage first."""
    by_name = {s.name: s for s in all_stages if s.name}
    chain = [by_name[target]]
    while chain[0].base in by_name:
        chain.insert(0, by_name[chain[0].base])
    return chain


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


def last(chain: list[Stage], op: str) -> str:
    values = [i.args for stage in chain for i in stage.instructions if i.op == op]
    assert values, f"no {op} in {[s.name for s in chain]}"
    return values[-1]


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE)


@pytest.fixture(params=TARGETS)
def target(
    request: pytest.FixtureRequest, instructions: list[Instruction]
) -> tuple[str, list[Stage]]:
    """One image: its name and the stages it is built from (its target and what it builds on)."""
    return request.param, image(request.param, stages(instructions))


def test_one_dockerfile_for_both_images() -> None:
    assert not (ROOT / "operator" / "Dockerfile").exists()
    assert not (ROOT / "serving" / "Dockerfile").exists()


def test_base_image_is_pinned_and_shared(instructions: list[Instruction]) -> None:
    args = build_args(instructions)
    all_stages = stages(instructions)
    names = {s.name for s in all_stages}
    external = [s.base for s in all_stages if s.base not in names]
    assert len(external) == 2, "a builder stage and a runtime stage, the targets build on it"
    bases = {resolve(b, args) for b in external}
    assert len(bases) == 1, "builder and runtime stage must share the interpreter (the venv moves)"
    [base] = bases
    assert PINNED_BASE.match(base), f"{base} is not an exact python:3.11.N-slim-<debian> tag"


def test_targets_share_everything_but_label_expose_and_cmd(
    instructions: list[Instruction],
) -> None:
    all_stages = stages(instructions)
    chains = {t: image(t, all_stages) for t in TARGETS}
    shared = {t: [s.name for s in chain[:-1]] for t, chain in chains.items()}
    assert len({tuple(v) for v in shared.values()}) == 1, shared
    for name, chain in chains.items():
        assert {i.op for i in chain[-1].instructions} <= TARGET_OPS, name
    assert all_stages[-1].name == "operator", "a plain `docker build .` gives the operator"


def test_wheel_is_built_in_a_builder_stage(
    instructions: list[Instruction], target: tuple[str, list[Stage]]
) -> None:
    builder = stages(instructions)[0]
    assert builder.name == "builder"
    run = " ".join(i.args for i in builder.instructions if i.op == "RUN")
    assert "pip wheel" in run and "--no-deps" in run
    assert "--no-cache-dir" in run
    _, chain = target
    copies = [i.args for stage in chain for i in stage.instructions if i.op == "COPY"]
    assert copies and all(c.startswith("--from=builder ") for c in copies)


def test_builder_copies_what_the_distribution_is_built_from(
    instructions: list[Instruction],
) -> None:
    builder = stages(instructions)[0].instructions
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


def test_final_image_has_nothing_to_build_with(target: tuple[str, list[Stage]]) -> None:
    _, chain = target
    final = [i for stage in chain for i in stage.instructions]
    assert [i for i in final if i.op in ("RUN", "ADD")] == []
    for ins in final:
        assert not BUILD_TOOLS.search(ins.args) or ins.op in ("LABEL", "ENV"), ins


def test_runs_as_a_numeric_non_root_user(target: tuple[str, list[Stage]]) -> None:
    _, chain = target
    user, _, group = last(chain, "USER").partition(":")
    assert user.isdigit() and int(user) > 0
    assert group.isdigit() and int(group) > 0


def test_entrypoint_and_no_healthcheck(
    instructions: list[Instruction], target: tuple[str, list[Stage]]
) -> None:
    name, chain = target
    assert json.loads(last(chain, "ENTRYPOINT")) == ["serinus"]
    expected_cmd = {"operator": ["operator"], "serving": ["serve", "--help"]}[name]
    assert json.loads(last(chain, "CMD")) == expected_cmd
    assert "HEALTHCHECK" not in {i.op for i in instructions}, "Kubernetes probes do this"


def test_images_are_labelled(target: tuple[str, list[Stage]]) -> None:
    name, chain = target
    labels = " ".join(i.args for stage in chain for i in stage.instructions if i.op == "LABEL")
    titles = re.findall(r'org\.opencontainers\.image\.title="([^"]*)"', labels)
    assert titles[-1] == f"serinus-{name}"
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in labels


def test_exposed_ports_are_the_ones_kubernetes_uses(instructions: list[Instruction]) -> None:
    from serinus_operator.resources.meta import REVISION_PORT

    values = (ROOT / "charts" / "serinus" / "values.yaml").read_text()
    metrics_port = re.search(r"^  port: (\d+)$", values, re.M)
    assert metrics_port is not None
    all_stages = stages(instructions)
    expose = {
        name: [
            i.args
            for stage in image(name, all_stages)
            for i in stage.instructions
            if i.op == "EXPOSE"
        ]
        for name in TARGETS
    }
    assert expose == {"operator": [metrics_port.group(1)], "serving": [str(REVISION_PORT)]}
