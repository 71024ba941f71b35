"""Argo CD's Lua, as Argo CD runs a custom health check or resource action, for the tests of
manifests/argocd/ (docs/gitops.md).

Argo CD runs each script in a fresh gopher-lua (Lua 5.1) state with only the base, table
and package libraries and a "safe" os (``time``, ``date``) unless ``useOpenLibs`` is set,
with the object as the global ``obj`` (numbers as Lua numbers), and reads the returned
table back through JSON (an empty table becomes ``[]``). Here the same script runs in a
real Lua 5.1 (lupa) stripped the same way: no string, math, io or debug library and no
methods on strings. An action's result becomes what Argo CD sends: the JSON merge patch
from the live object to the returned one (after Argo CD's repair of empty maps that
came back as ``[]``), applied to the object with the main resource's merge patch.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from lupa import lua51

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "manifests" / "argocd"
HEALTH = ARGOCD / "health.lua"
DISCOVERY = ARGOCD / "actions" / "discovery.lua"
ACTIONS = ("promote", "promote-full", "abort", "pause", "resume", "retry")
CONFIGMAP = ARGOCD / "argocd-cm.yaml"
KEY = "serinus.dev_ModelDeployment"
HEALTH_KEY = f"resource.customizations.health.{KEY}"
ACTIONS_KEY = f"resource.customizations.actions.{KEY}"

_SANDBOX = """
local setmetatable_any, time, date = debug.setmetatable, os.time, os.date
setmetatable_any("", nil)  -- no string library: no ("x"):sub(...) either
string, math, io, debug, coroutine = nil, nil, nil, nil, nil
os = {time = time, date = date}
package.loaded.string, package.loaded.math, package.loaded.io = nil, nil, nil
package.loaded.debug, package.loaded.coroutine = nil, nil
package.loaded.os = os
"""


def action_script(name: str) -> Path:
    return ARGOCD / "actions" / name / "action.lua"


class LuaError(RuntimeError):
    """The script raised an error (Argo CD shows its message and changes nothing)."""


def _to_python(value: Any) -> Any:
    if lua51.lua_type(value) != "table":
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value
    keys = list(value.keys())
    if not keys:
        return []  # as Argo CD's JSON encoder does
    if all(isinstance(k, int) for k in keys) and sorted(keys) == list(range(1, len(keys) + 1)):
        return [_to_python(value[k]) for k in range(1, len(keys) + 1)]
    return {str(k): _to_python(value[k]) for k in keys}


def run(script: str | Path, obj: Mapping[str, Any]) -> Any:
    """Run ``script`` with ``obj`` as Argo CD would, and return what it returned."""
    text = script.read_text() if isinstance(script, Path) else script
    lua = lua51.LuaRuntime(register_eval=False, register_builtins=False)
    lua.execute(_SANDBOX)
    lua.globals().obj = lua.table_from(copy.deepcopy(dict(obj)), recursive=True)
    try:
        result = lua.execute(text)
    except lua51.LuaError as exc:
        raise LuaError(str(exc)) from None
    return _to_python(result)


def health(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``{"status": Healthy|Progressing|Suspended|Degraded|..., "message": ...}``."""
    result: dict[str, Any] = run(HEALTH, obj)
    return result


def discovery(obj: Mapping[str, Any]) -> dict[str, bool]:
    """Action name -> enabled."""
    found = run(DISCOVERY, obj)
    return {name: not spec.get("disabled", False) for name, spec in found.items()}


# --- what Argo CD sends for an action ----------------------------------------------------------


def _clean(new: Any, old: Any) -> Any:
    """Argo CD's cleanReturnedObj: an empty map that came back as ``[]`` is a map again."""
    if isinstance(new, dict) and isinstance(old, dict):
        return {k: _clean(v, old[k]) if k in old else v for k, v in new.items()}
    if isinstance(new, list) and isinstance(old, dict) and not new:
        return old
    if isinstance(new, list) and isinstance(old, list):
        return [_clean(n, o) for n, o in zip(new, old, strict=False)] + new[len(old) :]
    return new


def merge_patch_between(old: Any, new: Any) -> Any:
    """RFC 7386: the merge patch from ``old`` to ``new`` (as jsonpatch.CreateMergePatch)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        if key not in old or old[key] != value:
            patch[key] = merge_patch_between(old.get(key), value)
    return patch


def action_patch(name: str, live: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch Argo CD sends for action ``name`` on the ``live`` object."""
    out = run(action_script(name), live)
    assert isinstance(out, dict), f"{name} returned {out!r}, not the object"
    patch: dict[str, Any] = merge_patch_between(dict(live), _clean(out, dict(live)))
    return patch


# --- the argocd-cm snippet -----------------------------------------------------------------


def _block(text: str, indent: int) -> str:
    pad = " " * indent
    return "".join(pad + line if line.strip() else "\n" for line in text.splitlines(True))


def render_configmap() -> str:
    """manifests/argocd/argocd-cm.yaml, from the .lua files next to it."""
    actions = "discovery.lua: |\n" + _block(DISCOVERY.read_text(), 2) + "definitions:\n"
    for name in ACTIONS:
        actions += f"  - name: {name}\n    action.lua: |\n"
        actions += _block(action_script(name).read_text(), 6)
    return (
        "# Argo CD health check and actions for serinus.dev/ModelDeployment (docs/gitops.md).\n"
        "# Generated from the .lua files in this folder by tests/unit/gitops/test_argocd.py\n"
        "# (SERINUS_RECORD=1 rewrites it): edit those, not this. Merge into Argo CD's\n"
        "# argocd-cm, e.g. kubectl -n argocd patch configmap argocd-cm --patch-file <this file>\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: argocd-cm\n"
        "  labels:\n"
        "    app.kubernetes.io/name: argocd-cm\n"
        "    app.kubernetes.io/part-of: argocd\n"
        "data:\n"
        f"  {HEALTH_KEY}: |\n" + _block(HEALTH.read_text(), 4) + f"  {ACTIONS_KEY}: |\n"
        f"{_block(actions, 4)}"
    )


def configmap_scripts(text: str) -> dict[str, str]:
    """What Argo CD reads from the snippet: "health", "discovery" and each action's script."""
    data = yaml.safe_load(text)["data"]
    actions = yaml.safe_load(data[ACTIONS_KEY])
    out = {"health": data[HEALTH_KEY], "discovery": actions["discovery.lua"]}
    for d in actions["definitions"]:
        out[d["name"]] = d["action.lua"]
    return out
