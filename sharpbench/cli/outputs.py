"""Checks of the files and folders a command will write, made before any work so that a bad path never costs a
finished computation: a folder given for a file, a file given for a folder, a place that cannot be written."""

from __future__ import annotations

import os
from pathlib import Path

from sharpbench.errors import SharpbenchError


def _writable_place(path: Path, option: str) -> None:
    """The nearest existing folder above `path` must be a folder this process can write in."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SharpbenchError(f"{option} {path}: {parent} is a file, not a folder; give a path under a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SharpbenchError(f"{option} {path}: the folder {parent} cannot be written; give a path under a folder "
                              f"you can write.")


def output_file(text: str, option: str) -> Path:
    """The file an option names, checked to be writable (it or its folder) and not to be a folder."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise SharpbenchError(f"{option} {path} is a folder; give a file path, e.g. {path / 'report.json'}.")
    if path.exists() and not os.access(path, os.W_OK):
        raise SharpbenchError(f"{option} {path} cannot be written; give another file path.")
    _writable_place(path, option)
    return path


def output_folder(path: Path, option: str) -> Path:
    """The folder an option names, checked to be a folder (or creatable) that can be written."""
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise SharpbenchError(f"{option} {path} is a file, not a folder; give the leaderboard's folder (it holds "
                              f"results/).")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise SharpbenchError(f"{option} {path} cannot be written; give a folder you can write.")
        return path
    _writable_place(path, option)
    return path
