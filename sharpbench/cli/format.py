"""How the CLI's tables write numbers and intervals."""

from __future__ import annotations

import math


def number(value: float | None) -> str:
    """A signed number with three decimals, or 'n/a' for a missing or non-finite one."""
    return f"{value:+.3f}" if value is not None and math.isfinite(value) else "n/a"


def interval(bounds: list[float | None] | None) -> str:
    """'[low, high]' with each bound as `number` writes it, or 'n/a' without an interval."""
    return f"[{number(bounds[0])}, {number(bounds[1])}]" if bounds else "n/a"
