"""Where sharpbench keeps its state and finds its built-in cards, and how a file is written there atomically."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from sharpbench.errors import SharpbenchError

HOME_ENV = "SHARPBENCH_HOME"


def home_path() -> Path:
    """$SHARPBENCH_HOME, or ~/.cache/sharpbench, as a path only: nothing is created or checked, so that reading
    commands (discovery, `sharpbench list`) work with a home that is missing, read-only or not a folder."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "sharpbench").expanduser()


def readable_home() -> Path:
    """The home (see :func:`home_path`) for a command that reads it and writes there only when it must (evaluate
    serves stored values from a read-only home): a home that exists but is not a folder is a one-line error."""
    home = home_path()
    if home.exists() and not home.is_dir():
        raise _unwritable(home, "it is a file")
    return home


def sharpbench_home() -> Path:
    """The home (see :func:`home_path`), created if missing, for commands that write there: built collections,
    imported cards and the results database. A home that is not a writable folder is a one-line error."""
    home = home_path()
    if home.exists() and not home.is_dir():
        raise _unwritable(home, "it is a file")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _unwritable(home, error.strerror or type(error).__name__) from None
    if not os.access(home, os.W_OK | os.X_OK):
        raise _unwritable(home, "no permission to write there")
    return home


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and os.replace, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _unwritable(home: Path, reason: str) -> SharpbenchError:
    return SharpbenchError(f"the sharpbench home {home} is not a writable folder ({reason}); set {HOME_ENV} to a "
                           f"writable folder")


def builtin_registry() -> Path:
    """The folder of built-in cards (registry/ in a checkout, sharpbench_registry/ in a wheel)."""
    return Path(str(resources.files("sharpbench_registry")))
