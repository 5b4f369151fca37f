"""The schema of one card field, shared by the registries (datasets, shifts, architectures, recipes) and by
the dataset modules that declare their own fields (e.g. :mod:`sharpbench.datasets.mnli`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Param:
    """One card field of a dataset, shift or architecture: its type, default (``...`` = required) and check."""

    kind: type
    default: Any = ...
    check: Callable[[Any], bool] | None = None
    expected: str = ""  # what the check demands, for the error message
