"""Several evaluations on one results store at once: every value computed once, none lost, no "database is
locked", and the scores of a single run."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from sharpbench.cards.discovery import Registry
from sharpbench.collection.builder import build_collection
from sharpbench.collection.collection import open_collection

LOGGED = '''
import os
import time


def logged(model, context, *, log, pause):
    """The weight norm, after writing which model it computes (by that norm) to `log`."""
    norm = float(sum(p.detach().double().pow(2).sum() for p in model.parameters())) ** 0.5
    with open(log, "a") as file:
        file.write(f"{os.getpid()} {norm!r}\\n")
    time.sleep(pause)
    return norm
'''


def _cards(tiny_collection_card: Path, folder: Path, logs: Path) -> Path:
    shutil.copytree(tiny_collection_card, folder)
    (folder / "measures").mkdir()
    (folder / "measures" / "logged.py").write_text(LOGGED, encoding="utf-8")
    for name in ("logged-a", "logged-b"):
        (folder / "measures" / f"{name}.yaml").write_text(textwrap.dedent(f"""\
            name: {name}
            description: the weight norm, logging each computation
            function: logged.py:logged
            source: the tests
            higher_means: worse
            params:
              log: {{type: str, default: '{logs / name}.log'}}
              pause: {{type: float, default: 1.0}}
            """), encoding="utf-8")
    return folder


def _scores(stdout: str) -> list[str]:
    """The printed table of scores (its rows, without the run's counts)."""
    return [line for line in stdout.splitlines() if line.startswith("|")]


def test_concurrent_runs_compute_each_value_once_and_score_as_one_run(tiny_collection_card, sharpbench_home,
                                                                      tmp_path):
    cards = _cards(tiny_collection_card, tmp_path / "cards", tmp_path)
    collection = open_collection(Registry.discover([cards]).collection("tiny-digits"))
    build_collection(collection, progress=False)
    models = len(collection.models)
    environment = {**os.environ, "SHARPBENCH_HOME": str(sharpbench_home)}

    def command(measure: str) -> list[str]:
        return [sys.executable, "-m", "sharpbench.cli.main", "evaluate", "--measure", measure, "--collection",
                "tiny-digits", "--include-path", str(cards), "--no-progress", "--no-grouping"]

    runs = [subprocess.Popen(command(measure), env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for measure in ("logged-a", "logged-a", "logged-b")]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (out, err) in zip(runs, outputs):
        assert run.returncode == 0, err
        assert "locked" not in err
    log_a = (tmp_path / "logged-a.log").read_text().splitlines()
    log_b = (tmp_path / "logged-b.log").read_text().splitlines()
    assert len(log_a) == len(log_b) == models                      # each model computed once per measure
    assert len({line.split()[1] for line in log_a}) == models      # and every model, not one twice
    counts = [re.search(r"computed (\d+), reused (\d+).*?(?:, (\d+) computed meanwhile by another run)?$",
                        out, re.M) for out, _ in outputs[:2]]
    computed = [int(count.group(1)) for count in counts]
    elsewhere = [int(count.group(3) or 0) for count in counts]
    # the run that claimed the models first computed them; the other waited for their values
    assert sorted(zip(computed, elsewhere)) == [(0, models), (models, 0)]
    stored = sqlite3.connect(sharpbench_home / "results.sqlite").execute(
        "SELECT measure, count(*) FROM results GROUP BY measure ORDER BY measure").fetchall()
    assert stored == [("logged-a", models), ("logged-b", models)]
    assert sqlite3.connect(sharpbench_home / "results.sqlite").execute("SELECT count(*) FROM claims").fetchone() \
        == (0,)
    single = subprocess.run(command("logged-a"), env=environment, capture_output=True, text=True, timeout=300)
    assert "nothing computed" in single.stdout
    assert _scores(outputs[0][0]) == _scores(outputs[1][0]) == _scores(single.stdout)
