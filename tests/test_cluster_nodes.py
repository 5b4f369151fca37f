"""Evaluating on a Ray cluster of two nodes on this machine: the values of a local run, computed on both."""

from __future__ import annotations

import sqlite3

import pytest

ray = pytest.importorskip("ray")

from cluster_cards import SHARPNESS, built_collection, evaluate_into, one_thread  # noqa: E402
from sharpbench.evaluation.cluster import RayExecutor  # noqa: E402


def test_two_nodes_give_the_values_of_one(cards, tmp_path):
    """A head and a worker node on this machine (ray.cluster_utils.Cluster): tasks run on both."""
    from ray.cluster_utils import Cluster

    registry, collection = built_collection(cards)
    one_node = one_thread(registry, collection, SHARPNESS, tmp_path / "one.sqlite", group_models=False)
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        assert len([node for node in ray.nodes() if node["Alive"]]) == 2
        two_nodes = evaluate_into(registry, collection, SHARPNESS, tmp_path / "two.sqlite",
                                  RayExecutor(address=cluster.address, cpus_per_task=1), group_models=False)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert two_nodes.values == one_node.values
    assert two_nodes.scores() == one_node.scores()
    devices = sqlite3.connect(tmp_path / "two.sqlite").execute("SELECT DISTINCT device FROM results").fetchall()
    assert len(devices) == 2, devices                     # each node computed some of the models
