"""The installed version of sharpbench (from the package metadata) and the git commit of a checkout."""

import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the checkout, when sharpbench runs from one

try:
    __version__ = version("sharpbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=_SOURCE_ROOT, capture_output=True, text=True, timeout=10,
                          check=True).stdout.strip()


def git_commit() -> str | None:
    """The commit of the git checkout sharpbench runs from ('-dirty' appended when tracked files other than the
    published results under leaderboard/ changed), or None for an installed wheel or without git: provenance
    for published results."""
    if not (_SOURCE_ROOT / ".git").exists():
        return None
    try:
        return _git("rev-parse", "HEAD") + ("-dirty" if _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)leaderboard") else "")
    except (OSError, subprocess.SubprocessError):
        return None
