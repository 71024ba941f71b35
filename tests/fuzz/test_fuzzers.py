"""The fuzz targets in tests/fuzz/, each run the way a fuzzing session runs them: in a
process of its own under libFuzzer (atheris), replaying the whole seed corpus
(tests/fuzz/corpus/TARGET/) and then fuzzing for a bounded number of runs from a new
random seed, so every run of the suite also explores a little. A finding fails the test
with the input that caused it; what libFuzzer writes (new inputs, crashing inputs) goes to
a temporary folder, never into the repository. Longer sessions: ``make fuzz``
(docs/testing.md).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent

#: Fuzzing runs after the corpus replay: 8 to 10 s per target on a 2-core machine, about
#: 28 s for the three (inputs/s in a short run: http1_request ~8,000, an event loop per
#: input; codec_decode ~33,000 under tracemalloc; upstream_response ~2,500, both).
RUNS = {"http1_request": 80_000, "codec_decode": 300_000, "upstream_response": 20_000}


def _describe(artifact: Path) -> str:
    data = artifact.read_bytes()
    shown = repr(data) if len(data) <= 2000 else repr(data[:2000]) + f"... ({len(data)} bytes)"
    return f"{artifact.name}: {shown}"


@pytest.mark.parametrize("target", sorted(RUNS))
def test_fuzz_target_finds_nothing(target: str, tmp_path: Path) -> None:
    corpus = HERE / "corpus" / target
    seeds = sorted(p.name for p in corpus.iterdir())
    assert seeds, f"no seed corpus in {corpus}"
    new, artifacts = tmp_path / "new", tmp_path / "artifacts"
    new.mkdir()
    artifacts.mkdir()
    command = [
        sys.executable,
        str(HERE / f"{target}.py"),
        f"-runs={RUNS[target]}",
        "-max_len=4096",
        "-timeout=20",  # seconds for one input: a hang is a finding too
        f"-dict={HERE / f'{target}.dict'}",
        f"-artifact_prefix={artifacts}/",
        str(new),  # where libFuzzer adds the inputs it finds: first, so not the corpus
        str(corpus),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    found = sorted(artifacts.iterdir())
    if proc.returncode != 0 or found:
        shown = "\n".join(_describe(a) for a in found) or "(no input written)"
        replay = f"{sys.executable} tests/fuzz/{target}.py {found[0] if found else '<input>'}"
        at = proc.stderr.find("=== Uncaught Python exception")
        detail = proc.stderr[at : at + 6000] if at >= 0 else proc.stderr[-6000:]
        pytest.fail(
            f"fuzz target {target} found a problem (exit {proc.returncode}).\n"
            f"input:\n{shown}\nreplay: {replay}\n--- libFuzzer's output ---\n{detail}",
            pytrace=False,
        )
    replayed = re.search(r"(\d+) files found in " + re.escape(str(corpus)), proc.stderr)
    assert replayed and int(replayed[1]) == len(seeds), proc.stderr[-3000:]
    assert "INITED" in proc.stderr and "Done" in proc.stderr, proc.stderr[-3000:]
    assert sorted(p.name for p in corpus.iterdir()) == seeds, "the run changed the corpus"
