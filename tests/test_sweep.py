"""Sweeps from Python: values from text, from a card's grid family, or from a sequence, typed by the card."""

from __future__ import annotations

import pytest

from sharpbench.cards.discovery import Registry
from sharpbench.errors import SharpbenchError
from sharpbench.evaluation.sweep import Sweep

MEASURE = "sharpness-worst-linf-adaptive"


@pytest.fixture(scope="module")
def spec():
    return Registry.discover().measure(MEASURE)


def test_values_from_text_a_grid_family_or_a_sequence_are_typed_by_the_card(spec):
    assert Sweep.parse(spec, "rho=0.002, 0.008") == Sweep("rho", (0.002, 0.008))
    assert Sweep.parse(spec, "rho=resnet18-cifar10") == Sweep("rho", tuple(spec.grids["rho"]["resnet18-cifar10"]))
    assert Sweep.of(spec, "steps", ["5", 10]) == Sweep("steps", (5, 10))
    assert all(type(value) is int for value in Sweep.of(spec, "steps", "5,10").values)


@pytest.mark.parametrize("text,message", [
    ("rho", "expected PARAM=V1,V2"),
    ("=0.1", "expected PARAM=V1,V2"),
    ("rho=vit-imagenet", "no grid 'vit-imagenet'"),
    ("rho=0.1,big", "expects a number"),
    ("radius=0.1", "no parameter 'radius'"),
])
def test_a_malformed_sweep_names_what_is_wrong(spec, text, message):
    with pytest.raises(SharpbenchError, match=message):
        Sweep.parse(spec, text)


def test_the_document_lists_the_values_and_one_report_per_value(spec):
    assert Sweep("rho", (0.1, 0.2)).document([]) == {"sweep": {"parameter": "rho", "values": [0.1, 0.2]},
                                                     "reports": []}
