"""The user-facing error type: a one-line message, no traceback, a non-zero exit."""

from __future__ import annotations


class UsageError(Exception):
    """A mistake the user made (bad flag, impossible size, malformed file).

    `main()` prints `epbench: error: <message>` and exits with `exit_code`.
    The message names the offending value and what to do instead.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
