"""Errors a user can cause: reported as one line, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment, with the fix in the message.

    The CLI prints ``error: <message>`` on one line and exits with ``exit_code``.
    """

    exit_code = 2

    def __init__(self, message: str, *, path: object | None = None) -> None:
        self.path = path
        text = f"{path}: {message}" if path is not None else message
        super().__init__(text)


class StaleArtifactError(UserError):
    """An artifact was built from inputs that have changed since; re-run the named stage."""
