"""The one error the API raises: a field's path and how to fix it."""

from __future__ import annotations


class SpecError(ValueError):
    """A ModelDeployment field is wrong; ``field`` is its path, ``message`` says how to fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
