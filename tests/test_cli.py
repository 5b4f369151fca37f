"""The command line end to end, on the tiny test collection: scores, JSON report, cache, resume, errors."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from scipy import stats

from sharpbench.cli import main

MEASURE = "sharpness-worst-linf-adaptive"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def evaluate(capsys, cards: Path, *extra: str) -> tuple[int, str, str]:
    return run_cli(capsys, "evaluate", "--measure", MEASURE, "--collection", "tiny-digits", "--include-path",
                   str(cards), "--no-progress", *extra)


def test_list_shows_every_measure_and_each_collections_state(capsys, tiny_collection_card):
    code, out, _ = run_cli(capsys, "list", "measures")
    assert code == 0
    assert MEASURE in out and "param-norm" in out and "Worst-case adaptive L-inf sharpness" in out
    code, out, _ = run_cli(capsys, "list", "collections", "--include-path", str(tiny_collection_card))
    assert code == 0
    assert "digits-mlp" in out and "not built" in out and "0 of up to 72" in out
    run_cli(capsys, "collection", "build", "tiny-digits", "--include-path", str(tiny_collection_card),
            "--no-progress")
    _, out, _ = run_cli(capsys, "list", "collections", "--include-path", str(tiny_collection_card))
    tiny_line = next(line for line in out.splitlines() if line.startswith("tiny-digits"))
    assert " built " in tiny_line and " 6 " in tiny_line


def test_the_json_report_recomputes_its_own_scores(capsys, tiny_collection_card, tmp_path):
    report_path = tmp_path / "report.json"
    code, out, err = evaluate(capsys, tiny_collection_card, "--json", str(report_path))
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert report["collection"] == "tiny-digits" and report["measure"] == MEASURE
    assert report["params"] == {"rho": 0.008, "steps": 20, "restarts": 1, "normalize_logits": False,
                                "scaling": "elementwise", "perturb_norm_layers": True, "perturb_head": True,
                                "bf16": False, "compile": False}
    assert report["n_models"] == len(report["models"]) == 6
    models = list(report["models"].values())
    values = [m["value"] for m in models]
    assert all(v >= 0 for v in values)
    targets = {
        "test_error": [m["test_error"] for m in models],
        "gen_gap": [m["test_error"] - m["train_error"] for m in models],
        "ood_error": [sum(m["ood_error"].values()) / len(m["ood_error"]) for m in models],
        "ood_error/noise": [m["ood_error"]["noise"] for m in models],
        "ood_error/shift": [m["ood_error"]["shift"] for m in models],
    }
    assert set(report["scores"]) == set(targets)
    for target, series in targets.items():
        expected = stats.kendalltau(values, series).statistic
        assert report["scores"][target]["kendall_tau"] == pytest.approx(expected), target
        assert f"{expected:+.3f}" in out
    assert "computed 6, reused 0" in out


def test_a_second_identical_run_computes_nothing_and_prints_the_same_scores(capsys, tiny_collection_card):
    _, first, _ = evaluate(capsys, tiny_collection_card)
    code, second, _ = evaluate(capsys, tiny_collection_card)
    assert code == 0
    assert "nothing computed: all 6 values came from the results store" in second
    table = lambda text: [line for line in text.splitlines() if line.startswith("|")]  # noqa: E731
    assert table(first) == table(second) and len(table(first)) == 7
    _, third, _ = evaluate(capsys, tiny_collection_card, "--set", "rho=0.004")
    assert "computed 6, reused 0" in third


def test_an_interrupted_run_keeps_finished_models_and_resumes(capsys, tiny_collection_card, tmp_path):
    cards = tmp_path / "cards"
    (cards / "measures").mkdir(parents=True)
    (cards / "collections").symlink_to(tiny_collection_card / "collections")
    (cards / "measures" / "flaky.py").write_text(textwrap.dedent("""\
        calls = 0

        def flaky(model, context):
            global calls
            calls += 1
            if calls == 3:
                raise KeyboardInterrupt
            return float(calls)
        """))
    (cards / "measures" / "flaky.yaml").write_text(
        "name: flaky\ndescription: stops on its third call\nfunction: flaky.py:flaky\nsource: tests\n"
        "higher_means: worse\n")
    args = ("evaluate", "--measure", "flaky", "--collection", "tiny-digits", "--include-path", str(cards),
            "--no-progress")
    code, _, err = run_cli(capsys, *args)
    assert code == 130
    assert "interrupted after 2 of 6 models" in err and "resumes" in err
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "computed 4, reused 2" in out


def test_a_killed_process_keeps_its_finished_models(tiny_collection_card, tmp_path, sharpbench_home):
    cards = tmp_path / "cards"
    (cards / "measures").mkdir(parents=True)
    (cards / "collections").symlink_to(tiny_collection_card / "collections")
    (cards / "measures" / "slow.py").write_text("import time\n\ndef slow(model, context):\n"
                                                "    time.sleep(0.4)\n    return 1.0\n")
    (cards / "measures" / "slow.yaml").write_text(
        "name: slow\ndescription: sleeps\nfunction: slow.py:slow\nsource: tests\nhigher_means: worse\n")
    command = [sys.executable, "-m", "sharpbench.cli", "evaluate", "--measure", "slow", "--collection",
               "tiny-digits", "--include-path", str(cards), "--no-progress"]
    env = {**os.environ, "SHARPBENCH_HOME": str(sharpbench_home)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    database = sharpbench_home / "results.sqlite"
    deadline = time.monotonic() + 120
    stored = 0
    while time.monotonic() < deadline and stored < 2:
        time.sleep(0.1)
        if database.exists():
            try:
                stored = sqlite3.connect(database).execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.OperationalError:
                stored = 0
    process.kill()
    process.wait()
    assert 2 <= stored < 6
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    kept = sqlite3.connect(database).execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert kept == 6
    assert "reused" in finished.stdout and "reused 0" not in finished.stdout


def test_a_sweep_reports_each_value_and_matches_single_runs(capsys, tiny_collection_card, tmp_path):
    code, out, err = evaluate(capsys, tiny_collection_card, "--sweep", "rho=0.002,0.008", "--json",
                              str(tmp_path / "sweep.json"))
    assert code == 0, err
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert sweep["sweep"] == {"parameter": "rho", "values": [0.002, 0.008]}
    assert [report["params"]["rho"] for report in sweep["reports"]] == [0.002, 0.008]
    assert "sweep of rho: Kendall tau-b" in out
    evaluate(capsys, tiny_collection_card, "--set", "rho=0.008", "--json", str(tmp_path / "single.json"))
    single = json.loads((tmp_path / "single.json").read_text())
    assert single["models"] == sweep["reports"][1]["models"]
    small, large = ([m["value"] for m in report["models"].values()] for report in sweep["reports"])
    assert all(a < b for a, b in zip(small, large))  # a larger box holds a larger maximum
    code, out, err = evaluate(capsys, tiny_collection_card, "--sweep", "rho=resnet18-cifar10", "--json",
                              str(tmp_path / "grid.json"))
    assert code == 0, err
    assert json.loads((tmp_path / "grid.json").read_text())["sweep"]["values"] == [0.001, 0.002, 0.004, 0.008]


def test_grouped_and_one_at_a_time_evaluation_agree(capsys, tiny_collection_card, tmp_path, monkeypatch):
    for flag, name in (((), "grouped"), (("--no-grouping",), "single")):
        monkeypatch.setenv("SHARPBENCH_HOME", str(tmp_path / name))  # separate result stores
        code, _, err = evaluate(capsys, tiny_collection_card, "--measure", "sharpness-avg-l2-adaptive", *flag,
                                "--json", str(tmp_path / f"{name}.json"))
        assert code == 0, err
    grouped, single = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("grouped", "single"))
    for model_id, entry in grouped["models"].items():
        assert entry["value"] == pytest.approx(single["models"][model_id]["value"], rel=1e-6)


@pytest.mark.parametrize("args,message", [
    (("evaluate", "--measure", "sharpness-worst-linf-adaptiv"), "Did you mean: sharpness-worst-linf-adaptive"),
    (("evaluate", "--measure", MEASURE, "--collection", "cifar-100"), "unknown collection 'cifar-100'"),
    (("evaluate", "--measure", MEASURE, "--set", "rho"), "expected key=value"),
    (("evaluate", "--measure", MEASURE, "--set", "radius=1"), "no parameter 'radius'"),
    (("evaluate", "--measure", MEASURE, "--sweep", "rho=vit-imagenet"), "no grid 'vit-imagenet'"),
    (("evaluate", "--measure", MEASURE, "--sweep", "rho=0.1,big"), "expects float"),
    (("evaluate", "--measure", MEASURE, "--sweep", "rho"), "expected PARAM=V1,V2"),
    (("list", "measures", "--include-path", "/no/such/folder"), "no such folder"),
])
def test_user_mistakes_get_one_clear_message_and_status_2(capsys, args, message):
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_the_console_script_is_installed():
    result = subprocess.run(["sharpbench", "list", "measures"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert result.returncode == 0 and MEASURE in result.stdout
