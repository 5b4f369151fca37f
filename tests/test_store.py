"""The results store (keys, immediate commits, reopening) and the code digests and commit its results carry."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

import sharpbench.version
from sharpbench.evaluation.store import ResultStore, measure_key
from sharpbench.version import KERNEL_MODULES, git_commit, kernels_sha256

PROTOCOL = {"dataset": "digits", "n": 1024, "m": 128}
CODE = {"card_version": 1, "fixed": {"norm": "linf"}, "function": "pkg.mod:f", "source_sha256": "a" * 64,
        "kernels_sha256": "b" * 64}


def test_the_key_depends_on_name_params_protocol_and_code_but_not_on_order():
    key = measure_key("sharpness", {"rho": 0.1, "steps": 20}, PROTOCOL, CODE)
    assert key == measure_key("sharpness", {"steps": 20, "rho": 0.1}, dict(reversed(PROTOCOL.items())),
                              dict(reversed(CODE.items())))
    assert key != measure_key("sharpness", {"rho": 0.2, "steps": 20}, PROTOCOL, CODE)
    assert key != measure_key("other", {"rho": 0.1, "steps": 20}, PROTOCOL, CODE)
    assert key != measure_key("sharpness", {"rho": 0.1, "steps": 20}, {**PROTOCOL, "m": 256}, CODE)
    for field, changed in [("card_version", 2), ("fixed", {"norm": "l2"}), ("function", "pkg.mod:g"),
                           ("source_sha256", "c" * 64), ("kernels_sha256", "c" * 64)]:
        assert key != measure_key("sharpness", {"rho": 0.1, "steps": 20}, PROTOCOL, {**CODE, field: changed}), field


def test_the_key_is_stable_across_runs_and_machines():
    """The key is a pure function of sorted JSON: pinned here, so a change of its recipe (which would silently
    orphan every stored value) is a deliberate edit of this test."""
    key = measure_key("sharpness", {"rho": 0.1, "steps": 20}, PROTOCOL, CODE)
    assert key == "a563e17d739d19dd914ad770e549fa6a3b0e4f97f642662d2abcacdd942ffee0"


def test_a_value_is_visible_to_another_connection_as_soon_as_it_is_put(tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    store.put("k", "sha-a", 1.5, 0.25, measure="m", params={}, protocol=PROTOCOL, device="cpu", version="0")
    other = sqlite3.connect(tmp_path / "results.sqlite")
    assert other.execute("SELECT value FROM results").fetchall() == [(1.5,)]
    store.close()
    reopened = ResultStore(tmp_path / "results.sqlite")
    stored = reopened.get_many("k")
    assert stored["sha-a"].value == 1.5 and stored["sha-a"].seconds == 0.25
    assert reopened.get_many("another key") == {}


def test_the_kernel_digest_follows_the_kernel_files_contents_not_their_folder(tmp_path, monkeypatch):
    original = kernels_sha256()
    for name in KERNEL_MODULES:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(sharpbench.version.PACKAGE_DIR / name, tmp_path / name)
    monkeypatch.setattr(sharpbench.version, "PACKAGE_DIR", tmp_path)
    assert kernels_sha256() == original
    digests = set()
    for name in KERNEL_MODULES:
        text = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(text.replace(b"\n", b"\r\n", 1))  # one line ending: bytes as stored
        digests.add(kernels_sha256())
        (tmp_path / name).write_bytes(text)
    assert len(digests) == len(KERNEL_MODULES) and original not in digests
    assert kernels_sha256() == original


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture()
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with the top-level layout of sharpbench's, as the source root git_commit inspects."""
    for folder in ("measures", "registry/measures", "sharpbench", "leaderboard", "docs", "tests"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "kept.txt").write_text("committed\n")
    (tmp_path / ".gitignore").write_text("__pycache__/\n")
    (tmp_path / "README.md").write_text("# a front page\n")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "initial")
    monkeypatch.setattr(sharpbench.version, "_SOURCE_ROOT", tmp_path)
    return tmp_path


