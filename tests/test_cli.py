"""The command line end to end, on the tiny test collection: scores, JSON report, cache, resume, errors."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path


import pytest
import torch
from legacy import strip_outcomes
from scipy import stats

import sharpbench.cards.measure_card
import sharpbench.version
from sharpbench.cli.main import main
from sharpbench.collection.collection import open_collection
from sharpbench.evaluation.store import ResultStore
from sharpbench.evaluation.sweep import Sweep, evaluate_sweep
from sharpbench.leaderboard.results import validate_result
from sharpbench.paths import sharpbench_home
from sharpbench.cards.discovery import Registry

MEASURE = "sharpness-worst-linf-adaptive"
REPO = Path(__file__).resolve().parents[1]

WEIGHT_SUMS = """\
def total(model, context, *, scale):
    return scale * float(sum(p.detach().sum() for p in model.parameters()))

def total_squares(model, context, *, scale):
    return scale * float(sum(p.detach().pow(2).sum() for p in model.parameters()))
"""


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
    assert re.search(r"[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]", tiny_line), tiny_line  # the noise ceiling


def test_the_json_report_recomputes_its_own_scores(capsys, tiny_collection_card, tmp_path):
    report_path = tmp_path / "report.json"
    code, out, err = evaluate(capsys, tiny_collection_card, "--json", str(report_path))
    assert code == 0, err
    report = json.loads(report_path.read_text())
    validate_result(report, report_path)  # the document that --publish would write
    assert report["collection"] == "tiny-digits" and report["measure"] == MEASURE
    assert report["params"] == {"rho": 0.008, "steps": 20, "restarts": 1, "normalize_logits": False,
                                "scaling": "elementwise", "perturb_norm_layers": True, "perturb_head": True,
                                "bf16": False, "compile": False, "reference_compat": False}
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
        "test_loss": [m["test_loss"] for m in models],
        "ood_loss": [sum(m["ood_loss"].values()) / len(m["ood_loss"]) for m in models],
        "ood_loss/noise": [m["ood_loss"]["noise"] for m in models],
        "ood_loss/shift": [m["ood_loss"]["shift"] for m in models],
    }
    assert set(report["scores"]) == set(targets)
    for target, series in targets.items():
        expected = stats.kendalltau(values, series).statistic
        score = report["scores"][target]
        assert score["kendall_tau"] == pytest.approx(expected), target
        assert score["oriented"]["kendall_tau"] == pytest.approx(expected), target   # higher_means: worse
        assert f"{expected:+.3f}" in out
        # the tiny collection keeps per-example outcomes: every target has a ceiling and both intervals
        assert score["noise_ceiling"] is not None and len(score["kendall_tau_ci_models"]) == 2, target
    assert report["orientation"] == 1 and report["scoring"]["examples_resampled"]
    assert len(report["replicates"]["test_error"]) == report["scoring"]["bootstrap_resamples"]
    assert "computed 6, reused 0" in out


def test_evaluate_gives_a_collection_built_before_outcomes_its_outcomes_and_test_set_intervals(
        capsys, tiny_collection_card, tmp_path, monkeypatch):
    run_cli(capsys, "collection", "build", "tiny-digits", "--include-path", str(tiny_collection_card), "--no-progress")
    registry = Registry.discover([tiny_collection_card])
    collection = open_collection(registry.collection("tiny-digits"), sharpbench_home())
    checkpoints = {m.id: m.sha256 for m in collection.models}
    strip_outcomes(collection)
    monkeypatch.setattr("sharpbench.collection.sources.train_model", None)   # any training would fail
    report_path = tmp_path / "report.json"
    code, _, err = evaluate(capsys, tiny_collection_card, "--json", str(report_path))
    assert code == 0, err
    assert "has no per-example outcomes yet" in err
    report = json.loads(report_path.read_text())
    assert report["scoring"]["examples_resampled"] and report["scores"]["test_error"]["noise_ceiling"] is not None
    reopened = open_collection(registry.collection("tiny-digits"), sharpbench_home())
    assert reopened.has_outcomes and {m.id: m.sha256 for m in reopened.models} == checkpoints


def test_a_second_identical_run_computes_nothing_and_prints_the_same_scores(capsys, tiny_collection_card):
    _, first, _ = evaluate(capsys, tiny_collection_card)
    code, second, _ = evaluate(capsys, tiny_collection_card)
    assert code == 0
    assert "nothing computed: all 6 values came from the results store" in second
    table = lambda text: [line for line in text.splitlines() if line.startswith("|")]  # noqa: E731
    assert table(first) == table(second) and len(table(first)) == 22   # two tables: header, rule, 9 targets
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
    command = [sys.executable, "-m", "sharpbench.cli.main", "evaluate", "--measure", "slow", "--collection",
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
    grid = json.loads((tmp_path / "grid.json").read_text())
    assert grid["sweep"]["values"] == [0.001, 0.002, 0.004, 0.008]

    # the same sweep from Python: the same values, and the same value per model (served by the same store)
    registry = Registry.discover([tiny_collection_card])
    spec = registry.measure(MEASURE)
    sweep = Sweep.of(spec, "rho", "resnet18-cifar10")
    assert list(sweep.values) == grid["sweep"]["values"]
    store = ResultStore(sharpbench_home() / "results.sqlite")
    try:
        collection = open_collection(registry.collection("tiny-digits"), sharpbench_home())
        evaluations = list(evaluate_sweep(spec, collection, store, sweep, device=torch.device("cpu"), progress=False))
    finally:
        store.close()
    assert [evaluation.computed for evaluation in evaluations] == [0, 0, 0, 0]
    assert [evaluation.params for evaluation in evaluations] == [report["params"] for report in grid["reports"]]
    assert [evaluation.values for evaluation in evaluations] == \
        [{model_id: entry["value"] for model_id, entry in report["models"].items()} for report in grid["reports"]]


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
    (("evaluate", "--measure", MEASURE, "--collection", "cifar-100"), "Run `sharpbench list collections` to see all"),
    (("evaluate", "--measure", MEASURE, "--set", "rho"), "expected key=value"),
    (("evaluate", "--measure", MEASURE, "--set", "radius=1"), "no parameter 'radius'"),
    (("evaluate", "--measure", MEASURE, "--set", "rho=inf"), "parameter 'rho' expects a finite number > 0, got 'inf'"),
    (("evaluate", "--measure", MEASURE, "--set", "rho=nan"), "parameter 'rho' expects a finite number > 0, got 'nan'"),
    (("evaluate", "--measure", MEASURE, "--set", "rho=-1"), "parameter 'rho' expects a finite number > 0, got '-1'"),
    (("evaluate", "--measure", MEASURE, "--set", "steps=0"), "parameter 'steps' expects an integer >= 1, got '0'"),
    (("evaluate", "--measure", MEASURE, "--set", "scaling=layerwise"),
     "parameter 'scaling' expects one of ['elementwise', 'filterwise'], got 'layerwise'"),
    (("evaluate", "--measure", MEASURE, "--sweep", "rho=0.1,-0.1"), "expects a finite number > 0, got '-0.1'"),
    (("evaluate", "--measure", MEASURE, "--sweep", "rho=vit-imagenet"), "no grid 'vit-imagenet'"),
    (("evaluate", "--measure", MEASURE, "--sweep", "rho=0.1,big"), "expects a number, got 'big'"),
    (("evaluate", "--measure", MEASURE, "--sweep", "rho"), "expected PARAM=V1,V2"),
    (("list", "measures", "--include-path", "/no/such/folder"), "no such folder"),
])
def test_user_mistakes_get_one_clear_message_and_status_2(capsys, args, message):
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_a_parameter_outside_its_bounds_is_refused_before_anything_is_built_or_stored(capsys, sharpbench_home):
    code, _, err = run_cli(capsys, "evaluate", "--measure", MEASURE, "--set", "steps=0")
    assert code == 2 and "parameter 'steps' expects an integer >= 1, got '0'" in err
    assert not (sharpbench_home / "collections").exists() and not (sharpbench_home / "results.sqlite").exists()


def test_the_console_script_is_installed():
    result = subprocess.run(["sharpbench", "list", "measures"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert result.returncode == 0 and MEASURE in result.stdout


def weight_sum_folder(root: Path, collections: Path, *, function: str = "total", extra: str = "fixed: {scale: 1.0}\n",
                      source: str = WEIGHT_SUMS) -> Path:
    """An --include-path folder with the tiny collection and a cheap measure 'weight-sum' in sums.py."""
    (root / "measures").mkdir(parents=True, exist_ok=True)
    if not (root / "collections").exists():
        (root / "collections").symlink_to(collections / "collections")
    (root / "measures" / "sums.py").write_text(source, encoding="utf-8")
    (root / "measures" / "weight-sum.yaml").write_text(
        f"name: weight-sum\ndescription: sum of the weights\nfunction: sums.py:{function}\nsource: tests\n"
        f"higher_means: worse\n{extra}", encoding="utf-8")
    return root


def evaluate_weight_sum(capsys, folder: Path, report: Path, *extra: str) -> tuple[str, dict[str, float]]:
    code, out, err = run_cli(capsys, "evaluate", "--measure", "weight-sum", "--collection", "tiny-digits",
                             "--include-path", str(folder), "--no-progress", "--json", str(report), *extra)
    assert code == 0, err
    models = json.loads(report.read_text())["models"]
    return out, {model_id: entry["value"] for model_id, entry in models.items()}


def test_each_change_of_card_or_code_recomputes_and_nothing_else_does(capsys, tiny_collection_card, tmp_path,
                                                                      monkeypatch):
    folder = weight_sum_folder(tmp_path / "cards", tiny_collection_card)
    report = tmp_path / "report.json"
    out, first = evaluate_weight_sum(capsys, folder, report)
    assert "computed 6, reused 0" in out
    out, again = evaluate_weight_sum(capsys, folder, report)
    assert "nothing computed" in out and again == first

    weight_sum_folder(folder, tiny_collection_card, extra="fixed: {scale: 2.0}\n")  # the card's fixed section
    out, doubled = evaluate_weight_sum(capsys, folder, report)
    assert "computed 6, reused 0" in out
    assert doubled == pytest.approx({model_id: 2 * value for model_id, value in first.items()})
    steps = {
        "function": dict(function="total_squares", extra="fixed: {scale: 2.0}\n"),
        "version": dict(function="total_squares", extra="fixed: {scale: 2.0}\nversion: 2\n"),
        "source": dict(function="total_squares", extra="fixed: {scale: 2.0}\nversion: 2\n",
                       source=WEIGHT_SUMS + "# an edit that changes no value\n"),
    }
    for change, files in steps.items():
        weight_sum_folder(folder, tiny_collection_card, **files)
        out, _ = evaluate_weight_sum(capsys, folder, report)
        assert "computed 6, reused 0" in out, change

    kernels = tmp_path / "kernels"
    kernels.mkdir()
    for name in sharpbench.version.KERNEL_MODULES:
        (kernels / name).parent.mkdir(exist_ok=True)
        shutil.copy(sharpbench.version.PACKAGE_DIR / name, kernels / name)
    monkeypatch.setattr(sharpbench.version, "PACKAGE_DIR", kernels)
    out, _ = evaluate_weight_sum(capsys, folder, report)
    assert "nothing computed" in out  # the same kernel files elsewhere are the same kernels
    with (kernels / "kernels" / "ascent.py").open("a", encoding="utf-8") as file:
        file.write("# a kernel edit\n")
    out, _ = evaluate_weight_sum(capsys, folder, report)
    assert "computed 6, reused 0" in out


def test_recompute_ignores_and_overwrites_stored_values(capsys, tiny_collection_card, tmp_path, sharpbench_home,
                                                        monkeypatch):
    folder = weight_sum_folder(tmp_path / "cards", tiny_collection_card)
    report = tmp_path / "report.json"
    digests = []
    monkeypatch.setattr(sharpbench.cards.measure_card, "kernels_sha256",
                        lambda: digests.append(sharpbench.version.kernels_sha256()) or digests[-1])
    _, true_values = evaluate_weight_sum(capsys, folder, report)
    assert len(digests) == 1  # the code is hashed once per evaluate, not once per model
    database = sharpbench_home / "results.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE results SET value = 1000.0")
    out, served = evaluate_weight_sum(capsys, folder, report)
    assert "nothing computed" in out and set(served.values()) == {1000.0}
    out, recomputed = evaluate_weight_sum(capsys, folder, report, "--recompute")
    assert "computed 6, reused 0" in out and recomputed == true_values
    stored = sqlite3.connect(database).execute("SELECT value FROM results").fetchall()
    assert sorted(value for (value,) in stored) == sorted(true_values.values())


def test_a_misspelled_function_is_an_error_even_when_every_value_is_stored(capsys, tiny_collection_card, tmp_path):
    folder = weight_sum_folder(tmp_path / "cards", tiny_collection_card)
    evaluate_weight_sum(capsys, folder, tmp_path / "report.json")
    weight_sum_folder(folder, tiny_collection_card, function="totl")
    code, out, err = run_cli(capsys, "evaluate", "--measure", "weight-sum", "--collection", "tiny-digits",
                             "--include-path", str(folder), "--no-progress")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "weight-sum.yaml: field 'function'" in err and "'totl'" in err and "sums.py:totl" in err


def test_a_misspelled_function_fails_before_an_unbuilt_collection_is_built(capsys, tiny_collection_card, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("SHARPBENCH_HOME", str(tmp_path / "empty-home"))
    folder = weight_sum_folder(tmp_path / "cards", tiny_collection_card, function="totl")
    code, _, err = run_cli(capsys, "evaluate", "--measure", "weight-sum", "--collection", "tiny-digits",
                           "--include-path", str(folder), "--no-progress")
    assert code == 2 and "'totl'" in err and "building it now" not in err
    assert not (tmp_path / "empty-home" / "collections" / "tiny-digits").exists()


def test_a_broken_implementation_with_an_unchanged_source_is_an_error_not_a_cache_hit(
        capsys, tiny_collection_card, tmp_path, monkeypatch):
    """The hashed module imports a helper whose file the key does not cover: breaking the helper leaves the key
    as it was, and the run must still import the implementation and fail."""
    package = tmp_path / "site" / "sharpbench_test_helped"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "helper.py").write_text("factor = 1.0\n", encoding="utf-8")
    (package / "measure.py").write_text(WEIGHT_SUMS + "\n\n"
                                        "from sharpbench_test_helped.helper import factor as scale\n\n\n"
                                        "def helped(model, context):\n"
                                        "    return total(model, context, scale=scale)\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    folder = weight_sum_folder(tmp_path / "cards", tiny_collection_card, extra="")
    card = folder / "measures" / "weight-sum.yaml"
    card.write_text(card.read_text().replace("sums.py:total", "sharpbench_test_helped.measure:helped"))
    evaluate_weight_sum(capsys, folder, tmp_path / "report.json")
    (package / "helper.py").write_text("factor = 1.0 +\n", encoding="utf-8")  # a syntax error
    for name in [name for name in sys.modules if name.startswith("sharpbench_test_helped")]:
        monkeypatch.delitem(sys.modules, name)  # as in a new process
    code, _, err = run_cli(capsys, "evaluate", "--measure", "weight-sum", "--collection", "tiny-digits",
                           "--include-path", str(folder), "--no-progress")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "weight-sum.yaml: field 'function'" in err and "SyntaxError" in err
    assert "sharpbench_test_helped.measure:helped" in err


def test_cards_of_one_name_in_two_include_paths_are_refused_and_never_share_values(capsys, tiny_collection_card,
                                                                                    tmp_path):
    first = weight_sum_folder(tmp_path / "first", tiny_collection_card)
    second = weight_sum_folder(tmp_path / "second", tiny_collection_card,
                               source=WEIGHT_SUMS.replace("p.detach().sum()", "p.detach().abs().sum()"))
    (tmp_path / "measures-only").mkdir()
    shutil.copytree(second / "measures", tmp_path / "measures-only" / "measures")
    code, _, err = run_cli(capsys, "list", "measures", "--include-path", str(first), "--include-path",
                           str(tmp_path / "measures-only"))
    assert code == 2
    assert str(first / "measures" / "weight-sum.yaml") in err
    assert str(tmp_path / "measures-only" / "measures" / "weight-sum.yaml") in err

    report = tmp_path / "report.json"
    _, values_first = evaluate_weight_sum(capsys, first, report)
    out, values_second = evaluate_weight_sum(capsys, second, report)
    assert "computed 6, reused 0" in out and values_second != values_first
    copy = weight_sum_folder(tmp_path / "copy", tiny_collection_card)  # the first folder's files, elsewhere
    out, values_copy = evaluate_weight_sum(capsys, copy, report)
    assert "nothing computed" in out and values_copy == values_first


def test_a_result_names_its_implementation_and_its_hashes(capsys, tiny_collection_card, tmp_path):
    report_path, board = tmp_path / "report.json", tmp_path / "board"
    code, out, err = run_cli(capsys, "evaluate", "--measure", "param-norm", "--collection", "tiny-digits",
                             "--include-path", str(tiny_collection_card), "--no-progress", "--json",
                             str(report_path), "--publish", "--leaderboard-dir", str(board))
    assert code == 0, err
    implementation = json.loads(report_path.read_text())["provenance"]["implementation"]
    assert implementation == {
        "function": "sharpbench_measures.norms:param_norm",
        "origin": "in-tree module measures/norms.py",
        "source_sha256": hashlib.sha256((REPO / "measures" / "norms.py").read_bytes()).hexdigest(),
        "kernels_sha256": sharpbench.version.kernels_sha256(),
        "card_version": 1,
    }
    published = board / "results" / "tiny-digits" / "param-norm.json"
    document = json.loads(published.read_text())
    validate_result(document, published)
    assert document == json.loads(report_path.read_text())  # --json writes the published document

    folder = weight_sum_folder(tmp_path / "cards", tiny_collection_card, extra="fixed: {scale: 1.0}\nversion: 3\n")
    evaluate_weight_sum(capsys, folder, report_path)
    implementation = json.loads(report_path.read_text())["provenance"]["implementation"]
    assert implementation["origin"] == f"include path {folder.resolve()}"
    assert implementation["card_version"] == 3 and implementation["function"] == "sums.py:total"
    assert implementation["source_sha256"] == hashlib.sha256(WEIGHT_SUMS.encode()).hexdigest()


def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"sharpbench {sharpbench.version.__version__}"


def test_the_same_include_path_twice_is_read_once(capsys, tiny_collection_card, tmp_path, monkeypatch):
    folder = weight_sum_folder(tmp_path / "mine", tiny_collection_card)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "list", "measures", "--include-path", str(folder), "--include-path", "mine/",
                             "--include-path", str(tmp_path / "mine" / ".." / "mine"))
    assert code == 0, err
    assert "weight-sum" in out


def test_a_damaged_manifest_is_named_before_any_build(capsys, tmp_path: Path, tiny_collection_card: Path):
    folder = weight_sum_folder(tmp_path / "cards", tiny_collection_card)
    evaluate_weight_sum(capsys, folder, tmp_path / "report.json")
    manifest = sharpbench_home() / "collections" / "tiny-digits" / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:100])                        # truncated, as by a full disk
    code, _, err = run_cli(capsys, "evaluate", "--measure", "weight-sum", "--collection", "tiny-digits",
                           "--include-path", str(folder), "--no-progress")
    assert code == 2 and "Traceback" not in err
    assert "is not valid JSON" in err and "sharpbench collection build tiny-digits --force" in err
    assert "not built yet" not in err                                       # it was never "building it now"


def _without_privileges() -> list[str]:
    """A command prefix under which file permissions hold: none for a normal user; for root, setpriv dropping every
    capability (root otherwise writes through a read-only folder)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be made to bind")
    return ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]


