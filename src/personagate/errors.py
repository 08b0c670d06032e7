"""The one exception type a user can cause, so the CLI can print it in one line."""

from __future__ import annotations


class PersonagateError(Exception):
    """A problem with the user's input or environment; the message says what to do about it."""
