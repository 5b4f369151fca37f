"""The Ray executor against the local one on a whole collection: the digits MLPs under worst-case sharpness, grouped
(one task for the 60 same-architecture models) and one model per task, on a local Ray of two workers of one thread
each against this process; and Ray's overhead per task, from a measure that costs next to nothing (param-norm).
At full size the collection comes from the user's SHARPBENCH_HOME (built there once if missing, not timed); the
tiny digits collection otherwise."""

from __future__ import annotations

import itertools

import pytest

from benchmarks.test_collection import USER_HOME
from sharpbench.cards.discovery import Registry
from sharpbench.collection.builder import build_collection
from sharpbench.collection.collection import open_collection
from sharpbench.evaluation.run import LocalExecutor, evaluate
from sharpbench.evaluation.store import ResultStore
from sharpbench.paths import HOME_ENV

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of two one-CPU workers, started once (not timed)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.mark.parametrize("executor", ["local", "ray"])
@pytest.mark.parametrize("measure,grouped", [("sharpness-worst-linf-adaptive", True),
                                             ("sharpness-worst-linf-adaptive", False), ("param-norm", False)],
                         ids=["worst-case-grouped", "worst-case-one-per-task", "param-norm-one-per-task"])
def test_executor_on_a_collection(benchmark, setup, record, local_ray, tiny_collection_card, tmp_path, monkeypatch,
                                  executor, measure, grouped):
    from sharpbench.evaluation.cluster import RayExecutor

    if setup.full:
        monkeypatch.setenv(HOME_ENV, str(USER_HOME))
    registry = Registry.discover([tiny_collection_card])
    collection = open_collection(registry.collection("digits-mlp" if setup.full else "tiny-digits"))
    build_collection(collection, progress=False)  # not timed
    spec = registry.measure(measure)
    chosen = LocalExecutor(setup.device) if executor == "local" else RayExecutor(cpus_per_task=1)
    counter = itertools.count()

    def fresh_store():  # every round computes every model: an empty results store each time
        return (ResultStore(tmp_path / f"results-{next(counter)}.sqlite"),), {}

    def run(store):
        evaluation = evaluate(spec, collection, store, progress=False, group_models=grouped, executor=chosen)
        setup.sync()
        assert evaluation.computed == len(collection.models)

    benchmark.pedantic(run, setup=fresh_store, rounds=3 if setup.full else 1, warmup_rounds=1 if setup.full else 0)
    case = f"{collection.spec.name} {measure}, {'grouped' if grouped else 'one model per task'}"
    group = "overhead" if measure == "param-norm" else "ray"
    record(group, case, executor, per=len(collection.models))