def test_a_read_only_home_serves_stored_values_and_refuses_to_compute_before_computing(
        capsys, tiny_collection_card, sharpbench_home):
    assert evaluate(capsys, tiny_collection_card, "--set", "rho=0.01")[0] == 0
    for path in [sharpbench_home, *sharpbench_home.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        command = [*_without_privileges(), sys.executable, "-m", "sharpbench.cli.main", "evaluate", "--measure",
                   MEASURE, "--collection", "tiny-digits", "--include-path", str(tiny_collection_card),
                   "--no-progress"]
        served = subprocess.run(command + ["--set", "rho=0.01"], capture_output=True, text=True, timeout=300)
        assert served.returncode == 0, served.stderr
        assert "nothing computed: all" in served.stdout
        refused = subprocess.run(command + ["--set", "rho=0.02"], capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert f"results store {sharpbench_home / 'results.sqlite'} is read-only: the " in refused.stderr
        assert "Set SHARPBENCH_HOME=DIR to a writable folder" in refused.stderr
    finally:
        for path in [sharpbench_home, *sharpbench_home.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


@pytest.mark.parametrize("option,message", [
    (("--device", "gpu"), "device 'gpu' is not a torch device name (such as cpu, cuda or cuda:1); this machine has"),
    (("--device", "cuda:7"), "device 'cuda:7' is not available: this machine has cpu"),
    (("--json", "{folder}"), "--json {folder} is a folder; give a file path, e.g. {folder}/report.json"),
    (("--json", "{file}/report.json"), "--json {file}/report.json: {file} is a file, not a folder"),
    (("--publish", "--leaderboard-dir", "{file}"), "--leaderboard-dir {file} is a file, not a folder"),
])
def test_an_unusable_device_or_output_is_refused_before_anything_is_computed(capsys, tmp_path, sharpbench_home,
                                                                              tiny_collection_card, option, message):
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file").write_text("x")
    names = {"folder": tmp_path / "a-folder", "file": tmp_path / "a-file"}
    code, _, err = evaluate(capsys, tiny_collection_card, *(part.format(**names) for part in option))
    assert code == 2 and "Traceback" not in err and message.format(**names) in err
    assert not (sharpbench_home / "collections").exists() and not (sharpbench_home / "results.sqlite").exists()


def test_collection_build_refuses_a_device_this_machine_lacks_before_training(capsys, tiny_collection_card,
                                                                              sharpbench_home):
    code, _, err = run_cli(capsys, "collection", "build", "tiny-digits", "--include-path", str(tiny_collection_card),
                           "--device", "cuda:7")
    assert code == 2 and "device 'cuda:7' is not available" in err and "Pass --device cpu" in err
    assert not (sharpbench_home / "collections" / "tiny-digits").exists()


def test_a_reader_that_goes_away_ends_the_command_quietly():
    reader = subprocess.Popen([sys.executable, "-m", "sharpbench.cli.main", "list", "measures"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.close()            # before anything is written, as `| head -0` does: the first write fails
    err = reader.stderr.read().decode()
    assert reader.wait(timeout=120) == 141 and err == ""


def test_a_measure_that_alters_the_batches_stops_at_the_first_model_of_a_collection(capsys, tiny_collection_card,
                                                                                    tmp_path, sharpbench_home):
    (tmp_path / "measures").mkdir()
    (tmp_path / "measures" / "scales.py").write_text(
        "def scales(model, context):\n    context.batches[0][0].mul_(1000.0)\n    return 1.0\n")
    (tmp_path / "measures" / "scales-batches.yaml").write_text(
        "name: scales-batches\ndescription: x\nfunction: scales.py:scales\nsource: x\nhigher_means: worse\n")
    code, _, err = run_cli(capsys, "evaluate", "--measure", "scales-batches", "--collection", "tiny-digits",
                           "--include-path", str(tiny_collection_card), "--include-path", str(tmp_path),
                           "--no-progress")
    assert code == 2 and "changed the sharpness batches in place (batch 0's inputs) on model '000" in err
    with sqlite3.connect(sharpbench_home / "results.sqlite") as connection:
        assert connection.execute("SELECT count(*) FROM results").fetchone() == (0,)


def test_collection_show_prints_the_card_with_its_parameter_count_and_builds_nothing(capsys, tiny_collection_card,
                                                                                      sharpbench_home, tmp_path):
    code, out, _ = run_cli(capsys, "collection", "show", "tiny-digits", "--json", "--include-path",
                           str(tiny_collection_card))
    summary = json.loads(out)
    assert code == 0 and summary["name"] == "tiny-digits"
    assert summary["ood"] == ["noise", "shift"] and summary["num_classes"] == 10
    assert summary["architecture"]["parameters"] == (64 * 16 + 16) + (16 * 10 + 10)    # the MLP 64-16-10
    assert summary["hyperparameters"] == {"learning_rate": [0.05, 0.1, 0.2], "batch_size": [32, 64]}
    assert summary["n_models"] == 6 and summary["protocol"] == {"n": 64, "m": 16, "seed": 0}
    assert not (sharpbench_home / "collections").exists()
    study = tmp_path / "study" / "collections"
    study.mkdir(parents=True)
    (study / "preact.yaml").write_text(TINY_DIGITS_PREACT, encoding="utf-8")
    code, out, _ = run_cli(capsys, "collection", "show", "preact", "--include-path", str(study.parent))
    assert code == 0 and "11,172,170 parameters" in out    # the study's PreActResNet-18, 10 classes


TINY_DIGITS_PREACT = """\
name: preact
description: the study's PreActResNet-18 on CIFAR-10 (shown, never built here)
dataset: {name: cifar10}
ood_shifts: []
architecture: {kind: preact_resnet, image_shape: [3, 32, 32]}
grid: {learning_rate: [0.1]}
seeds: [0]
training: {optimizer: sgd, epochs: 1, batch_size: 128}
convergence: {max_train_error: 1.0}
sharpness_data: {n: 64, m: 16, seed: 0}
"""
