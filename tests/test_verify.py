"""`sharpbench leaderboard verify`: published values recomputed within each card's tolerance, failures named by file
and model, files that cannot be checked here named with the fix; and external results marked on the leaderboard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sharpbench.cards.discovery import Registry
from sharpbench.cli.main import main
from sharpbench.collection.collection import open_collection
from sharpbench.evaluation.run import plan_groups
from sharpbench.evaluation.store import measure_key
from sharpbench.leaderboard.build import render
from sharpbench.leaderboard.results import dump, validate_result
from sharpbench.leaderboard.verify import published_groups, relative_difference, sample_models

EXTERNAL_CODE = '''\
import torch
from sharpbench import MeasureContext


def output_norm(model: torch.nn.Module, context: MeasureContext, *, power: float) -> float:
    """Mean p-norm of the logits on the sharpness batches."""
    with torch.no_grad():
        norms = [model(x).norm(p=power, dim=1).mean() for x, _ in context.batches]
    return torch.stack(norms).mean().item()
'''
EXTERNAL_CARD = """\
name: output-norm
description: Mean p-norm of the logits on the sharpness batches
function: my_measures.py:output_norm
source: a test
higher_means: worse
params:
  power: {type: float, default: 2.0, help: the p of the norm}
"""
RANDOM_MEASURE = "sharpness-avg-linf-adaptive"     # draws its noise from the run's generator: a larger tolerance


@pytest.fixture(scope="module")
def external_cards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An --include-path folder with one measure of its own (output-norm, code beside the card)."""
    cards = tmp_path_factory.mktemp("external") / "cards"
    (cards / "measures").mkdir(parents=True)
    (cards / "measures" / "my_measures.py").write_text(EXTERNAL_CODE, encoding="utf-8")
    (cards / "measures" / "output-norm.yaml").write_text(EXTERNAL_CARD, encoding="utf-8")
    return cards


