"""The installed version of sharpbench, the git commit of a checkout, and the digest of the sharpness kernels."""

import hashlib
import json
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the checkout, when sharpbench runs from one

# The modules that compute sharpness values for the measures (their loss, flat vectors, scale vectors,
# perturbation sets, the ascent and its driver): a change in any of them must not serve old stored values.
KERNEL_MODULES = ("kernels/ascent.py", "kernels/flat.py", "losses.py", "kernels/objective.py", "kernels/perturb.py",
                  "kernels/scaling.py", "kernels/sharpness.py")
PACKAGE_DIR = Path(__file__).resolve().parent
# Tracked paths whose changes cannot alter a computed value: an edit there leaves a published commit clean.
NOT_CODE = ("leaderboard", "tests", "docs", "*.md", ".ci")

try:
    __version__ = version("sharpbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"


def kernels_sha256() -> str:
    """sha256 of the kernel modules' contents (bytes as stored, by file name, never by path): part of every
    measure key, so that a change of the kernels recomputes."""
    digests = {Path(name).name: hashlib.sha256((PACKAGE_DIR / name).read_bytes()).hexdigest()
               for name in KERNEL_MODULES}
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=_SOURCE_ROOT, capture_output=True, text=True, timeout=10,
                          check=True).stdout.strip()


def git_commit() -> str | None:
    """The commit of the git checkout sharpbench runs from, or None for an installed wheel or without git:
    provenance for published results. '-dirty' is appended when a tracked file that can alter values changed (any
    but the published results under leaderboard/, the tests, the docs and Markdown pages, and CI's script), or an
    untracked (and not ignored) file lies under measures/ or registry/ (a new measure or card that the commit does
    not hold)."""
    if not (_SOURCE_ROOT / ".git").exists():
        return None
    try:
        changed = _git("status", "--porcelain", "--untracked-files=no", "--", ".", *(f":(exclude){path}" for path in NOT_CODE))
        untracked = _git("ls-files", "--others", "--exclude-standard", "--", "measures", "registry")
        return _git("rev-parse", "HEAD") + ("-dirty" if changed or untracked else "")
    except (OSError, subprocess.SubprocessError):
        return None
