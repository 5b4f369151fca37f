"""Disagreement (Jiang et al. 2022) and the context it needs: siblings (same configuration, other seeds) and
unlabeled test inputs. The value against hand-built decision boundaries; on a built collection with two seeds,
against predictions made here; refused where no model has a sibling; keyed by its siblings' checkpoints."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from sharpbench.cards.discovery import Registry
from sharpbench.cli.main import main
from sharpbench.collection.collection import open_collection
from sharpbench.evaluation.run import read_inputs
from sharpbench.measure import MeasureContext
from tiny_cards import tiny_mlp_card


def linear(weight: list[list[float]]) -> nn.Module:
    """A bias-free linear classifier with the given rows (one per class)."""
    layer = nn.Linear(2, len(weight), bias=False)
    layer.weight.data = torch.tensor(weight, dtype=torch.float32)
    return layer


def test_disagreement_is_the_fraction_of_inputs_on_which_predictions_differ():
    """h predicts by the sign of x1, h' by the sign of x2, h'' as h: on two points per quadrant, h and h' differ
    in quadrants II and IV (half the points), h and h'' nowhere; the value is the mean over siblings, 1/4."""
    points = torch.tensor([[1., 1.], [2., 3.], [-1., 1.], [-2., 3.], [-1., -1.], [-3., -2.], [1., -1.], [2., -5.]])
    model = linear([[1., 0.], [-1., 0.]])
    context = MeasureContext(batches=[], device=torch.device("cpu"), generator=torch.Generator(), num_classes=2,
                             test_inputs=[points[:5], points[5:]])
    from sharpbench_measures.disagreement import disagreement

    context.siblings = [linear([[0., 1.], [0., -1.]])]
    assert disagreement(model, context) == 0.5
    context.siblings = [linear([[0., 1.], [0., -1.]]), linear([[2., 0.], [-2., 0.]])]
    assert disagreement(model, context) == 0.25
    with pytest.raises(NotImplementedError, match="regression"):
        disagreement(model, dataclasses.replace(context, num_classes=1))


def _seeded_card(cards: Path) -> str:
    card = {**tiny_mlp_card("tiny-seeds"), "seeds": [0, 1, 2]}
    (cards / "collections").mkdir(parents=True, exist_ok=True)
    (cards / "collections" / "tiny-seeds.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return card["name"]


def test_on_a_collection_each_model_is_compared_with_its_configuration_from_the_other_seeds(
        tmp_path: Path, tiny_collection_card: Path, capsys: pytest.CaptureFixture):
    cards = tmp_path / "cards"
    name = _seeded_card(cards)
    common = ["--include-path", str(cards), "--no-progress"]
    assert main(["collection", "build", name, *common]) == 0
    assert main(["evaluate", "--measure", "disagreement", "--collection", name, "--json",
                 str(tmp_path / "report.json"), *common]) == 0
    values = {model: entry["value"] for model, entry in json.loads((tmp_path / "report.json").read_text())
              ["models"].items()}
    registry = Registry.discover([cards])
    collection = open_collection(registry.collection(name))
    inputs = collection.test_input_batches(64, 16)
    assert sum(len(x) for x in inputs) == 64
    predictions = {record.id: torch.cat([collection.load_model(record)(x).argmax(1) for x in inputs]).detach()
                   for record in collection.models}
    assert len(collection.models) == 12
    for record in collection.models:
        siblings = collection.siblings(record)
        assert len(siblings) == 2 and {s.seed for s in siblings} == {0, 1, 2} - {record.seed}
        assert all({k: v for k, v in s.hparams.items() if k != "seed"} ==
                   {k: v for k, v in record.hparams.items() if k != "seed"} for s in siblings)
        expected = sum(float((predictions[record.id] != predictions[s.id]).double().mean()) for s in siblings) / 2
        assert values[record.id] == pytest.approx(expected, abs=1e-12)

    # a rebuilt sibling changes the key of every model it is a sibling of: no stored value is served for it
    spec = registry.measure("disagreement")
    before = read_inputs(spec, collection)
    records = collection.models
    records[1] = dataclasses.replace(records[1], sha256="0" * 64)
    collection._models = records
    assert read_inputs(spec, collection) != before

    # one seed per configuration: refused before anything is computed, with the fix
    capsys.readouterr()
    assert main(["evaluate", "--measure", "disagreement", "--collection", "tiny-digits", "--include-path",
                 str(tiny_collection_card), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "have none" in err and "several seeds per configuration" in err and "Traceback" not in err
