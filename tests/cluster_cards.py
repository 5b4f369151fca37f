"""What the Ray tests share: the tiny collection with measures that die, fail, run out of memory or take their
time, as one include path, and local reference runs."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import torch

from sharpbench.cards.discovery import Registry
from sharpbench.collection.builder import build_collection
from sharpbench.collection.collection import open_collection
from sharpbench.evaluation.run import LocalExecutor, evaluate
from sharpbench.evaluation.store import ResultStore

SHARPNESS = "sharpness-worst-linf-adaptive"

CLUSTER_MEASURES = '''
import os
import signal
import time
from pathlib import Path

import torch


def weight_norm(model, context):
    return float(sum(p.detach().double().pow(2).sum() for p in model.parameters())) ** 0.5


def dies_once(model, context, *, marker):
    """Kills its own worker process the first time any model reaches it."""
    flag = Path(marker)
    if not flag.exists():
        flag.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return weight_norm(model, context)


def fails(model, context):
    raise ValueError("this measure always fails")


def allocates(model, context):
    return float(torch.empty(1 << 50).sum())


def slow(model, context, *, pause):
    time.sleep(pause)
    return weight_norm(model, context)
'''


def measure_card(folder: Path, name: str, function: str, params: str = "") -> None:
    (folder / "measures" / f"{name}.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        description: a measure of the cluster tests
        function: cluster_measures.py:{function}
        source: the tests
        higher_means: worse
        """) + params, encoding="utf-8")


def cluster_cards(tiny_collection_card: Path, folder: Path) -> Path:
    """The tiny collection's card and the measures above, as one include path at `folder`."""
    shutil.copytree(tiny_collection_card, folder)
    (folder / "measures").mkdir()
    (folder / "measures" / "cluster_measures.py").write_text(CLUSTER_MEASURES, encoding="utf-8")
    measure_card(folder, "weight-norm", "weight_norm")
    measure_card(folder, "dies-once", "dies_once", "params: {marker: {type: str, default: ''}}\n")
    measure_card(folder, "fails", "fails")
    measure_card(folder, "allocates", "allocates")
    measure_card(folder, "slow", "slow", "params: {pause: {type: float, default: 0.5}}\n")
    return folder


def built_collection(cards: Path):
    """The registry with the cards, and the tiny collection built."""
    registry = Registry.discover([cards])
    collection = open_collection(registry.collection("tiny-digits"))
    build_collection(collection, progress=False)
    return registry, collection


def evaluate_into(registry, collection, measure: str, store_path: Path, executor, group_models: bool = True,
                  **overrides):
    """One evaluation into a store of its own."""
    store = ResultStore(store_path)
    try:
        return evaluate(registry.measure(measure), collection, store, overrides=overrides, progress=False,
                        executor=executor, group_models=group_models)
    finally:
        store.close()


def one_thread(registry, collection, measure: str, store_path: Path, group_models: bool = True):
    """The local run that a task with one CPU (--cpus-per-task 1, one torch thread) must agree with."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return evaluate_into(registry, collection, measure, store_path, LocalExecutor(torch.device("cpu")),
                             group_models)
    finally:
        torch.set_num_threads(threads)


