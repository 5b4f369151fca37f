"""Evaluating on a local Ray: the values of a local run; a worker killed mid-task, a measure failing or running
out of memory inside a task, and a driver killed mid-run (a cluster of two nodes: test_cluster_nodes.py)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")

from cluster_cards import SHARPNESS, built_collection, evaluate_into, one_thread  # noqa: E402
from sharpbench.cards.discovery import Registry  # noqa: E402
from sharpbench.cli.main import main  # noqa: E402
from sharpbench.collection.builder import build_collection  # noqa: E402
from sharpbench.collection.collection import open_collection  # noqa: E402
from sharpbench.evaluation.cluster import RayExecutor  # noqa: E402
from sharpbench.evaluation.run import LocalExecutor  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray of two worker CPUs for the module (starting one takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_ray_gives_the_values_and_scores_of_a_local_run(local_ray, cards, tmp_path):
    registry, collection = built_collection(cards)
    local = one_thread(registry, collection, SHARPNESS, tmp_path / "local.sqlite")
    on_ray = evaluate_into(registry, collection, SHARPNESS, tmp_path / "ray.sqlite", RayExecutor(cpus_per_task=1))
    assert on_ray.computed == len(collection.models) == 6
    assert on_ray.values == local.values                  # float64, exactly
    assert on_ray.scores() == local.scores()
    assert all(seconds > 0 for seconds in on_ray.seconds.values())
    [[device]] = sqlite3.connect(tmp_path / "ray.sqlite").execute("SELECT DISTINCT device FROM results")
    assert device.startswith("cpu on Ray node ")           # where each value was computed, as the worker said


def test_a_worker_killed_mid_task_is_retried_and_the_run_completes(local_ray, cards, tmp_path):
    registry, collection = built_collection(cards)
    marker = tmp_path / "killed"
    reference = evaluate_into(registry, collection, "weight-norm", tmp_path / "local.sqlite",
                          LocalExecutor(torch.device("cpu")))
    on_ray = evaluate_into(registry, collection, "dies-once", tmp_path / "ray.sqlite", RayExecutor(),
                       marker=str(marker))
    killed = int(marker.read_text())
    assert killed != os.getpid()                          # a worker died, not this process
    assert on_ray.values == reference.values and on_ray.computed == 6


def _cli(capsys, cards: Path, measure: str, *extra: str) -> tuple[int, str, str]:
    code = main(["evaluate", "--measure", measure, "--collection", "tiny-digits", "--include-path", str(cards),
                 "--no-progress", "--executor", "ray", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_measure_error_inside_a_task_is_sharpbenchs_one_line_error(local_ray, cards, capsys):
    built_collection(cards)
    code, out, err = _cli(capsys, cards, "fails")
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err and "RayTaskError" not in err
    assert "'fails' failed on model" in err and "ValueError: this measure always fails" in err


def test_a_task_out_of_memory_names_its_models(local_ray, cards, capsys):
    _, collection = built_collection(cards)
    code, _, err = _cli(capsys, cards, "allocates", "--no-grouping")
    assert code == 2 and err.count("\n") == 1
    assert "ran out of memory" in err and any(f"model(s) {record.id}" in err for record in collection.models)


def test_ray_options_without_ray_executor_or_with_device_are_refused(cards, capsys):
    code = main(["evaluate", "--measure", "weight-norm", "--include-path", str(cards), "--gpus-per-task", "1"])
    assert code == 2 and "only apply with --executor ray" in capsys.readouterr().err
    code = main(["evaluate", "--measure", "weight-norm", "--include-path", str(cards), "--executor", "ray",
                 "--device", "cpu"])
    assert code == 2 and "--device does not apply with --executor ray" in capsys.readouterr().err


def test_a_task_no_node_can_run_is_refused_before_anything_is_sent(local_ray, cards, capsys):
    built_collection(cards)
    code, _, err = _cli(capsys, cards, "weight-norm", "--gpus-per-task", "1")
    assert code == 2 and "no node of the Ray cluster" in err and "0 GPU" in err


def test_a_driver_killed_mid_run_resumes_from_the_store(local_ray, cards, sharpbench_home, tmp_path):
    """The driver (a process of its own, on the module's Ray) is killed once two values are stored; the same
    command again computes only the rest."""
    _, collection = built_collection(cards)
    command = [sys.executable, "-m", "sharpbench.cli.main", "evaluate", "--measure", "slow", "--collection",
               "tiny-digits", "--include-path", str(cards), "--no-progress", "--executor", "ray", "--ray-address",
               local_ray, "--no-grouping", "--set", "pause=0.5"]
    environment = {**os.environ, "SHARPBENCH_HOME": str(sharpbench_home)}
    driver = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store_path = sharpbench_home / "results.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _stored(store_path) < 2:
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    _, err = driver.communicate()
    first = _stored(store_path)
    assert 2 <= first < len(collection.models), err.decode()
    resumed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"computed {len(collection.models) - first}, reused {first}" in resumed.stdout
    assert _stored(store_path) == len(collection.models)


def _stored(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        return sqlite3.connect(path).execute("SELECT count(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_a_ray_build_writes_the_files_of_a_local_build(local_ray, cards, tmp_path):
    """Each model trained in a task of its own (one thread, deterministic, as a local build's workers), every
    file written by the driver: checkpoints, initial weights and outcomes byte for byte a local build's."""
    spec = Registry.discover([cards]).collection("tiny-digits")
    local = build_collection(open_collection(spec, tmp_path / "local-home"), progress=False)
    on_ray = build_collection(open_collection(spec, tmp_path / "ray-home"), progress=False, executor=RayExecutor())
    files = sorted(path.relative_to(local.root) for path in local.root.rglob("*.safetensors"))
    assert len(files) == 3 * len(local.models) == 18           # weights, initial weights, outcomes
    assert files == sorted(path.relative_to(on_ray.root) for path in on_ray.root.rglob("*.safetensors"))
    for relative in files:
        assert (local.root / relative).read_bytes() == (on_ray.root / relative).read_bytes(), relative
    provenance = {"device", "seconds"}
    assert [{k: v for k, v in record.items() if k not in provenance} for record in on_ray.manifest["models"]] == \
        [{k: v for k, v in record.items() if k not in provenance} for record in local.manifest["models"]]
    records = [json.loads(path.read_text()) for path in sorted((on_ray.root / "records").glob("*.json"))]
    assert len(records) == 6 and all(record["device"].startswith("cpu on Ray node ") for record in records)


def test_workers_with_a_ray_build_are_refused(cards, capsys):
    code = main(["collection", "build", "tiny-digits", "--include-path", str(cards), "--executor", "ray",
                 "--workers", "2"])
    assert code == 2 and "--workers does not apply with --executor ray" in capsys.readouterr().err


def test_a_worker_verifies_each_checkpoint_it_reads(local_ray, cards, capsys):
    """A checkpoint damaged on the shared storage stops the run with the file's name; the models finished
    before are kept."""
    _, collection = built_collection(cards)
    damaged = collection.root / collection.models[-1].file
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\0")
    code, _, err = _cli(capsys, cards, "weight-norm", "--no-grouping")
    assert code == 2 and err.count("\n") == 1
    assert f"checkpoint {damaged} fails its integrity check" in err


def test_a_ray_run_shows_the_progress_bar_of_a_local_one(local_ray, cards, capsys):
    built_collection(cards)
    code = main(["evaluate", "--measure", "weight-norm", "--collection", "tiny-digits", "--include-path", str(cards),
                 "--executor", "ray", "--no-grouping"])
    err = capsys.readouterr().err
    assert code == 0 and "weight-norm on tiny-digits: 100%" in err and "6/6" in err
