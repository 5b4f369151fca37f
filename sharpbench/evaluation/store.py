"""The results store: one value per (measure key, checkpoint sha256) in an embedded SQLite database.

Each value is committed as soon as it is computed, so an interrupted run keeps every finished model and
the next run resumes from them; nothing is computed twice. The key pins the measure's code as well as its
parameters, so an edited card, implementation or kernel never serves old values.

Several runs may share one store at once (processes on one machine, or drivers on machines that share the file
system, where SQLite's locking works: a local disk or NFS with working locks). Before computing a model a run
claims it: a row naming the run, its host and process, and when the claim lapses. Another run skips what is
claimed and waits for its value; a claim whose run died (its process is gone from this host, or it was not
renewed in time) is taken over. Each write is one short transaction that takes the write lock up front
(BEGIN IMMEDIATE), so that waiting writers queue under the busy timeout instead of failing with "database is
locked".
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

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
);
CREATE TABLE IF NOT EXISTS claims (
    measure_key TEXT NOT NULL,
    checkpoint_sha256 TEXT NOT NULL,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (measure_key, checkpoint_sha256)
);
"""
# A claim lapses this long after its last renewal; a run renews its claims every _RENEW_SECONDS.
LEASE_SECONDS = 120.0
_RENEW_SECONDS = 20.0
_BUSY_TIMEOUT_SECONDS = 600


def measure_key(measure: str, params: dict[str, Any], protocol: dict[str, Any], code: dict[str, Any],
                inputs: dict[str, Any] | None = None) -> str:
    """sha256 of everything that decides a value: the measure's name, its full parameters, the sharpness-data
    protocol, and its code (`MeasureSpec.key_inputs()`: card version, fixed values, function, and the sha256 of
    the implementation's source and of the kernels), and for a measure that reads more than one model and the
    training data, what else it reads (`inputs`: e.g. the checkpoints of each model's siblings). Sorted JSON, so
    the key is the same on every run and machine."""
    payload = {"measure": measure, "params": params, "protocol": protocol, "code": code}
    if inputs:
        payload["inputs"] = inputs
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class StoredValue:
    """A value computed earlier, with how long it took."""

    value: float
    seconds: float


class StoreError(SharpbenchError):
    """The results store cannot be opened, read or written: names the file and the fix."""


class ResultStore:
    """A thin layer over one SQLite file, shared safely by several runs at once (see the module's docstring).

    A store in a folder that cannot be written (a read-only home) is opened read-only: it serves the values it
    holds, and `writable` is False so that a run with values left to compute stops before computing them."""

    def __init__(self, path: Path) -> None:
        self.path, self.writable = path, True
        self.owner, self.host, self.pid = uuid.uuid4().hex, socket.gethostname(), os.getpid()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = _connect(path)
            self._connection.execute("PRAGMA journal_mode=WAL")     # (outside a transaction, as SQLite requires)
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    with self._write():
                        self._connection.execute(statement)
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

    @contextmanager
    def _write(self, connection: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction that takes the write lock at its start: a writer that must wait does so under
        the busy timeout (a deferred transaction that reads and then writes fails at once with "database is
        locked" when another writer went first)."""
        connection = connection or self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

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
        """Record one value, drop this run's claim on it, and commit at once."""
        with self._write() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, checkpoint_sha256, value, seconds, measure, json.dumps(params, sort_keys=True),
                 json.dumps(protocol, sort_keys=True), device, version,
                 datetime.now(timezone.utc).isoformat(timespec="seconds")),
            )
            connection.execute("DELETE FROM claims WHERE measure_key = ? AND checkpoint_sha256 = ? AND owner = ?",
                               (key, checkpoint_sha256, self.owner))

    def claim(self, key: str, checkpoints: Iterable[str], *, over_values: bool = False) -> set[str]:
        """Claim for this run every checkpoint (sha256) that has no value (or, `over_values`, whether or not it
        has one: a recompute) and no live claim of another run; returns the checkpoints this run holds. Claims
        of runs that died are dropped first."""
        now = time.time()
        with self._write() as connection:
            connection.execute("DELETE FROM claims WHERE measure_key = ? AND expires < ?", (key, now))
            for owner, host, pid in connection.execute(
                    "SELECT DISTINCT owner, host, pid FROM claims WHERE measure_key = ? AND owner != ?",
                    (key, self.owner)).fetchall():
                if host == self.host and not _alive(pid):
                    connection.execute("DELETE FROM claims WHERE owner = ?", (owner,))
            done = set() if over_values else set(self.get_many(key))
            for checkpoint in set(checkpoints) - done:
                connection.execute("INSERT OR IGNORE INTO claims VALUES (?, ?, ?, ?, ?, ?)",
                                   (key, checkpoint, self.owner, self.host, self.pid, now + LEASE_SECONDS))
            return {sha for sha, in connection.execute(
                "SELECT checkpoint_sha256 FROM claims WHERE measure_key = ? AND owner = ?", (key, self.owner))}

    def claimed_by_others(self, key: str) -> set[str]:
        """The checkpoints (sha256) that other runs hold claims on, lapsed or not."""
        return {sha for sha, in self._connection.execute(
            "SELECT checkpoint_sha256 FROM claims WHERE measure_key = ? AND owner != ?", (key, self.owner))}

    @contextmanager
    def holding_claims(self) -> Iterator[None]:
        """Keep this run's claims alive while the block runs (a thread renews them with a connection of its own),
        and drop the ones left at its end, however it ends."""
        if not self.writable:
            yield
            return
        stop = threading.Event()

        def renew() -> None:
            connection = _connect(self.path)
            try:
                while not stop.wait(_RENEW_SECONDS):
                    with self._write(connection):
                        connection.execute("UPDATE claims SET expires = ? WHERE owner = ?",
                                           (time.time() + LEASE_SECONDS, self.owner))
            finally:
                connection.close()

        renewer = threading.Thread(target=renew, name="sharpbench-claims", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            with self._write() as connection:
                connection.execute("DELETE FROM claims WHERE owner = ?", (self.owner,))

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()


def _connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit, see `ResultStore._write`) that waits up to
    _BUSY_TIMEOUT_SECONDS for a lock."""
    return sqlite3.connect(path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False)


def _alive(pid: int) -> bool:
    """Whether a process of this host with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
