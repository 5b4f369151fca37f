"""Computing a run's values, or building a collection, on a Ray cluster. An evaluation sends each group of models
(the groups a local run forms) as one Ray task that loads its checkpoints from the collection's folder (every one
sha256-verified), computes the guarded values and sends them back; a build sends each model to train or fetch as
one task, which returns the weights and outcomes unsaved. The driver alone writes the results store and the
collection's files, as results arrive.

Ray is an optional dependency (`pip install "sharpbench[ray]"`). A worker must see the collection root and the
files of any include-path measure at the driver's paths (one machine, or a shared file system) and have the same
sharpbench installed. Ray retries a task whose worker process died; a measure's error inside a task stops the run
with sharpbench's own message, and a task that runs out of memory is reported with the models it was on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from sharpbench.collection.builder import produce_remote
from sharpbench.collection.collection import Collection
from sharpbench.collection.records import ModelRecord
from sharpbench.collection.sources import ModelSource, Produced
from sharpbench.collection.spec import CollectionSpec, ModelPoint
from sharpbench.cards.measure_card import MeasureSpec
from sharpbench.data.locate import DataPaths
from sharpbench.errors import Hint, MeasureError, SharpbenchError
from sharpbench.evaluation.guard import batches_snapshot
from sharpbench.evaluation.run import GroupValues, compute_group, describe_device, plan_groups
from sharpbench.measure import Batch

INSTALL = 'pip install "sharpbench[ray]"'


@dataclass(frozen=True)
class RayExecutor:
    """Computes on the Ray cluster at `address` (None: start a local one, or use the one this process is already
    connected to), one task per group of models, each asking for `cpus_per_task` CPUs (its torch threads) and
    `gpus_per_task` GPUs (a task with a GPU computes on it); a task whose worker dies is retried `retries` times."""

    address: str | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    retries: int = 3

    @property
    def description(self) -> str:
        where = "cuda" if self.gpus_per_task else "cpu"
        return (f"ray ({self.address or 'local'}): {where}, {self.cpus_per_task:g} CPU and "
                f"{self.gpus_per_task:g} GPU per task")

    def compute(self, spec: MeasureSpec, collection: Collection, records: list[ModelRecord],
                params: dict[str, Any], *, n: int | None, m: int | None, seed: int,
                many: bool) -> Iterator[GroupValues]:
        if not records:
            return
        ray = connect(self.address)
        self._check_resources(ray)
        groups = plan_groups(collection, records, many)
        batches = ray.put(collection.sharpness_batches(n, m))     # once, in the object store, for every task
        task = ray.remote(_compute_task).options(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task,
                                                 max_retries=self.retries, retry_exceptions=False)
        code = spec.key_inputs()
        pending = {task.remote(spec, code, collection.spec, collection.root, collection.paths, group, params,
                               batches, seed, self.threads): group for group in groups}
        for group, (values, seconds, where) in self._as_finished(
                ray, pending, lambda group: f"the Ray task of {spec.name} on model(s) "
                                            f"{', '.join(record.id for record in group)}"):
            yield group, values, seconds, where

    def produce(self, collection: Collection, source: ModelSource, points: list[ModelPoint],
                score: bool) -> Iterator[tuple[ModelPoint, Produced, float, str]]:
        """Train (or fetch) each model of a build as one Ray task, one thread each as a local build's workers, and
        yield what each produced as it finishes; the builder saves it (`BuildExecutor`)."""
        if not points:
            return
        ray = connect(self.address)
        self._check_resources(ray)
        task = ray.remote(_produce_task).options(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task,
                                                 max_retries=self.retries, retry_exceptions=False)
        pending = {task.remote(collection.spec, collection.root, collection.paths, source, point, score): point
                   for point in points}
        for point, (produced, seconds, where) in self._as_finished(
                ray, pending, lambda point: f"the Ray task building model {point.id} of {collection.spec.name}"):
            yield point, produced, seconds, where

    def _as_finished(self, ray: Any, pending: dict[Any, Any], what: Callable[[Any], str]) -> Iterator[tuple[Any, Any]]:
        """(item, its task's result) as tasks finish; a failed task is the run's error, said by `_result`, and
        whatever ends the loop (a failure, an interrupt, a closed generator) cancels the tasks left."""
        try:
            while pending:
                [ready], _ = ray.wait(list(pending), num_returns=1)
                item = pending.pop(ready)
                yield item, _result(ray, ready, what(item), self.retries)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    @property
    def threads(self) -> int:
        """torch threads per task: its CPUs, at least one."""
        return max(1, int(self.cpus_per_task))

    def _check_resources(self, ray: Any) -> None:
        """Refuse, before sending anything, tasks no node of the cluster could ever run (they would wait forever)."""
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        if not any(node.get("CPU", 0) >= self.cpus_per_task and node.get("GPU", 0) >= self.gpus_per_task
                   for node in nodes):
            have = "; ".join(f"{node.get('CPU', 0):g} CPU, {node.get('GPU', 0):g} GPU" for node in nodes) or "none"
            raise SharpbenchError(f"no node of the Ray cluster at {self.address or 'local'} has "
                                  f"{self.cpus_per_task:g} CPU and {self.gpus_per_task:g} GPU for one task (its "
                                  f"nodes: {have}); lower --cpus-per-task or --gpus-per-task, or add such a node.")


def connect(address: str | None) -> Any:
    """The `ray` module, connected to the cluster at `address` (None: the one this process is connected to, or
    a new local one); a missing Ray or an unreachable address is a SharpbenchError naming the fix."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise SharpbenchError(f"cannot reach a Ray cluster at {address} ({str(error).splitlines()[0]}); start one "
                              f"with `ray start --head` there, or leave out --ray-address to start a local one."
                              ) from None
    return ray


