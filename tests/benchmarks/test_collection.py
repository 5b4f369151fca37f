"""Whole collections under the study's headline measure, end to end (seconds per model), with
same-architecture models evaluated together and one at a time: the digits MLPs, the digits ViTs and the
Fashion-MNIST CNNs at full size, from the user's SHARPBENCH_HOME (each built there once if missing, not timed),
the tiny digits collection otherwise."""

from __future__ import annotations

import itertools

import pytest

from sharpbench.collection.builder import build_collection
from sharpbench.collection.collection import open_collection
from sharpbench.evaluation.run import evaluate
from sharpbench.cards.discovery import Registry
from sharpbench.evaluation.store import ResultStore
from sharpbench.paths import HOME_ENV, home_path

USER_HOME = home_path()  # read at import, before the tests' isolated home replaces it


FULL_SIZE = ["digits-mlp", "digits-vit", "fashion-mnist-cnn"]


@pytest.mark.parametrize("full_size", FULL_SIZE)
@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "one-at-a-time"])
def test_collection_end_to_end(benchmark, setup, record, tiny_collection_card, tmp_path, monkeypatch, grouped,
                               full_size):
    if not setup.full and full_size != FULL_SIZE[0]:
        pytest.skip("one small collection stands for all three outside --benchmark-only")
    if setup.full:
        monkeypatch.setenv(HOME_ENV, str(USER_HOME))
    registry = Registry.discover([tiny_collection_card])
    name = full_size if setup.full else "tiny-digits"
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

    # a round of the digits ViTs or the Fashion-MNIST CNNs takes a minute or two on a CPU: one round each there
    benchmark.pedantic(run, setup=fresh_store, rounds=3 if setup.full and name == "digits-mlp" else 1)
    label = "grouped" if grouped else "one-at-a-time"
    record("collection", f"{name} worst-linf-adaptive, {label}", "per-model", per=len(collection.models))
    record("one-at-a-time", f"{name} worst-linf-adaptive", label, per=len(collection.models))
