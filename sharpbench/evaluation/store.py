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


class ResultStore:
    """A thin layer over one SQLite file; safe to open from several processes (SQLite locks it)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._connection = sqlite3.connect(path, timeout=60)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute(_SCHEMA)
        self._connection.commit()

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
