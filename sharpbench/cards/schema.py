"""Reading YAML cards safely, and typed access to their fields with errors that name the file and field.

`Param` is the schema of one card field, shared by the registries (datasets, shifts, architectures, recipes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from sharpbench.errors import CardError


@dataclass(frozen=True)
class Param:
    """One card field of a dataset, shift or architecture: its type, default (``...`` = required) and check."""

    kind: type
    default: Any = ...
    check: Callable[[Any], bool] | None = None
    expected: str = ""  # what the check demands, for the error message

_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               dict: "a mapping", list: "a list"}


def read_card(path: Path) -> dict[str, Any]:
    """Parse one card with yaml.safe_load; a card must be a mapping at its top level."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise CardError(path, "<file>", f"valid YAML ({error})") from None
    if not isinstance(data, dict):
        raise CardError(path, "<file>", "a mapping of fields at the top level", type(data).__name__)
    return data


def field(card: dict[str, Any], path: Path, name: str, kind: type, default: Any = ..., prefix: str = "") -> Any:
    """Return card[name] checked against kind; a missing field without a default is an error.

    `prefix` locates a nested mapping in messages, e.g. "params.rho." for a field of params.rho.
    """
    if name not in card:
        if default is ...:
            raise CardError(path, prefix + name, f"{_TYPE_NAMES.get(kind, kind.__name__)} (the field is required)")
        return default
    return check_type(card[name], path, prefix + name, kind)


def check_type(value: Any, path: Path, name: str, kind: type) -> Any:
    """Check one value's type (an int is accepted as a float, a bool is never a number)."""
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise CardError(path, name, _TYPE_NAMES.get(kind, kind.__name__), value)
    return value


def reject_unknown(card: dict[str, Any], path: Path, allowed: set[str], prefix: str = "") -> None:
    """A misspelt field must not be silently ignored."""
    for key in card:
        if key not in allowed:
            raise CardError(path, prefix + str(key), f"one of the known fields {sorted(allowed)}", key)
