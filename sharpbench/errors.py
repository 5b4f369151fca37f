"""Errors meant for users: each names what is wrong and how to fix it, and the CLI prints it without a traceback."""

from __future__ import annotations

from pathlib import Path


class SharpbenchError(Exception):
    """Base class of every error that the CLI reports as a one-paragraph message."""

    exit_code = 2


class CardError(SharpbenchError):
    """A YAML card is malformed: names the file, the field and what was expected."""

    def __init__(self, path: Path | str, field: str, expected: str, got: object = None) -> None:
        self.path, self.field, self.expected = Path(path), field, expected
        found = "" if got is None else f" (found {got!r})"
        super().__init__(f"{self.path}: field '{field}': expected {expected}{found}")


class UnknownNameError(SharpbenchError):
    """A measure or collection name that no card defines; lists the close matches."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        import difflib

        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        super().__init__(
            f"unknown {kind} '{name}'.{hint} Run `sharpbench list {kind}s` to see all, or pass "
            f"--include-path DIR to load cards of your own."
        )


class MeasureError(SharpbenchError):
    """A measure misbehaved: returned a non-finite value, failed, or changed the model's weights."""


class CollectionError(SharpbenchError):
    """A collection is missing, incomplete, or fails its integrity check."""


class Interrupted(SharpbenchError):
    """A run stopped by the user (Ctrl-C); says how much finished work was kept."""

    exit_code = 130
