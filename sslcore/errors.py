"""The one family of user-facing errors: printed as a single line, exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SslcoreError(Exception):
    """A mistake the user can fix (bad recipe, unknown name, broken plugin).

    The message reads ``WHERE: WHAT; HINT`` so that one line tells what is wrong, where, and what to do. Raised in
    a DataLoader worker, it reaches the main process as the same line (torch passes the worker's traceback as
    ``message``).
    """

    def __init__(
        self, what: str = "", *, where: str | None = None, hint: str | None = None, message: str | None = None
    ) -> None:
        if message is not None:  # torch re-raises a DataLoader worker's error from its traceback as text
            what = message.rstrip().rsplit("\n", 1)[-1].partition(": ")[2]  # "sslcore.errors.SslcoreError: LINE"
        self.what = what
        self.where = where
        self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        return f"{text}; {self.hint}" if self.hint else text

    def located(self, where: str) -> SslcoreError:
        """The same error with a location, unless it already has one."""
        if self.where:
            return self
        return SslcoreError(self.what, where=where, hint=self.hint)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """A hint listing the known names, with the closest one first when there is one."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    listing = ", ".join(known) if known else "none"
    if close:
        return f"did you mean '{close[0]}'? (known: {listing})"
    return f"known: {listing}"
