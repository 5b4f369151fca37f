"""The results store: one value per (measure key, checkpoint sha256) in an embedded SQLite database.

Each value is committed as soon as it is computed, so an interrupted run keeps every finished model and
the next run resumes from them; nothing is computed twice. The key pins the measure's code as well as its
parameters, so an edited card, implementation or kernel never serves old values.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sharpbench.errors import Hint, SharpbenchError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    measure_key TEXT NOT NULL,
    checkpoint_sha256 TEXT NOT NULL,
    value REAL NOT NULL,
    seconds REAL NOT NULL,
    measure TEXT NOT NULL,
    params TEXT NOT NULL,
    protocol TEXT NOT NULL,
    device TEXT NOT NULL,
    sharpbench_version TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (measure_key, checkpoint_sha256)
)
"""


def measure_key(measure: str, params: dict[str, Any], protocol: dict[str, Any], code: dict[str, Any]) -> str:
    """sha256 of everything that decides a value: the measure's name, its full parameters, the sharpness-data
    protocol, and its code (`MeasureSpec.key_inputs()`: card version, fixed values, function, and the sha256 of
    the implementation's source and of the kernels). Sorted JSON, so the key is the same on every run and machine."""
    payload = json.dumps({"measure": measure, "params": params, "protocol": protocol, "code": code}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class StoredValue:
    """A value computed earlier, with how long it took."""

    value: float
    seconds: float


class StoreError(SharpbenchError):
    """The results store cannot be opened, read or written: names the file and the fix."""


class ResultStore:
    """A thin layer over one SQLite file; safe to open from several processes (SQLite locks it).

    A store in a folder that cannot be written (a read-only home) is opened read-only: it serves the values it
    holds, and `writable` is False so that a run with values left to compute stops before computing them."""

    def __init__(self, path: Path) -> None:
        self.path, self.writable = path, True
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(path, timeout=60)
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute(_SCHEMA)
            self._connection.commit()
        except sqlite3.DatabaseError as error:
            if "readonly" not in str(error) and "unable to open" not in str(error):
                raise StoreError(f"results store {path} is not a readable SQLite database ({error}); it only caches "
                                 f"values: move it aside and evaluate again to recompute them.") from None
            self._open_read_only(error)
        except OSError as error:
            self._open_read_only(error)

    def _open_read_only(self, cause: Exception) -> None:
        """Open an existing store that cannot be written, for reading only (immutable: nothing else writes it)."""
        if not self.path.is_file():
            raise StoreError(f"results store {self.path} cannot be created ({cause}).", hints=[Hint("home")]) from None
        self.writable = False
        self._connection = sqlite3.connect(f"{self.path.resolve().as_uri()}?immutable=1", uri=True)
        try:
            self._connection.execute("SELECT count(*) FROM results").fetchone()
        except sqlite3.DatabaseError as error:
            raise StoreError(f"results store {self.path} cannot be read ({error}).", hints=[Hint("home")]) from None

    def require_writable(self, missing: int) -> None:
        """Refuse, before any compute, a run whose `missing` values could not be stored."""
        if missing and not self.writable:
            raise StoreError(f"results store {self.path} is read-only: the {missing} values this run would compute "
                             f"could not be stored (the values it holds are served).", hints=[Hint("home")])

    def get_many(self, key: str) -> dict[str, StoredValue]:
        """Every stored value of one measure key, by checkpoint sha256."""
        rows = self._connection.execute(
            "SELECT checkpoint_sha256, value, seconds FROM results WHERE measure_key = ?", (key,))
        return {sha: StoredValue(value, seconds) for sha, value, seconds in rows}

    def put(self, key: str, checkpoint_sha256: str, value: float, seconds: float, *, measure: str,
            params: dict[str, Any], protocol: dict[str, Any], device: str, version: str) -> None:
        """Record one value and commit at once."""
        with self._connection:
            self._connection.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, checkpoint_sha256, value, seconds, measure, json.dumps(params, sort_keys=True),
                 json.dumps(protocol, sort_keys=True), device, version,
                 datetime.now(timezone.utc).isoformat(timespec="seconds")),
            )

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()
