"""The leaderboard: published files (schema, provenance, variants), the committed outputs, escaping, order."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest

from sharpbench.cli.main import main
from sharpbench.leaderboard.build import build, render
from sharpbench.leaderboard.plots import scatter_svg
from sharpbench.leaderboard.tables import tracked_hparam
from sharpbench.leaderboard.results import LeaderboardError, dump, load_results, validate_result
from sharpbench.scoring.metrics import kendall_tau

REPO_LEADERBOARD = Path(__file__).resolve().parents[1] / "leaderboard"


@pytest.fixture(scope="module")
def published(tiny_collection_card: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A leaderboard folder with train-loss and param-norm published on the tiny collection, and param-norm
    once more under another protocol (--n 32)."""
    root = tmp_path_factory.mktemp("board") / "leaderboard"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHARPBENCH_HOME", str(root.parent / "home"))
        for measure, *extra in [("train-loss", "--json", str(root.parent / "report.json")), ("param-norm",),
                                ("param-norm", "--n", "32")]:
            code = main(["evaluate", "--measure", measure, "--collection", "tiny-digits", "--include-path",
                         str(tiny_collection_card), "--no-progress", "--publish", "--leaderboard-dir", str(root),
                         *extra])
            assert code == 0
    return root


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_every_committed_result_file_matches_the_schema():
    files = sorted((REPO_LEADERBOARD / "results").glob("*/*.json"))
    assert files, "no committed results"
    for path in files:
        validate_result(read(path), path)
    assert len(load_results(REPO_LEADERBOARD)) == len(files)


def test_the_committed_tables_and_page_are_what_build_makes_from_the_committed_results():
    for path, text in render(REPO_LEADERBOARD).items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} is stale: run `sharpbench leaderboard build` and commit the result")


def test_the_json_report_has_every_metric_under_each_target(published: Path):
    report = read(published.parent / "report.json")
    assert set(report["tau_vs_hparams"]) == {"learning_rate", "batch_size"}
    for target, score in report["scores"].items():
        assert {"kendall_tau", "kendall_tau_ci", "kendall_tau_ci_models", "spearman", "granulated_kendall",
                "granulated_kendall_per_hparam", "conditional_mi", "conditional_mi_pgdl", "oriented",
                "noise_ceiling", "noise_ceiling_ci", "kendall_tau_of_ceiling", "robust_sign_error"} <= set(score), target
        assert len(score["kendall_tau_ci"]) == 2 and len(score["kendall_tau_ci_models"]) == 2
        assert set(score["granulated_kendall_per_hparam"]) == {"learning_rate", "batch_size"}
    # the published file is the same report, plus the cards' text and the variant
    published_scores = read(published / "results" / "tiny-digits" / "train-loss.json")["scores"]
    assert published_scores == report["scores"]


def test_a_published_file_has_values_scores_and_provenance(published: Path):
    document = read(published / "results" / "tiny-digits" / "param-norm.json")
    validate_result(document, "param-norm.json")
    models = list(document["models"].values())
    assert document["n_models"] == len(models) == 6
    values = [m["value"] for m in models]
    score = document["scores"]["test_error"]
    assert score["kendall_tau"] == pytest.approx(kendall_tau(values, [m["test_error"] for m in models]))
    assert score["kendall_tau_ci"][0] <= score["kendall_tau"] <= score["kendall_tau_ci"][1]
    assert set(document["tau_vs_hparams"]) == {"learning_rate", "batch_size"}
    provenance = document["provenance"]
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", provenance["git_commit"])
    assert provenance["protocol"]["n"] == 64 and provenance["device"] == "cpu"
    assert provenance["seconds_per_model"] == pytest.approx(sum(m["seconds"] for m in models) / 6)
    assert document["scoring"]["bootstrap_resamples"] == 1000
    # numbers are numbers, never text
    assert all(isinstance(v, float) for v in values)


def test_a_run_with_another_protocol_is_published_beside_the_default_one(published: Path):
    files = sorted(p.name for p in (published / "results" / "tiny-digits").glob("*.json"))
    assert files[0] == "param-norm.json" and re.fullmatch(r"param-norm@[0-9a-f]{12}\.json", files[1])
    other = read(published / "results" / "tiny-digits" / files[1])
    assert other["provenance"]["protocol"]["n"] == 32
    assert other["provenance"]["measure_key"].startswith(files[1][len("param-norm@"):-len(".json")])


def test_the_schema_rejects_numbers_written_as_text_and_names_the_field(published: Path):
    document = read(published / "results" / "tiny-digits" / "train-loss.json")
    broken = copy.deepcopy(document)
    broken["scores"]["test_error"]["kendall_tau"] = "0.5"
    with pytest.raises(LeaderboardError, match=r"x\.json: field 'scores/test_error/kendall_tau': '0\.5' is not"):
        validate_result(broken, "x.json")
    del broken["provenance"]["manifest_sha256"]
    with pytest.raises(LeaderboardError, match="manifest_sha256"):
        validate_result(broken, "x.json")


def _table_rows(readme: str) -> list[list[str]]:
    """The rows of the README's first table (the first collection's), without its header."""
    lines = readme.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[cell.strip() for cell in row.split("|")[1:-1]] for row in lines[start + 2:end]]