def require_ray() -> Any:
    """The `ray` module, or a SharpbenchError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SharpbenchError(f"--executor ray needs Ray, which is not installed: {INSTALL}.") from None
    return ray


def _result(ray: Any, ref: Any, task: str, retries: int) -> Any:
    """A finished task's result, or the run's error as sharpbench says it (`task` names the task: what it
    computed and on which models)."""
    from ray import exceptions

    try:
        return ray.get(ref)
    except exceptions.RayTaskError as error:
        cause = error.cause
        if isinstance(cause, SharpbenchError):
            raise cause from None
        if _out_of_memory(cause):
            raise _memory_error(task, f"{type(cause).__name__}: {str(cause).splitlines()[0]}") from None
        raise SharpbenchError(f"{task} failed: {type(cause).__name__}: "
                              f"{str(cause).splitlines()[0] if str(cause) else '(no message)'}; what finished "
                              f"before is kept.", hints=[Hint("resume")]) from None
    except exceptions.OutOfMemoryError:
        raise _memory_error(task, "Ray's memory monitor stopped it") from None
    except exceptions.WorkerCrashedError:
        raise SharpbenchError(f"{task}: its worker died {retries + 1} times (killed, or crashed in native code); "
                              f"what finished before is kept.", hints=[Hint("resume")]) from None


def _out_of_memory(error: BaseException | None) -> bool:
    """Whether an exception raised inside a task says that memory ran out (torch's CPU or CUDA allocator)."""
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("not enough memory" in text or "out of memory" in text
                                                or "can't allocate memory" in text)


def _memory_error(task: str, how: str) -> SharpbenchError:
    return SharpbenchError(f"{task} ran out of memory ({how}); give each task more memory (fewer tasks per node: "
                           f"raise --cpus-per-task or --gpus-per-task), or for an evaluation one model per task "
                           f"with --no-grouping; what finished before is kept.", hints=[Hint("resume")])


def _compute_task(spec: MeasureSpec, code: dict[str, Any], collection_spec: CollectionSpec, root: Path,
                  paths: DataPaths | None, records: list[ModelRecord], params: dict[str, Any], batches: list[Batch],
                  seed: int, threads: int) -> tuple[list[float], float, str]:
    """One Ray task: the guarded values of one group of models, computed on the task's GPU if it has one, by the
    code the driver's measure key names (`code`: its digests) and no other."""
    if spec.key_inputs() != code:
        raise SharpbenchError(f"the code of measure '{spec.name}' on Ray worker {_node()} differs from the "
                              f"driver's ({spec.key_inputs()['source_sha256'][:12]} against "
                              f"{code['source_sha256'][:12]} for {spec.function}, kernels "
                              f"{spec.key_inputs()['kernels_sha256'][:12]} against {code['kernels_sha256'][:12]}); "
                              f"install the same sharpbench and card files on every node.")
    torch.set_num_threads(threads)
    device = _task_device()
    collection = Collection(collection_spec, root, paths)
    batches = [(inputs.to(device), labels.to(device)) for inputs, labels in batches]
    reference = batches_snapshot(batches)
    group = [(record, collection.load_model(record).to(device)) for record in records]   # sha256-verified
    try:
        values, seconds = compute_group(spec, collection, params, group, batches, reference, device, seed)
    except MeasureError as error:     # the guard names the measure's exception; memory is the task's to say
        if _out_of_memory(error.__cause__):
            models = ", ".join(record.id for record in records)
            raise _memory_error(f"the Ray task of {spec.name} on model(s) {models}",
                                f"{type(error.__cause__).__name__} on {describe_device(device)}") from None
        raise
    return values, seconds, f"{describe_device(device)} on Ray node {_node()}"


def _produce_task(collection_spec: CollectionSpec, root: Path, paths: DataPaths | None, source: ModelSource,
                  point: ModelPoint, score: bool) -> tuple[Produced, float, str]:
    """One Ray task of a build: one model trained (or fetched) and scored, returned unsaved."""
    device = _task_device()
    produced, seconds = produce_remote(Collection(collection_spec, root, paths), source, point, device, score)
    return produced, seconds, f"{device} on Ray node {_node()}"


def _task_device() -> torch.device:
    """The task's GPU when Ray gave it one, else the CPU (a task without one must not use a GPU its node has)."""
    import ray

    return torch.device("cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu")


def _node() -> str:
    """The node this task runs on: its address and the start of its Ray id (nodes may share an address)."""
    import ray

    return f"{ray.util.get_node_ip_address()} ({ray.get_runtime_context().get_node_id()[:8]})"
