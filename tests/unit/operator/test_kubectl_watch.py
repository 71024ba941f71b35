"""``status -w`` and the actions over a scripted API (no sockets): list-then-watch, resumed
when a watch ends, listed again on 410 Gone, retried while the API server is away; drawn
only on change; an action's answer, its refusal and its silence."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from serinus_operator.kubectl import actions
from serinus_operator.kubectl.api import (
    EVENTS,
    MODELDEPLOYMENTS,
    Forbidden,
    Gone,
    Resource,
    Unreachable,
)
from serinus_operator.kubectl.errors import EXIT_IGNORED, EXIT_NOT_ACKNOWLEDGED, CliError
from serinus_operator.kubectl.watch import CLEAR, draw, follow, watch_status

pytestmark = pytest.mark.unit


def md(rv: str, phase: str = "Paused", name: str = "fraud") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ml", "resourceVersion": rv},
        "status": {"phase": phase},
    }


class Script:
    """An API whose lists and watch requests answer in the order scripted (per resource).
    A watch script is a list of events or an exception; once all are used, a watch
    blocks, as a quiet one does."""

    def __init__(
        self,
        lists: Mapping[str, list[Any]],
        watches: Mapping[str, list[Any]] | None = None,
    ) -> None:
        self.lists = {k: list(v) for k, v in lists.items()}
        self.watches = {k: list(v) for k, v in (watches or {}).items()}
        self.calls: list[tuple[str, str, str | None]] = []

    async def list(
        self, resource: Resource, namespace: str | None, *, field_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        self.calls.append(("list", resource.plural, field_selector))
        answer = self.lists[resource.plural].pop(0)
        if isinstance(answer, Exception):
            raise answer
        items, rv = answer
        return items, rv

    async def watch(
        self,
        resource: Resource,
        namespace: str | None,
        *,
        resource_version: str,
        field_selector: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(("watch", resource.plural, resource_version))
        await asyncio.sleep(0.01)  # the other resource's first list comes first
        pending = self.watches.get(resource.plural) or []
        if not pending:
            await asyncio.Event().wait()  # quiet: nothing ever changes
        answer = pending.pop(0)
        if isinstance(answer, Exception):
            raise answer
        for event in answer:
            if isinstance(event, Exception):
                raise event
            yield event


async def first(n: int, source: Script, resource: Resource = MODELDEPLOYMENTS) -> list[Any]:
    async def no_sleep(_: float) -> None:
        return None

    out = []
    async for snapshot in follow(source, resource, "ml", sleep=no_sleep):
        out.append([o["status"]["phase"] for o in snapshot])
        if len(out) == n:
            break
    return out


def test_follow_lists_then_watches_from_the_lists_version() -> None:
    script = Script(
        {"modeldeployments": [([md("5")], "10")]},
        {
            "modeldeployments": [
                [
                    {"type": "MODIFIED", "object": md("11", "Progressing")},
                    {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
                ],
                [{"type": "DELETED", "object": md("13", "Progressing")}],
            ]
        },
    )
    assert asyncio.run(first(3, script)) == [["Paused"], ["Progressing"], []]
    # the second watch (the server ended the first) resumes after the bookmark
    assert [c for c in script.calls if c[0] == "watch"] == [
        ("watch", "modeldeployments", "10"),
        ("watch", "modeldeployments", "12"),
    ]


def test_follow_lists_again_on_410_gone() -> None:
    script = Script(
        {"modeldeployments": [([md("5")], "10"), ([md("40", "Stable")], "41")]},
        {"modeldeployments": [Gone("too old"), [{"type": "MODIFIED", "object": md("42", "X")}]]},
    )
    assert asyncio.run(first(3, script)) == [["Paused"], ["Stable"], ["X"]]
    assert [c[0] for c in script.calls] == ["list", "watch", "list", "watch"]
    assert script.calls[-1] == ("watch", "modeldeployments", "41")


def test_follow_retries_an_api_server_that_went_away() -> None:
    away = Unreachable("cannot reach the API server at https://k: connection refused")
    script = Script(
        {"modeldeployments": [([md("5")], "10")]},
        {"modeldeployments": [away, away, [{"type": "MODIFIED", "object": md("11", "Back")}]]},
    )
    assert asyncio.run(first(2, script)) == [["Paused"], ["Back"]]


def test_follow_fails_at_once_if_the_first_list_fails() -> None:
    script = Script({"modeldeployments": [Unreachable("cannot reach the API server")]})
    with pytest.raises(Unreachable):
        asyncio.run(first(1, script))


def test_follow_gives_up_after_its_patience() -> None:
    away = Unreachable("cannot reach the API server")
    script = Script({"modeldeployments": [([md("5")], "10")]}, {"modeldeployments": [away] * 3})

    async def main() -> None:
        async for _ in follow(script, MODELDEPLOYMENTS, "ml", patience=0.0, sleep=asyncio.sleep):
            await asyncio.sleep(0.01)

    with pytest.raises(Unreachable):
        asyncio.run(main())


# --- the view --------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def render(obj: Mapping[str, Any] | None, events: Any, note: str | None) -> str:
    if obj is None:
        return "deleted"
    reasons = ",".join(e["reason"] for e in events)
    return f"{obj['status']['phase']} events={reasons} note={note}"


async def view(script: Script, out: Terminal, *, seconds: float = 0.2) -> None:
    task = asyncio.create_task(watch_status(script, "ml", "fraud", render, out))
    done, _ = await asyncio.wait([task], timeout=seconds)
    if done:
        task.result()  # raises what the view raised
        return
    task.cancel()  # Ctrl-C
    with pytest.raises(asyncio.CancelledError):
        await task


def test_the_view_is_drawn_once_per_change_of_its_text() -> None:
    script = Script(
        {"modeldeployments": [([md("5")], "10")], "events": [([], "10")]},
        {
            "modeldeployments": [
                [
                    {"type": "MODIFIED", "object": md("11")},  # the same view: not drawn
                    {"type": "MODIFIED", "object": md("12", "Progressing")},
                    {"type": "DELETED", "object": md("13", "Progressing")},
                ]
            ]
        },
    )
    out = Terminal(tty=False)
    asyncio.run(view(script, out))
    assert out.getvalue().split("\n\n") == [
        "Paused events= note=None",
        "Progressing events= note=None",
        "deleted\n",
    ]
    field_selectors = {c[2] for c in script.calls if c[0] == "list"}
    assert field_selectors == {
        "metadata.name=fraud",
        "involvedObject.kind=ModelDeployment,involvedObject.name=fraud",
    }


def test_a_new_event_redraws_the_view() -> None:
    event = {"metadata": {"name": "e1", "namespace": "ml"}, "reason": "Paused"}
    script = Script(
        {"modeldeployments": [([md("5")], "10")], "events": [([], "10")]},
        {"events": [[{"type": "ADDED", "object": event}]]},
    )
    out = Terminal(tty=False)
    asyncio.run(view(script, out))
    assert out.getvalue() == "Paused events= note=None\n\nPaused events=Paused note=None\n"


def test_the_view_works_without_permission_to_list_events() -> None:
    script = Script(
        {
            "modeldeployments": [([md("5")], "10")],
            "events": [Forbidden("forbidden: cannot list events in namespace ml")],
        }
    )
    out = Terminal(tty=True)
    asyncio.run(view(script, out))
    assert out.getvalue() == (
        f"{CLEAR}Paused events= note=not shown (forbidden: cannot list events in namespace ml)\n"
    )


def test_the_view_of_a_modeldeployment_that_does_not_exist() -> None:
    script = Script({"modeldeployments": [([], "10")], "events": [([], "10")]})
    with pytest.raises(CliError, match=r"^no ModelDeployment fraud in namespace ml$"):
        asyncio.run(view(script, Terminal(tty=False)))


def test_draw_clears_a_terminal_and_separates_views_in_a_pipe() -> None:
    tty, pipe = Terminal(tty=True), Terminal(tty=False)
    for n, text in enumerate(["one", "two"]):
        draw(tty, text, tty=True, first=n == 0)
        draw(pipe, text, tty=False, first=n == 0)
    assert tty.getvalue() == f"{CLEAR}one\n{CLEAR}two\n"
    assert pipe.getvalue() == "one\n\ntwo\n"


# --- actions ---------------------------------------------------------------------------------


class Store:
    """A ModelDeployment whose operator answers (or not) after ``answer_after`` reads."""

    def __init__(self, result: str | None, answer_after: int = 2) -> None:
        self.result = result
        self.answer_after = answer_after
        self.reads = 0
        self.patches: list[Mapping[str, Any]] = []

    async def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        self.reads += 1
        status: dict[str, Any] = {}
        if self.result and self.reads > self.answer_after:
            value = self.patches[-1]["metadata"]["annotations"]["serinus.dev/action"]
            nonce = value.split(":", 1)[1]
            status["lastAction"] = {"nonce": nonce, "result": self.result, "message": "done"}
        return {"status": status}

    async def merge_patch(
        self, resource: Resource, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.patches.append(patch)
        return {}


def act(store: Store, wait: float, action: str = "promote-full") -> list[str]:
    said: list[str] = []
    asyncio.run(
        actions.request(
            store, "ml", "fraud", action, nonce="1-abc", wait_seconds=wait, say=said.append
        )
    )
    return said


def test_an_applied_action(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actions, "POLL_SECONDS", 0.01)
    store = Store("Applied")
    assert act(store, 5) == ["requested promote-full on ml/fraud (nonce 1-abc)", "Applied: done"]
    assert store.patches == [
        {"metadata": {"annotations": {"serinus.dev/action": "promote-full:1-abc"}}}
    ]


def test_an_ignored_action_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actions, "POLL_SECONDS", 0.01)
    with pytest.raises(CliError, match=r"^promote ignored by the operator: done$") as caught:
        act(Store("Ignored"), 5, "promote")
    assert caught.value.code == EXIT_IGNORED


def test_an_action_nobody_answers_exits_4(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actions, "POLL_SECONDS", 0.01)
    with pytest.raises(CliError, match="the operator may not be running") as caught:
        act(Store(None), 0.05)
    assert caught.value.code == EXIT_NOT_ACKNOWLEDGED
    assert str(caught.value).startswith(
        "ModelDeployment fraud in namespace ml did not acknowledge promote-full:1-abc within 0.05s"
    )


def test_an_action_that_does_not_wait() -> None:
    store = Store(None)
    assert act(store, 0) == ["requested promote-full on ml/fraud (nonce 1-abc)"]
    assert store.reads == 0


def test_events_resource() -> None:
    assert EVENTS.path("ml") == "/api/v1/namespaces/ml/events"
    assert MODELDEPLOYMENTS.path(None) == "/apis/serinus.dev/v1alpha1/modeldeployments"
    assert MODELDEPLOYMENTS.name == "modeldeployments.serinus.dev"
