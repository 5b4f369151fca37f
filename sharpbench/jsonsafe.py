"""JSON has no NaN or infinity: such a number (an undefined score, a diverged loss) is written as null."""

from __future__ import annotations

import math
from typing import Any


def finite_or_none(value: Any) -> Any:
    """`value` with every non-finite float, at any depth of dicts and lists, replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite_or_none(item) for item in value]
    return value
