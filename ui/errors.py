"""One place that turns the library's user-fixable errors into messages the page shows.

The libraries raise ``ValueError`` (bad setting, damaged weights naming the file), ``OSError`` (missing or
unwritable files, naming them) and ``EmbedderUnavailable`` (missing or damaged dlib/facenet model files) with
a message that says what to do. Without this, Gradio shows "upstream app raised an exception" (or "Error")
and the message stays in the server log.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import gradio as gr

from deblur.embed import EmbedderUnavailable

__all__ = ["USER_ERRORS", "user_errors"]

USER_ERRORS = (ValueError, OSError, EmbedderUnavailable)
F = TypeVar("F", bound=Callable)


def user_errors(fn: F) -> F:
    """Decorate a Gradio handler: :data:`USER_ERRORS` reach the page as ``gr.Error`` with their message."""

    @functools.wraps(fn)
    def handler(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as exc:
            raise gr.Error(f"{exc}") from exc

    return handler  # type: ignore[return-value]
