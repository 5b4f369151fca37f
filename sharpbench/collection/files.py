"""A collection's folder on disk: its layout, sha256 checks, the build lock and deterministic mode.

Layout of ``sharpbench_home()/collections/NAME``::

    checkpoints/ID.safetensors        trained weights of a kept model
    checkpoints/ID.init.safetensors   its weights before training (when known)
    outcomes/ID.safetensors           its per-example error and loss on every evaluation set
    records/ID.json                   one per finished model (kept or excluded), written atomically last:
                                      a build that is interrupted resumes from these
    manifest.json                     written at the end from the records (:mod:`sharpbench.collection.manifest`)

Nothing here unpickles: checkpoints are safetensors, checked against their sha256 before loading.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any, Iterator

import torch

MANIFEST = "manifest.json"
CHECKPOINTS = "checkpoints"
RECORDS = "records"
OUTCOMES = "outcomes"

# the (file, sha256) field pairs of a model's record and manifest entry; "file" is always there, the initial
# weights only when known, the outcomes only once scored
FILE_FIELDS = (("file", "sha256"), ("init_file", "init_sha256"), ("outcomes_file", "outcomes_sha256"))


def model_files(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """The (relative path, sha256) of each file a model's record or manifest entry names."""
    return [(str(entry.get(file_key)), str(entry.get(sha_key))) for file_key, sha_key in FILE_FIELDS
            if file_key == "file" or entry.get(file_key)]


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, as the manifest records it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@contextlib.contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """An advisory lock so two processes that build the same collection do not both train it."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(root / ".build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """One intra-op CPU thread (results of CPU matmuls depend on the thread count) and deterministic algorithms
    (on a GPU: where torch has them, with cuBLAS's deterministic workspace); restores the caller's settings."""
    threads, was_deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(was_deterministic)
