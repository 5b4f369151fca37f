"""`sharpbench list`: each card's origin and a measure's parameters, descriptions never cut mid-sentence, the
folders of $SHARPBENCH_INCLUDE_PATH, and a home that is a file, read-only or missing."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
import yaml
from tiny_cards import tiny_mlp_card

import sharpbench
from sharpbench.cards.discovery import Registry
from sharpbench.cli.listing import first_sentence
from sharpbench.cli.main import main

BUILTIN = Registry.discover()

MEASURE_CARD = """\
name: {name}
description: A weight sum for tests. Its second sentence.
function: sums.py:total
source: tests
higher_means: worse
fixed: {{offset: 1.0}}
params:
  scale: {{type: float, default: 0.5}}
  steps: {{type: int, default: 3}}
"""


def cards_folder(root: Path, measure: str) -> Path:
    """An include-path folder with one cheap measure `measure` (parameters scale and steps, a fixed offset)."""
    (root / "measures").mkdir(parents=True)
    (root / "measures" / "sums.py").write_text(
        "def total(model, context, *, scale, steps, offset):\n"
        "    return scale * float(sum(p.detach().sum() for p in model.parameters())) + offset\n", encoding="utf-8")
    (root / "measures" / f"{measure}.yaml").write_text(MEASURE_CARD.format(name=measure), encoding="utf-8")
    return root


def listing(capsys, *args: str) -> dict[str, str]:
    """`sharpbench list ARGS` as {name: its row}; the command must succeed."""
    code = main(["list", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    return {line.split()[0]: line for line in lines[1:]}


def table_cut(text: str, sentence: str) -> str | None:
    """Why `sentence` is not a whole first sentence of `text` (None when it is)."""
    if not text.startswith(sentence):
        return "not a prefix of the description"
    if sentence.count("(") != sentence.count(")"):
        return "ends inside a parenthesis"
    if re.search(r"\b(?:al|e\.g|i\.e|cf|vs)\.$", sentence):
        return "ends at an abbreviation"
    rest = text[len(sentence):]
    if rest and not (sentence.endswith(".") and re.match(r" [A-Z]", rest)):
        return f"ends before {rest[:20]!r}, not at the end of a sentence"
    return None


@pytest.mark.parametrize("spec", [*BUILTIN.measures.values(), *BUILTIN.collections.values()],
                         ids=lambda spec: spec.name)
def test_no_builtin_description_is_cut_mid_sentence(spec):
    text = " ".join(spec.description.split())
    assert table_cut(text, first_sentence(spec.description)) is None


@pytest.mark.parametrize("description,expected", [
    ("Keskar et al. (2017) defined it. More here.", "Keskar et al. (2017) defined it."),
    ("Noise of some kind, e.g. Gaussian noise. Then more.", "Noise of some kind, e.g. Gaussian noise."),
    ("Models (McCoy et al. 2020) on MNLI. OOD: HANS.", "Models (McCoy et al. 2020) on MNLI."),
    ("A thing (see Foo. Bar) here. Next.", "A thing (see Foo. Bar) here."),
    ("A ratio of 0.5. Then more.", "A ratio of 0.5."),
    ("One phrase, no period", "One phrase, no period"),
    ("Two\n  lines. Second\nsentence.", "Two lines."),
])
def test_the_first_sentence_ends_at_a_sentence_end_only(description, expected):
    assert first_sentence(description) == expected
    assert table_cut(" ".join(description.split()), expected) is None


def test_the_bert_card_keeps_its_citation_whole():
    assert "(McCoy et al. 2020), scored on" in first_sentence(BUILTIN.collection("bert-mnli-hans").description)


def test_list_marks_each_origin_and_the_parameters(capsys, tmp_path, monkeypatch, sharpbench_home):
    included = cards_folder(tmp_path / "included", "sum-included")
    from_env = cards_folder(tmp_path / "from-env", "sum-env")
    monkeypatch.setenv("SHARPBENCH_INCLUDE_PATH", os.pathsep.join(["", str(from_env), "", str(included)]))
    (sharpbench_home / "imported" / "collections").mkdir(parents=True)
    card = {**tiny_mlp_card("my-import"), "imported": True}
    for field in ("grid", "seeds", "training", "convergence"):
        del card[field]
    (sharpbench_home / "imported" / "collections" / "my-import.yaml").write_text(yaml.safe_dump(card))

    rows = listing(capsys, "measures", "--include-path", str(included))      # also on the variable: read once
    assert re.search(r" built-in +.* rho=0\.001, steps=20$", rows["keskar-sharpness"])
    assert re.search(r" built-in +.*training accuracy +drop=0\.1, samples=8, steps=12, sigma_min=0\.0001, "
                     r"sigma_max=10\.0$", rows["pac-bayes-flatness"])            # the fixed magnitude_aware is not
    assert re.search(r" built-in +L2 norm of all trainable parameters, a weight-only baseline$", rows["param-norm"])
    for name, folder in (("sum-env", from_env), ("sum-included", included)):
        assert f" include path {folder} " in rows[name]
        assert re.search(r" A weight sum for tests\. +scale=0\.5, steps=3$", rows[name])    # offset is fixed
    rows = listing(capsys, "collections")
    assert re.search(r"^my-import +imported +not built ", rows["my-import"])
    assert re.search(r"^digits-mlp +built-in +not built ", rows["digits-mlp"])


def test_the_include_path_variable_reaches_compute_measure_and_is_checked(capsys, tmp_path, monkeypatch):
    folder = cards_folder(tmp_path / "cards", "sum-env")
    monkeypatch.setenv("SHARPBENCH_INCLUDE_PATH", str(folder))
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.fill_(0.5)
    batches = [(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))]
    assert sharpbench.compute_measure("sum-env", model, batches, scale=2.0) == pytest.approx(2.0 * 5.0 + 1.0)

    clash = cards_folder(tmp_path / "clash", "sum-env")     # the variable's folders are read before --include-path
    assert main(["list", "measures", "--include-path", str(clash)]) == 2
    assert capsys.readouterr().err == (f"sharpbench: error: {clash / 'measures' / 'sum-env.yaml'}: field 'name': "
                                       f"expected a name not already used by {folder / 'measures' / 'sum-env.yaml'} "
                                       f"(found 'sum-env')\n")

    monkeypatch.setenv("SHARPBENCH_INCLUDE_PATH", os.pathsep.join([str(folder), str(tmp_path / "missing")]))
    assert main(["list", "measures"]) == 2
    err = capsys.readouterr().err
    assert f"include path {tmp_path / 'missing'} (from $SHARPBENCH_INCLUDE_PATH): no such folder" in err
    assert err.count("\n") == 1


def test_a_home_that_is_a_file_lists_and_refuses_to_write(capsys, tmp_path, monkeypatch, tiny_collection_card):
    home = tmp_path / "home-file"
    home.write_text("not a folder")
    monkeypatch.setenv("SHARPBENCH_HOME", str(home))
    assert "param-norm" in listing(capsys, "measures")
    assert " not built " in listing(capsys, "collections", "--include-path", str(tiny_collection_card))["tiny-digits"]
    for command in (["evaluate", "--measure", "param-norm", "--collection", "tiny-digits"],
                    ["collection", "build", "tiny-digits"]):
        assert main([*command, "--include-path", str(tiny_collection_card), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err == (f"sharpbench: error: the sharpbench home {home} is not a writable folder (it is a file); set "
                       f"SHARPBENCH_HOME to a writable folder\n")
    assert home.read_text() == "not a folder"


def test_listing_creates_no_home(capsys, tmp_path, monkeypatch, tiny_collection_card):
    home = tmp_path / "no-home-yet"
    monkeypatch.setenv("SHARPBENCH_HOME", str(home))
    listing(capsys, "measures")
    listing(capsys, "collections", "--include-path", str(tiny_collection_card))
    assert not home.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_read_only_home_lists_and_refuses_to_write(capsys, tmp_path, monkeypatch, tiny_collection_card):
    home = tmp_path / "read-only"
    home.mkdir()
    home.chmod(0o555)
    monkeypatch.setenv("SHARPBENCH_HOME", str(home))
    try:
        assert " not built " in listing(capsys, "collections", "--include-path",
                                        str(tiny_collection_card))["tiny-digits"]
        assert main(["collection", "build", "tiny-digits", "--include-path", str(tiny_collection_card)]) == 2
        assert f"the sharpbench home {home} is not a writable folder" in capsys.readouterr().err
    finally:
        home.chmod(0o755)