@pytest.fixture(scope="module")
def board(tiny_collection_card: Path, external_cards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A leaderboard with param-norm, a measure that draws random numbers and an external one published on the
    tiny collection, built under <board>/../home."""
    root = tmp_path_factory.mktemp("verify") / "leaderboard"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHARPBENCH_HOME", str(root.parent / "home"))
        for measure in ("param-norm", RANDOM_MEASURE, "output-norm"):
            assert main(["evaluate", "--measure", measure, "--collection", "tiny-digits", "--include-path",
                         str(tiny_collection_card), "--include-path", str(external_cards), "--no-progress",
                         "--publish", "--leaderboard-dir", str(root)]) == 0
    return root


def copy_board(board: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the board's leaderboard folder, with SHARPBENCH_HOME at the board's home (its built collection)."""
    monkeypatch.setenv("SHARPBENCH_HOME", str(board.parent / "home"))
    copy = tmp_path / "leaderboard"
    shutil.copytree(board, copy)
    return copy


def result_path(root: Path, variant: str) -> Path:
    return root / "results" / "tiny-digits" / f"{variant}.json"


def edit(path: Path, change) -> dict:
    """Apply `change` to a result file's document and write it back (still schema-valid)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    change(document)
    validate_result(document, path)
    path.write_text(dump(document), encoding="utf-8")
    return document


def verify(root: Path, *extra: str, includes: tuple[Path, ...] = ()) -> list[str]:
    """The verify command's arguments for `root` (and the include paths)."""
    return ["leaderboard", "verify", "--leaderboard-dir", str(root), "--no-progress",
            *[argument for path in includes for argument in ("--include-path", str(path))], *extra]


def row(out: str, path: Path) -> list[str]:
    """The cells of the verify table's row for `path`: file, models checked, max difference, tolerance, verdict."""
    line = next(line for line in out.splitlines() if line.startswith(f"| {path} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_published_results_verify_bit_for_bit_without_the_results_store(board, tiny_collection_card, external_cards,
                                                                         tmp_path, monkeypatch, capsys):
    root = copy_board(board, tmp_path, monkeypatch)
    store = board.parent / "home" / "results.sqlite"
    kept = store.read_bytes()
    store.unlink()        # a verification neither reads nor writes the results store
    try:
        code = main(verify(root, "--sample", "all", includes=(tiny_collection_card, external_cards)))
        assert not store.exists()
    finally:
        store.write_bytes(kept)
    out = capsys.readouterr().out
    assert code == 0, out
    for variant in ("output-norm", "param-norm", RANDOM_MEASURE):
        cells = row(out, result_path(root, variant))
        assert cells[1:3] == ["6 of 6", "0.0e+00"] and cells[4] == "verified", out
    assert "3 of 3 result files verified (every model, sample seed 0, on cpu)" in out
    assert "FAILED" not in out and "note:" not in out


def test_a_value_edited_by_1e_3_relative_fails_naming_the_file_and_the_model(board, tiny_collection_card, tmp_path,
                                                                            monkeypatch, capsys):
    root = copy_board(board, tmp_path, monkeypatch)
    path = result_path(root, "param-norm")
    document = json.loads(path.read_text(encoding="utf-8"))
    checked = sample_models(document, 3, 0)          # the default sample: edit a model it checks
    model = checked[1]
    stored = document["models"][model]["value"] * (1 + 1e-3)
    edit(path, lambda d: d["models"][model].update(value=stored))
    code = main(verify(root, includes=(tiny_collection_card,)))
    out = capsys.readouterr().out
    assert code == 1
    assert f"FAILED {path}: model '{model}': stored {stored!r}, recomputed " in out
    assert "(relative difference 1.0e-03 > tolerance 1e-06)" in out
    assert row(out, path) == [str(path), "3 of 6", "1.0e-03", "1e-06", "failed"]
    # output-norm's code is not on the include paths: a difference outranks a file that cannot be checked (exit 1)
    assert "1 failed; 1 not verifiable here" in out


def test_a_measure_with_a_larger_tolerance_passes_a_perturbation_within_it(board, tiny_collection_card, external_cards,
                                                                           tmp_path, monkeypatch, capsys):
    tolerance = Registry.discover([tiny_collection_card]).measure(RANDOM_MEASURE).tolerance
    assert 1e-3 < tolerance < 1, "the cards of measures that draw random numbers state a tolerance"
    root = copy_board(board, tmp_path, monkeypatch)
    path = result_path(root, RANDOM_MEASURE)
    original = {model: entry["value"] for model, entry in
                json.loads(path.read_text(encoding="utf-8"))["models"].items()}

    def scaled(relative: float):        # every stored value moved to `relative` difference from the recomputed one
        return lambda d: [entry.update(value=original[model] / (1 - relative)) for model, entry in d["models"].items()]

    edit(path, scaled(tolerance / 2))
    code = main(verify(root, includes=(tiny_collection_card, external_cards)))
    out = capsys.readouterr().out
    assert code == 0, out
    assert row(out, path) == [str(path), "3 of 6", f"{tolerance / 2:.1e}", f"{tolerance:g}", "verified"]
    edit(path, scaled((1 + tolerance) / 2))                                 # and beyond it, it fails
    assert main(verify(root, includes=(tiny_collection_card, external_cards))) == 1
    assert f"FAILED {path}: model " in capsys.readouterr().out


def test_an_unbuilt_collection_or_an_unregistered_measure_is_not_verifiable_with_the_fix(board, tiny_collection_card,
                                                                                        tmp_path, monkeypatch, capsys):
    root = copy_board(board, tmp_path, monkeypatch)
    monkeypatch.setenv("SHARPBENCH_HOME", str(tmp_path / "empty-home"))
    code = main(verify(root, includes=(tiny_collection_card,)))
    out = capsys.readouterr().out
    assert code == 2
    assert (f"NOT VERIFIABLE {result_path(root, 'param-norm')}: collection 'tiny-digits' is not built here (no "
            f"manifest in {tmp_path / 'empty-home' / 'collections' / 'tiny-digits'}). Run `sharpbench collection "
            f"build tiny-digits`.") in out
    # the external measure, without the include path that holds its code
    assert (f"NOT VERIFIABLE {result_path(root, 'output-norm')}: measure 'output-norm' is not registered here (its "
            f"code came from include path ") in out
    assert "Pass --include-path DIR to load cards of your own." in out
    assert "0 of 3 result files verified" in out and "0 failed; 3 not verifiable here" in out


def test_results_of_other_code_are_named_and_still_compared(board, tiny_collection_card, external_cards, tmp_path,
                                                            monkeypatch, capsys):
    root = copy_board(board, tmp_path, monkeypatch)
    path = result_path(root, "param-norm")
    edit(path, lambda d: d["provenance"]["implementation"].update(source_sha256="0" * 64, card_version=7))
    code = main(verify(root, includes=(tiny_collection_card, external_cards)))
    out = capsys.readouterr().out
    assert code == 0
    assert (f"note: {path} was computed by other code (source_sha256, card_version differ from this checkout's); "
            f"its values were compared all the same") in out


def test_the_sample_is_seeded_per_file_and_all_takes_every_model():
    document = {"collection": "c", "variant": "v", "models": {f"m{i}": {} for i in range(10)}}
    first = sample_models(document, 3, 0)
    assert len(first) == 3 and first == sample_models(document, 3, 0)
    assert first == sorted(first, key=list(document["models"]).index)           # in the file's order
    assert any(sample_models(document, 3, seed) != first for seed in range(1, 5))
    assert any(sample_models({**document, "variant": other}, 3, 0) != first for other in ("w", "x", "y"))
    assert sample_models(document, 0, 0) == sample_models(document, 99, 0) == list(document["models"])
    assert relative_difference(2.0, 2.0) == 0.0 and relative_difference(0.0, 0.0) == 0.0
    assert relative_difference(1.0, 1.001) == pytest.approx(1e-3 / 1.001)
    assert relative_difference(-1.0, 1.0) == 2.0


def test_a_bad_sample_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["leaderboard", "verify", "--sample", "some"])
    assert stop.value.code == 2
    assert "--sample: expected a number of models (0 or 'all' for every model), got 'some'" in capsys.readouterr().err


def test_a_result_of_an_include_path_measure_is_marked_external_in_the_document_and_on_the_leaderboard(board):
    external = json.loads(result_path(board, "output-norm").read_text(encoding="utf-8"))
    origin = external["provenance"]["implementation"]["origin"]
    assert origin.startswith("include path ") and external["external"] == {"origin": origin}
    builtin = json.loads(result_path(board, "param-norm").read_text(encoding="utf-8"))
    assert "external" not in builtin
    outputs = render(board)
    readme, page = outputs[board / "README.md"], outputs[board / "index.html"]
    note = (f"† output-norm: external: computed from code outside this repository ({origin}); not verifiable "
            f"without it.")
    for text in (readme, page):
        assert note in text
        assert "output-norm†" in text and "param-norm†" not in text
    assert "| output-norm† |" in readme
    assert f'<p class="external">{note}</p>' in page


def test_a_result_file_without_the_external_field_stays_valid_and_in_tree(board):
    document = json.loads(result_path(board, "output-norm").read_text(encoding="utf-8"))
    del document["external"]
    validate_result(document, "old.json")
    document["external"] = {"origin": "in-tree module measures/norms.py"}
    with pytest.raises(Exception, match="external"):
        validate_result(document, "bad.json")


def test_the_tolerance_does_not_enter_the_measure_key(external_cards, tmp_path):
    loose = tmp_path / "loose"
    shutil.copytree(external_cards, loose)
    card = loose / "measures" / "output-norm.yaml"
    card.write_text(card.read_text(encoding="utf-8") + "tolerance: 0.5\n", encoding="utf-8")
    strict, relaxed = (Registry.discover([folder]).measure("output-norm") for folder in (external_cards, loose))
    assert (strict.tolerance, relaxed.tolerance) == (1e-6, 0.5)
    protocol = {"n": 64, "m": 16, "measure_seed": 0}
    assert measure_key(strict.name, strict.bind(), protocol, strict.key_inputs()) == \
        measure_key(relaxed.name, relaxed.bind(), protocol, relaxed.key_inputs())


def test_a_result_of_a_plugins_measure_validates_and_is_external(board):
    document = json.loads(result_path(board, "output-norm").read_text(encoding="utf-8"))
    origin = "plugin plug-a (package module plugpkg.measures)"      # what an installed plugin's module records
    document["provenance"]["implementation"]["origin"] = origin
    document["external"] = {"origin": origin}
    validate_result(document, "plugin.json")
    document["provenance"]["implementation"]["origin"] = "plugin plug-a"
    with pytest.raises(Exception, match="origin"):
        validate_result(document, "bad.json")


def export_build(root: Path, cards: Path) -> Path:
    """Export the board's build of tiny-digits into the leaderboard copy at `root`, as reproduce publishes it."""
    folder = root / "collections" / "tiny-digits"
    assert main(["collection", "export", "tiny-digits", "--to", str(folder), "--include-path", str(cards)]) == 0
    return folder


def test_a_published_build_is_installed_and_verifies_on_an_empty_home(board, tiny_collection_card, external_cards,
                                                                      tmp_path, monkeypatch, capsys):
    root = copy_board(board, tmp_path, monkeypatch)
    folder = export_build(root, tiny_collection_card)
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoints", "manifest.json", "outcomes"]
    monkeypatch.setenv("SHARPBENCH_HOME", str(tmp_path / "empty-home"))
    code = main(verify(root, "--sample", "all", includes=(tiny_collection_card, external_cards)))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "3 of 3 result files verified" in out and "note:" not in out
    installed = tmp_path / "empty-home" / "collections" / "tiny-digits" / "manifest.json"
    assert installed.read_bytes() == (folder / "manifest.json").read_bytes()
    assert main(["leaderboard", "build", "--leaderboard-dir", str(root)]) == 0
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "sharpbench collection pull tiny-digits --from leaderboard/collections/tiny-digits" in readme


def test_another_build_than_the_published_one_is_refused_naming_the_fix(board, tiny_collection_card, external_cards,
                                                                        tmp_path, monkeypatch, capsys):
    root = copy_board(board, tmp_path, monkeypatch)
    folder = export_build(root, tiny_collection_card)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["build_time_seconds"] += 1.0          # a valid manifest of the same models: another build's bytes
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    code = main(verify(root, includes=(tiny_collection_card, external_cards)))
    out = capsys.readouterr().out
    assert code == 2 and "0 of 3 result files verified" in out
    assert (f"collection 'tiny-digits' built here (manifest sha256 ") in out
    assert f"is not the build its results were published on ({folder}, " in out
    assert f"`sharpbench collection pull tiny-digits --from {folder}`" in out
    assert main(["leaderboard", "build", "--leaderboard-dir", str(root)]) == 2     # nor can the tables be built
    assert (f"the results of collection 'tiny-digits' were computed on build ") in capsys.readouterr().err


def test_results_of_two_builds_of_one_collection_are_refused_by_the_build(board, tmp_path, monkeypatch, capsys):
    root = copy_board(board, tmp_path, monkeypatch)
    edit(result_path(root, "param-norm"), lambda d: d["provenance"].update(manifest_sha256="ab" * 32))
    assert main(["leaderboard", "build", "--leaderboard-dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert "the results of collection 'tiny-digits' come from 2 builds (2 on " in err
    assert ", 1 on abababababab): republish them on one build" in err


STACKED_CODE = '''\
import torch
from sharpbench import computes_many


def _stacked(models, context):
    # the stacked path's last bits differ from the one-model path's (as the real ascent's do on diag-linear-nets,
    # amplified): here by 1e-3 relative, far beyond the tolerance
    return [1.001 * norm(model, context) for model in models]


@computes_many(_stacked)
def norm(model, context):
    """The parameters' L2 norm."""
    return torch.cat([p.detach().flatten() for p in model.parameters()]).norm().item()
'''
STACKED_CARD = """\
name: stacked-norm
description: The parameters' L2 norm, whose many-model form differs from its one-model form in the last bits
function: stacked.py:norm
source: a test
higher_means: worse
"""


def test_a_model_published_in_a_group_is_recomputed_in_one(tiny_collection_card, tmp_path, monkeypatch, capsys):
    cards = tmp_path / "cards"
    (cards / "measures").mkdir(parents=True)
    (cards / "measures" / "stacked.py").write_text(STACKED_CODE, encoding="utf-8")
    (cards / "measures" / "stacked-norm.yaml").write_text(STACKED_CARD, encoding="utf-8")
    root, includes = tmp_path / "leaderboard", ("--include-path", str(tiny_collection_card), "--include-path", str(cards))
    monkeypatch.setenv("SHARPBENCH_HOME", str(tmp_path / "home"))
    for measure in ("stacked-norm", "param-norm"):          # all models in one group: stacked; one at a time
        assert main(["evaluate", "--measure", measure, "--collection", "tiny-digits", *includes, "--no-progress",
                     "--publish", "--leaderboard-dir", str(root)]) == 0
    document = json.loads(result_path(root, "stacked-norm").read_text(encoding="utf-8"))
    ids = list(document["models"])
    [sampled] = sample_models(document, 1, 0)
    capsys.readouterr()

    assert main(["leaderboard", "verify", "--leaderboard-dir", str(root), "--no-progress", "--sample", "1",
                 *includes]) == 0
    out = capsys.readouterr().out
    cells = row(out, result_path(root, "stacked-norm"))
    assert cells[1:3] == [f"2 of {len(ids)}", "0.0e+00"] and cells[4] == "verified", out
    assert row(out, result_path(root, "param-norm"))[1] == f"1 of {len(ids)}"    # no many-model form: no companion

    collection = open_collection(Registry.discover([tiny_collection_card, cards]).collection("tiny-digits"))
    records = {record.id: record for record in collection.models}
    planned = [[r.id for r in group] for group in plan_groups(collection, [records[i] for i in ids], many=True)]
    assert planned == [ids]                                             # published in one group
    [group] = published_groups(planned, [sampled])
    assert sampled in group and len(group) == 2 and group == [i for i in ids if i in group]   # in the file's order
    assert published_groups(planned, ids) == [ids]                      # every model: the published group itself
    assert published_groups([[i] for i in ids], [sampled]) == [[sampled]]   # published alone: recomputed alone
