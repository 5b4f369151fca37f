"""The whole default collection under the study's headline measure, end to end (seconds per model), with
same-architecture models evaluated together and one at a time."""

from __future__ import annotations

import itertools

import pytest

from sharpbench.collection.builder import build_collection
from sharpbench.collection.collection import open_collection
from sharpbench.evaluation.run import evaluate
from sharpbench.cards.discovery import Registry
from sharpbench.evaluation.store import ResultStore


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "one-at-a-time"])
def test_collection_end_to_end(benchmark, setup, record, tiny_collection_card, tmp_path, grouped):
    registry = Registry.discover([tiny_collection_card])
    name = "digits-mlp" if setup.full else "tiny-digits"
    collection = open_collection(registry.collection(name))
    build_collection(collection, progress=False)  # not timed
    spec = registry.measure("sharpness-worst-linf-adaptive")
    counter = itertools.count()

    def fresh_store():  # every round computes every model: an empty results store each time
        return (ResultStore(tmp_path / f"results-{next(counter)}.sqlite"),), {}

    def run(store):
        evaluation = evaluate(spec, collection, store, device=setup.device, progress=False, group_models=grouped)
        setup.sync()
        assert evaluation.computed == len(collection.models)

    benchmark.pedantic(run, setup=fresh_store, rounds=3 if setup.full else 1)
    label = "grouped" if grouped else "one-at-a-time"
    record("collection", f"{name} worst-linf-adaptive, {label}", "per-model", per=len(collection.models))
    record("one-at-a-time", f"{name} worst-linf-adaptive", label, per=len(collection.models))
