"""Where sharpbench keeps its state and finds its built-in cards."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def sharpbench_home() -> Path:
    """$SHARPBENCH_HOME, or ~/.cache/sharpbench: built collections and the results database live here."""
    home = Path(os.environ.get("SHARPBENCH_HOME") or Path.home() / ".cache" / "sharpbench")
    home.mkdir(parents=True, exist_ok=True)
    return home


def builtin_registry() -> Path:
    """The folder of built-in cards (registry/ in a checkout, sharpbench_registry/ in a wheel)."""
    return Path(str(resources.files("sharpbench_registry")))