@pytest.mark.parametrize("path,dirty", [
    ("measures/new.py", True),                 # a new measure the commit does not hold
    ("registry/measures/new.yaml", True),      # a new card
    ("sharpbench/kept.txt", True),             # an edited tracked file
    ("leaderboard/kept.txt", False),           # published results are written after the run
    ("leaderboard/results/new.json", False),
    ("notes.txt", False),                      # untracked elsewhere: not code that computes values
    ("docs/kept.txt", False),                  # the docs, the tests and Markdown pages compute no value
    ("tests/kept.txt", False),
    ("README.md", False),
    ("pyproject.toml", True),                  # dependencies' versions can alter values
    ("measures/__pycache__/x.pyc", False),     # ignored by .gitignore
])
def test_the_commit_is_dirty_when_code_or_cards_differ_from_it(checkout, path, dirty):
    head = git(checkout, "rev-parse", "HEAD")
    assert git_commit() == head
    (checkout / path).parent.mkdir(parents=True, exist_ok=True)
    with (checkout / path).open("a") as file:
        file.write("changed\n")
    assert git_commit() == head + ("-dirty" if dirty else "")


def _put(store: ResultStore, key: str, sha: str, value: float) -> None:
    store.put(key, sha, value, 0.1, measure="m", params={}, protocol={}, device="cpu", version="0")


def test_a_claimed_checkpoint_is_skipped_by_another_run_until_its_value_is_put(tmp_path):
    first, second = ResultStore(tmp_path / "r.sqlite"), ResultStore(tmp_path / "r.sqlite")
    assert first.claim("k", ["a", "b"]) == {"a", "b"}
    assert second.claim("k", ["a", "b", "c"]) == {"c"}          # a and b are the first run's
    assert second.claimed_by_others("k") == {"a", "b"} and first.claimed_by_others("k") == {"c"}
    _put(first, "k", "a", 1.0)                                   # the value lands and the claim goes with it
    assert second.claimed_by_others("k") == {"b"}
    assert second.claim("k", ["a", "b"]) == {"c"}               # a is done, b still the first run's
    assert second.claim("k", ["a"], over_values=True) == {"a", "c"}   # a recompute claims done ones too
    assert first.claim("k", ["z"]) == {"b", "z"}                # another measure key is another namespace
    assert first.claim("other", ["a"]) == {"a"}


def test_the_claims_of_a_run_that_died_or_lapsed_are_taken_over(tmp_path):
    path = tmp_path / "r.sqlite"
    dead = _exited_pid()
    store, other = ResultStore(path), ResultStore(path)
    other.pid = dead                         # a run of this host whose process is gone
    assert other.claim("k", ["a"]) == {"a"}
    assert store.claim("k", ["a"]) == {"a"}
    lapsed = ResultStore(path)
    lapsed.host = "another-host"             # a run elsewhere: only its lease tells whether it lives
    assert lapsed.claim("k", ["b"]) == {"b"}
    assert store.claim("k", ["b"]) == {"a"}
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE claims SET expires = 0 WHERE checkpoint_sha256 = 'b'")
    assert store.claim("k", ["b"]) == {"a", "b"}


def test_holding_claims_renews_them_and_drops_what_is_left(tmp_path, monkeypatch):
    import sharpbench.evaluation.store as store_module

    monkeypatch.setattr(store_module, "_RENEW_SECONDS", 0.05)
    store = ResultStore(tmp_path / "r.sqlite")
    with pytest.raises(KeyError):
        with store.holding_claims():
            store.claim("k", ["a", "b"])
            _put(store, "k", "a", 1.0)
            with sqlite3.connect(tmp_path / "r.sqlite") as connection:
                connection.execute("UPDATE claims SET expires = 0")
            time.sleep(0.5)
            with sqlite3.connect(tmp_path / "r.sqlite") as connection:
                [[expires]] = connection.execute("SELECT expires FROM claims WHERE checkpoint_sha256 = 'b'")
            assert expires > 0                          # renewed by the thread
            raise KeyError("the run fails")
    assert ResultStore(tmp_path / "r.sqlite").claimed_by_others("k") == set()
    assert set(store.get_many("k")) == {"a"}


def _exited_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_every_kernel_module_is_in_the_digest():
    """A kernel file left out of the digest could change a value without changing its key (the store would serve
    the old one): every module of sharpbench/kernels/ is hashed."""
    kernels = Path(sharpbench.version.PACKAGE_DIR) / "kernels"
    files = {f"kernels/{path.name}" for path in kernels.glob("*.py") if path.name != "__init__.py"}
    assert files <= set(KERNEL_MODULES)
