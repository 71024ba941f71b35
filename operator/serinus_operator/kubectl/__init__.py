"""``kubectl serinus list|status|promote|promote-full|abort|pause|resume|retry``.

Manual actions are written to the ``serinus.dev/action`` annotation as
``<action>:<nonce>``, never to ``spec``, so GitOps tools that own the spec never fight
them; the operator records what it did with each nonce in ``status.lastAction``.
``status`` is rendered by the pure :func:`render_status` from the stored object, ``list`` by
:func:`render_list`; ``status -w`` watches the object (:mod:`.watch`). Every failure is one
line on stderr and an exit code (:mod:`.errors`).
"""

from __future__ import annotations

from serinus_operator.kubectl.commands import ACTIONS, add_parsers
from serinus_operator.kubectl.listing import render_list
from serinus_operator.kubectl.render import bound_text, render_status, value_text

__all__ = ["ACTIONS", "add_parsers", "bound_text", "render_list", "render_status", "value_text"]
