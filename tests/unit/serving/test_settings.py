"""``serinus serve``'s settings: one declaration (ServeSettings) for flags, environment
variables, checks and the table in docs/serving.md."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from serinus_operator.cli import build_parser
from serinus_serving import loading
from serinus_serving.drift.config import DriftSettings
from serinus_serving.settings import (
    ENV_PREFIX,
    ServeSettings,
    SettingsError,
    add_serve_flags,
    load_serve_settings,
    serve_settings,
    settings_from_args,
    settings_table,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "serving.md"
UPDATE = os.environ.get("SERINUS_UPDATE_GOLDEN", "") not in ("", "0")
TABLE = re.compile(r"(<!-- settings table:.*?-->\n)(.*?)(<!-- end of settings table -->)", re.S)
REQUIRED = {"model_uri": "m.onnx", "name": "m"}

#: Every flag `serinus serve` had before the settings were declared on ServeSettings, with
#: its default then: none may go away or change meaning.
LEGACY_DEFAULTS: dict[str, Any] = {
    "--version": "1",
    "--revision": None,
    "--sha256": None,
    "--host": "127.0.0.1",
    "--port": 8080,
    "--max-batch-size": 32,
    "--max-batch-latency-ms": 2.0,
    "--max-request-rows": 10_000,
    "--max-body-bytes": 32 << 20,
    "--model-dir": None,
    "--prefetched": False,
    "--max-model-bytes": 4 << 30,
    "--intra-op-threads": 1,
    "--inter-op-threads": 1,
    "--drain-seconds": 5.0,
    "--shutdown-timeout": 30.0,
    "--access-log": False,
    "--log-level": "info",
    "--profile": None,
    "--drift-window": 1000,
    "--drift-window-seconds": 600.0,
    "--drift-min-samples": 300,
    "--drift-threshold": 0.2,
    "--feedback-max-ids": 100_000,
    "--feedback-ttl-seconds": 3600.0,
    "--feedback-window": 1000,
    # Added with the move from uvicorn to the shared HTTP/1.1 layer.
    "--max-header-bytes": 64 << 10,
    "--max-buffered-bytes": 256 << 20,
    "--read-timeout": 30.0,
    "--keep-alive-timeout": 75.0,
}


def parse(*argv: str, env: dict[str, str] | None = None) -> ServeSettings:
    parser = argparse.ArgumentParser(prog="serinus serve")
    add_serve_flags(parser, env={} if env is None else env)
    return settings_from_args(parser.parse_args(list(argv)), env={} if env is None else env)


def _value(settings: ServeSettings, key: str) -> Any:
    value: Any = settings
    for part in key.split("."):
        value = getattr(value, part)
    return value


# ------------------------------------------------------------------ one declaration
def test_every_field_has_help_a_flag_and_a_variable() -> None:
    declared = [s.key for s in serve_settings()]
    expected = [f.name for f in fields(ServeSettings) if f.name != "drift"]
    expected += [f"drift.{f.name}" for f in fields(DriftSettings)]
    assert sorted(declared) == sorted(expected)
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    flags = {option for action in serve._actions for option in action.option_strings}
    for s in serve_settings():
        assert s.opt.help.strip(), s.key
        assert s.flag in flags, s.flag
        assert s.env == ENV_PREFIX + s.flag.removeprefix("--").upper().replace("-", "_")
    assert len({s.env for s in serve_settings()}) == len(serve_settings())


def test_every_legacy_flag_keeps_its_name_and_default() -> None:
    by_flag = {s.flag: s for s in serve_settings()}
    for flag, default in LEGACY_DEFAULTS.items():
        assert flag in by_flag, f"{flag} went away"
        assert _value(ServeSettings(**REQUIRED), by_flag[flag].key) == default, flag
    assert set(by_flag) == {"--model", "--name", *LEGACY_DEFAULTS}


def test_the_model_size_limit_is_the_loaders() -> None:
    assert ServeSettings(**REQUIRED).max_model_bytes == loading.DEFAULT_MAX_BYTES


def test_the_docs_table_is_generated_from_the_fields() -> None:
    text = DOC.read_text()
    match = TABLE.search(text)
    assert match, "docs/serving.md lost its generated settings table"
    expected = settings_table()
    if UPDATE:
        DOC.write_text(text[: match.start(2)] + expected + text[match.end(2) :])
        return
    assert match.group(2) == expected, "regenerate: SERINUS_UPDATE_GOLDEN=1 pytest " + __file__
    for s in serve_settings():
        assert f"`{s.env}`" in match.group(2)


# ------------------------------------------------------------------ values and precedence
def test_defaults_without_flags_or_environment() -> None:
    assert load_serve_settings(REQUIRED, env={}) == ServeSettings(**REQUIRED)
    assert parse("--model", "m.onnx", "--name", "m") == ServeSettings(**REQUIRED)


def test_environment_variables_are_parsed_by_type() -> None:
    env = {
        "SERINUS_SERVE_MODEL": "https://models.example.com/m.onnx",
        "SERINUS_SERVE_NAME": "fraud",
        "SERINUS_SERVE_PORT": "9000",
        "SERINUS_SERVE_MAX_BATCH_LATENCY_MS": "0.5",
        "SERINUS_SERVE_MODEL_DIR": "/models",
        "SERINUS_SERVE_ACCESS_LOG": "True",
        "SERINUS_SERVE_PROFILE": "p.json",
        "SERINUS_SERVE_DRIFT_WINDOW": "200",
        "SERINUS_SERVE_FEEDBACK_MAX_IDS": "0",
        "SERINUS_SERVE_SHA256": "",  # empty: unset
    }
    settings = load_serve_settings(env=env)
    assert settings.model_uri == "https://models.example.com/m.onnx"
    assert settings.name == "fraud"
    assert settings.port == 9000
    assert settings.max_batch_latency_ms == 0.5
    assert settings.model_dir == Path("/models")
    assert settings.access_log is True
    assert settings.sha256 is None
    assert settings.drift == DriftSettings(
        profile="p.json", window=200, min_samples=200, feedback_max_ids=0
    )  # the default min_samples, 300, is capped at the window


def test_a_flag_wins_over_the_environment_which_wins_over_the_default() -> None:
    env = {"SERINUS_SERVE_MAX_BATCH_SIZE": "8", "SERINUS_SERVE_ACCESS_LOG": "yes"}
    env |= {"SERINUS_SERVE_LOG_LEVEL": "debug"}
    base = ("--model", "m.onnx", "--name", "m")
    from_env = parse(*base, env=env)
    assert from_env.max_batch_size == 8 and from_env.access_log and from_env.log_level == "debug"
    assert from_env.max_request_rows == 10_000  # neither: the default
    flagged = parse(
        *base, "--max-batch-size", "0", "--no-access-log", "--log-level", "info", env=env
    )
    assert flagged.max_batch_size == 0 and not flagged.access_log and flagged.log_level == "info"
    typed = load_serve_settings({**REQUIRED, "max_batch_size": 4, "drift.window": "50"}, env=env)
    assert typed.max_batch_size == 4 and typed.drift.window == 50


def test_a_bad_variable_is_not_read_when_its_flag_is_given() -> None:
    settings = parse("--model", "m", "--name", "m", "--port", "1", env={"SERINUS_SERVE_PORT": "x"})
    assert settings.port == 1


def test_required_settings_may_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"SERINUS_SERVE_MODEL": "m.onnx", "SERINUS_SERVE_NAME": "m"}
    assert parse(env=env) == ServeSettings(**REQUIRED)
    with pytest.raises(SystemExit):  # argparse: the following arguments are required: --model
        parse("--name", "m")
    with pytest.raises(SettingsError, match=r"--model is required \(or set SERINUS_SERVE_MODEL\)"):
        load_serve_settings({"name": "m"}, env={})
    monkeypatch.setenv("SERINUS_SERVE_MODEL", "m.onnx")
    args = build_parser().parse_args(["serve", "--name", "n"])
    assert settings_from_args(args).model_uri == "m.onnx"


# ------------------------------------------------------------------ bad values
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SERINUS_SERVE_PORT": "http"}, "SERINUS_SERVE_PORT must be an integer, got 'http'"),
        ({"SERINUS_SERVE_PORT": "70000"}, "SERINUS_SERVE_PORT must be <= 65535, got 70000"),
        ({"SERINUS_SERVE_MAX_BATCH_SIZE": "-1"}, "SERINUS_SERVE_MAX_BATCH_SIZE must be >= 0"),
        ({"SERINUS_SERVE_DRAIN_SECONDS": "nan"}, "must be a finite number, got 'nan'"),
        ({"SERINUS_SERVE_DRAIN_SECONDS": "soon"}, "must be a finite number, got 'soon'"),
        ({"SERINUS_SERVE_ACCESS_LOG": "maybe"}, "SERINUS_SERVE_ACCESS_LOG must be one of 1/true"),
        ({"SERINUS_SERVE_LOG_LEVEL": "loud"}, "must be one of critical, error, warning"),
        ({"SERINUS_SERVE_DRIFT_THRESHOLD": "0"}, "SERINUS_SERVE_DRIFT_THRESHOLD must be > 0"),
        ({"SERINUS_SERVE_DRIFT_WINDOW": "0"}, "SERINUS_SERVE_DRIFT_WINDOW must be >= 1, got 0"),
        ({"SERINUS_SERVE_FEEDBACK_WINDOW": "0"}, "SERINUS_SERVE_FEEDBACK_WINDOW must be >= 1"),
    ],
)
def test_a_bad_variable_is_named_in_the_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_serve_settings(REQUIRED, env=env)


def test_every_problem_is_reported_at_once() -> None:
    env = {"SERINUS_SERVE_PORT": "http", "SERINUS_SERVE_DRIFT_WINDOW_SECONDS": "-1"}
    with pytest.raises(SettingsError) as caught:
        load_serve_settings({**REQUIRED, "max_body_bytes": -5, "nonsense": 1}, env=env)
    assert caught.value.problems == [
        "unknown setting 'nonsense'",
        "SERINUS_SERVE_PORT must be an integer, got 'http'",
        "--max-body-bytes must be >= 0, got -5",
        "SERINUS_SERVE_DRIFT_WINDOW_SECONDS must be > 0, got -1.0",
    ]


def test_bad_flags_exit_2_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["serve", "--model", "m.onnx", "--name", "m"]
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args([*base, "--port", "http"])
    assert caught.value.code == 2
    assert "argument --port: must be an integer, got 'http'" in capsys.readouterr().err
    args = build_parser().parse_args([*base, "--max-batch-size", "-1", "--drift-window", "0"])
    with pytest.raises(SystemExit) as caught:
        settings_from_args(args, env={})
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("serinus serve: --max-batch-size must be >= 0, got -1; ")
    assert "--drift-window must be >= 1, got 0" in err


def test_serve_runs_with_the_parsed_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from serinus_operator.cli import main
    from serinus_serving import server

    seen: list[ServeSettings] = []
    monkeypatch.setattr(server, "run", seen.append)
    monkeypatch.setenv("SERINUS_SERVE_INTRA_OP_THREADS", "2")
    argv = ["serve", "--model", "m.onnx", "--name", "m", "--access-log", "--profile", "p.json"]
    assert main(argv) == 0
    assert seen == [
        ServeSettings(
            **REQUIRED, intra_op_threads=2, access_log=True, drift=DriftSettings(profile="p.json")
        )
    ]