def test_tables_are_sorted_by_oriented_tau_against_test_error(published: Path):
    outputs = render(published)
    rows = _table_rows(outputs[published / "README.md"])
    taus = [float(row[3].split()[0]) for row in rows]
    assert len(rows) == 3 and taus == sorted(taus, reverse=True)
    assert any("(n=32, m=16)" in row[0] for row in rows)
    # every row has a rank with its interval over the shared resamples
    assert all(re.fullmatch(r"\d \[\d-\d\]", row[4]) for row in rows), [row[4] for row in rows]


def test_a_measure_expected_to_predict_better_generalization_is_ranked_by_its_negated_tau(published: Path,
                                                                                           tmp_path: Path):
    """output-margin's card says higher_means: better: a tau of -0.3 against test error is a correct prediction
    and must rank above a measure with tau +0.1 that the card expects to be positive."""
    root = tmp_path / "leaderboard"
    shutil.copytree(published / "results", root / "results")
    path = root / "results" / "tiny-digits" / "train-loss.json"
    document = read(path)
    document["higher_means"], document["orientation"] = "better", -1
    for score in document["scores"].values():
        for key in ("kendall_tau", "spearman", "granulated_kendall"):
            score["oriented"][key] = None if score[key] is None else -score[key]
    tau = document["scores"]["test_error"]["kendall_tau"]
    path.write_text(dump(document), encoding="utf-8")
    rows = _table_rows(render(root)[root / "README.md"])
    row = next(r for r in rows if r[0] == "train-loss")
    assert row[1] == "×−1 (higher = better)" and float(row[3].split()[0]) == pytest.approx(-tau, abs=1e-3)
    taus = [float(r[3].split()[0]) for r in rows]
    assert taus == sorted(taus, reverse=True)


def test_the_heading_gives_the_noise_ceilings_and_warns_when_test_error_is_blurred_by_noise(
        published: Path, tmp_path: Path):
    readme = render(published)[published / "README.md"]
    document = read(published / "results" / "tiny-digits" / "param-norm.json")
    ceiling = document["scores"]["test_error"]["noise_ceiling"]
    assert f"test error {ceiling:+.3f} [" in readme
    root = tmp_path / "leaderboard"
    shutil.copytree(published / "results", root / "results")
    for path in (root / "results" / "tiny-digits").glob("*.json"):
        low = read(path)
        low["scores"]["test_error"]["noise_ceiling"] = 0.31
        path.write_text(dump(low), encoding="utf-8")
    assert "test-error ceiling is below 0.5: test-set noise blurs much of the observed test-error ranking" in render(
        root)[root / "README.md"]


def test_card_text_is_escaped_and_the_build_is_deterministic(published: Path, tmp_path: Path):
    root = tmp_path / "leaderboard"
    shutil.copytree(published / "results", root / "results")
    path = root / "results" / "tiny-digits" / "train-loss.json"
    document = read(path)
    document["measure_description"] = 'Evil <script>alert("x")</script> | & more'
    document["collection_description"] = "<img src=x onerror=alert(1)>"
    path.write_text(dump(document), encoding="utf-8")
    build(root)
    first = {name: (root / name).read_bytes() for name in ("README.md", "index.html")}
    page = first["index.html"].decode()
    assert "<script>alert" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    readme = first["README.md"].decode()
    assert "<img src=x" not in readme and "&lt;img src=x onerror=alert(1)&gt;" in readme
    build(root)
    assert first == {name: (root / name).read_bytes() for name in ("README.md", "index.html")}


def test_plots_are_byte_deterministic_svg_without_a_date(published: Path):
    document = read(published / "results" / "tiny-digits" / "param-norm.json")
    svg = scatter_svg(document)
    assert svg == scatter_svg(copy.deepcopy(document))
    assert svg.lstrip().startswith("<?xml") and "<dc:date>" not in svg
    # colored by the hyperparameter the measure tracks most, one legend entry per value
    tracked = max(document["tau_vs_hparams"], key=lambda h: abs(document["tau_vs_hparams"][h]))
    levels = {m["hparams"][tracked] for m in document["models"].values()}
    assert all(f"{tracked}={level}" in svg for level in levels)


def test_a_hyperparameter_of_many_levels_gets_a_color_bar_not_a_legend(published: Path):
    document = read(published / "results" / "tiny-digits" / "param-norm.json")
    tracked = tracked_hparam(document)[0]
    models = list(document["models"].values()) * 3                   # each copy its own level: more than 8
    document["models"] = {f"m{i}": {**m, "hparams": {**m["hparams"], tracked: 0.001 * (i + 1)}}
                          for i, m in enumerate(models)}
    svg = scatter_svg(document)
    assert f"tracks {tracked} ({len(models)} levels)" in svg and f"{tracked}=0.001" not in svg
    assert ">0.001<" in svg and f">{0.001 * len(models):g}<" in svg     # the bar's end labels


def test_a_misplaced_or_missing_result_is_a_clear_error(published: Path, tmp_path: Path, capsys):
    root = tmp_path / "leaderboard"
    (root / "results" / "other").mkdir(parents=True)
    shutil.copy(published / "results" / "tiny-digits" / "train-loss.json", root / "results" / "other")
    with pytest.raises(LeaderboardError, match="belong in"):
        load_results(root)
    assert main(["leaderboard", "build", "--leaderboard-dir", str(tmp_path / "nothing")]) == 2
    assert "no results folder" in capsys.readouterr().err
