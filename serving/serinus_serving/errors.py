"""Errors that map to an HTTP status and the protocol's ``{"error": "..."}`` body."""

from __future__ import annotations


class InferenceError(Exception):
    """A request the server refuses; ``status`` is the HTTP code to answer with.

    Raised for client mistakes (4xx) and for states the client can retry (503), so that
    the endpoints never turn a bad request into a 500.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ModelNotFound(InferenceError):
    """Unknown model name or version."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 404)


class ModelNotReady(InferenceError):
    """The model is loading, failed to load, or the server is draining."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 503)


class PayloadTooLarge(InferenceError):
    """The request body is over the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than the limit of {limit} bytes", 413)


class ModelLoadError(Exception):
    """The model could not be fetched, verified or loaded; the server stays unready."""
