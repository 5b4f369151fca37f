"""The leaderboard shows each measure's checked properties beside its scores: invariances and cost from
LEADERBOARD/properties/MEASURE.json, 'not checked' without one, 'stale' when it checked another implementation."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from sharpbench.cards.discovery import Registry
from sharpbench.cli.main import main
from sharpbench.leaderboard.build import render
from sharpbench.leaderboard.properties import load_properties, validate_properties
from sharpbench.leaderboard.results import LeaderboardError

REPO_LEADERBOARD = Path(__file__).resolve().parents[1] / "leaderboard"


@pytest.fixture
def board(tmp_path: Path) -> Path:
    """A copy of the published diag-linear-nets results, as computed by today's implementations, with param-norm's
    properties published by the CLI."""
    root = tmp_path / "leaderboard"
    shutil.copytree(REPO_LEADERBOARD / "results" / "diag-linear-nets", root / "results" / "diag-linear-nets")
    registry = Registry.discover()
    for path in (root / "results" / "diag-linear-nets").glob("*.json"):
        document = json.loads(path.read_text(encoding="utf-8"))
        implementation = registry.measure(document["measure"]).implementation()
        document["provenance"]["implementation"]["source_sha256"] = implementation.source_sha256
        path.write_text(json.dumps(document), encoding="utf-8")
    assert main(["measure", "check", "param-norm", "--no-progress", "--publish", "--leaderboard-dir", str(root)]) == 0
    return root


def table_rows(readme: str) -> dict[str, dict[str, str]]:
    lines = readme.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    lines = lines[start:end]                        # the first collection's table only
    headers = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(headers, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]
    return {row["measure"]: row for row in rows}


def test_checked_measures_show_their_invariances_and_cost_and_the_others_say_not_checked(board: Path):
    outputs = render(board)
    rows = table_rows(outputs[board / "README.md"])
    cost = json.loads((board / "properties" / "param-norm.json").read_text(encoding="utf-8"))["cost_passes"]
    assert rows["param-norm"]["invariant: rescaling / permutation"] == "no / yes"
    assert rows["param-norm"]["cost (passes)"] == f"{cost:.3g}"
    assert rows["train-loss"]["invariant: rescaling / permutation"] == "not checked"
    assert rows["train-loss"]["cost (passes)"] == "not checked"
    page = outputs[board / "index.html"]
    assert re.search(r'data-measure="param-norm">.*<td data-value="1.0">no / yes</td>', page)
    assert re.search(r'data-measure="train-loss">.*<td data-value="">not checked</td>', page)


def test_properties_of_another_implementation_are_stale(board: Path):
    path = board / "properties" / "param-norm.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    document["provenance"]["implementation"]["source_sha256"] = "0" * 64
    path.write_text(json.dumps(document), encoding="utf-8")
    rows = table_rows(render(board)[board / "README.md"])
    assert rows["param-norm"]["invariant: rescaling / permutation"] == "stale"
    assert rows["param-norm"]["cost (passes)"] == "stale"


def test_a_failed_required_property_is_shown_beside_the_invariances(board: Path):
    path = board / "properties" / "param-norm.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    document["properties"]["finite"] = False
    path.write_text(json.dumps(document), encoding="utf-8")
    rows = table_rows(render(board)[board / "README.md"])
    assert rows["param-norm"]["invariant: rescaling / permutation"] == "no / yes (fails: finite)"


def test_a_malformed_or_misplaced_properties_file_is_a_clear_error(board: Path):
    path = board / "properties" / "param-norm.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    with pytest.raises(LeaderboardError, match="field 'properties/finite'"):
        validate_properties({**document, "properties": {**document["properties"], "finite": "yes"}}, path)
    (board / "properties" / "train-loss.json").write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(LeaderboardError, match="holds measure 'param-norm'"):
        load_properties(board)


def test_every_published_measure_has_committed_properties_that_match_the_schema():
    documents = load_properties(REPO_LEADERBOARD)
    published = {path.stem for path in (REPO_LEADERBOARD / "results").glob("*/*.json") if "@" not in path.stem}
    missing = sorted(published - set(documents))
    assert not missing, f"run `sharpbench measure check NAME --publish` for {missing}"
