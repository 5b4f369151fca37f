"""Worst-case and average-case sharpness of a model over m-sharpness batches (the study's definitions).

Each batch gets its own maximizer (or its own noise draws) and the value is the mean over batches of the
raw loss increase: not divided by rho, not normalized by the loss. The model is only read: the kernels
evaluate it functionally at perturbed parameters. Batches of equal shape are solved together through
`torch.func.vmap`, in chunks that fit a memory budget.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from sharpbench.ascent import Objective, WorstCaseConfig, average_case_losses, over_problems, worst_case_increase
from sharpbench.flat import FlatModel
from sharpbench.losses import LossFn, cross_entropy, with_normalized_logits
from sharpbench.perturb import check_norm, sample_noise, scale_vector

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Execution:
    """How the kernels run; none of this changes the definition of the value.

    bf16: forward and backward passes under bf16 autocast (the perturbation and the bookkeeping stay in
    float32); compile: torch.compile the batched pass (on a GPU, mode "reduce-overhead" adds CUDA graphs);
    chunk: problems (batches, or batch x noise-sample pairs) per vmapped call, None to fit `memory_budget`
    bytes (default: half the free GPU memory, or a quarter of the free RAM up to 4 GiB; on a CPU, one at a
    time for models whose pass holds more than 32 MiB).
    """

    bf16: bool = False
    compile: bool = False
    chunk: int | None = None
    memory_budget: int | None = None


def make_objective(flat: FlatModel, loss_fn: LossFn, normalize_logits: bool, bf16: bool) -> Objective:
    """The loss at flat parameters w on one batch, with the study's logit normalization when asked."""
    loss = with_normalized_logits(loss_fn) if normalize_logits else loss_fn
    device_type = flat.w0.device.type

    def objective(w: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not bf16:
            return loss(flat.logits(w, inputs), labels)
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            logits = flat.logits(w, inputs)
        return loss(logits.float(), labels)

    return objective


def _memory_budget(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return min(available // 4, 4 << 30)


def _bytes_per_problem(objective: Objective, w0: torch.Tensor, batch: Batch) -> int:
    """What one problem holds: the tensors autograd saves in one pass (counted by a hook) plus the ascent's
    state, about ten parameter-sized vectors."""
    saved = 0

    def count(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(count, lambda tensor: tensor):
        objective(w0.detach().clone().requires_grad_(True), *batch)
    return saved + 10 * w0.numel() * w0.element_size()


# On a CPU, vmap pays off only while the passes are small enough for per-operation overhead to dominate: for
# a ResNet-18 at CIFAR shape, vmapped (grouped) convolutions were 1.5x slower than one batch at a time,
# while a digits MLP ran 2x faster vmapped (tests/benchmarks/README.md).
_CPU_VMAP_LIMIT = 32 << 20


def _chunk_size(execution: Execution, objective: Objective, w0: torch.Tensor, batch: Batch, problems: int) -> int:
    if execution.chunk is not None:
        return max(1, execution.chunk)
    if problems == 1:
        return 1
    per_problem = _bytes_per_problem(objective, w0, batch)
    if w0.device.type == "cpu" and per_problem > _CPU_VMAP_LIMIT:
        return 1
    budget = execution.memory_budget or _memory_budget(w0.device)
    return max(1, min(problems, budget // per_problem))


def _same_shape_runs(batches: Sequence[Batch]) -> Iterator[list[int]]:
    """Indices of consecutive batches with equal shapes (in practice: all but a smaller last batch)."""
    run: list[int] = []
    for index, (inputs, labels) in enumerate(batches):
        if run and (batches[run[0]][0].shape, batches[run[0]][1].shape) != (inputs.shape, labels.shape):
            yield run
            run = []
        run.append(index)
    if run:
        yield run


def _stacked(batches: Sequence[Batch], indices: list[int]) -> Batch:
    return torch.stack([batches[i][0] for i in indices]), torch.stack([batches[i][1] for i in indices])


def _scale(flat: FlatModel, adaptive: bool, scale: torch.Tensor | None) -> torch.Tensor:
    if scale is None:
        return scale_vector(flat.w0, adaptive)
    if scale.shape != flat.w0.shape:
        raise ValueError(f"scale must be a flat vector of {flat.w0.numel()} entries, got shape {tuple(scale.shape)}")
    return scale.to(device=flat.w0.device, dtype=flat.w0.dtype)


def worst_case_sharpness(model: nn.Module, batches: Sequence[Batch], *, rho: float, norm: str = "linf",
                         adaptive: bool = True, steps: int = 20, normalize_logits: bool = False,
                         loss_fn: LossFn = cross_entropy, execution: Execution = Execution(),
                         scale: torch.Tensor | None = None) -> float:
    """E_S [max_{||delta / c||_p <= rho} L_S(w + delta) - L_S(w)] over the given batches.

    c is |w| (adaptive) or 1, unless `scale` gives it as a flat vector in `FlatModel.of(model)` order (for
    other sets of the same shape, such as Keskar et al.'s box rho (|w| + 1)).
    """
    config = WorstCaseConfig(rho=rho, norm=norm, steps=steps)
    flat = FlatModel.of(model)
    objective = make_objective(flat, loss_fn, normalize_logits, execution.bf16)
    c = _scale(flat, adaptive, scale)
    chunk = _chunk_size(execution, objective, flat.w0, batches[0], len(batches))
    kernel = torch.compile(worst_case_increase, dynamic=False) if execution.compile else worst_case_increase
    increases = []
    for run in _same_shape_runs(batches):
        for start in range(0, len(run), chunk):
            indices = run[start:start + chunk]
            shape = (len(indices), flat.w0.numel())
            inputs, labels = _stacked(batches, indices)
            increase, _ = kernel(objective, flat.w0.expand(shape), c, inputs, labels, config)
            increases.append(increase)
    return torch.cat(increases).mean().item()


def average_case_sharpness(model: nn.Module, batches: Sequence[Batch], *, rho: float, norm: str = "l2",
                           adaptive: bool = True, samples: int = 20, normalize_logits: bool = False,
                           generator: torch.Generator | None = None, loss_fn: LossFn = cross_entropy,
                           execution: Execution = Execution(), scale: torch.Tensor | None = None) -> float:
    """E_S E_xi [L_S(w + rho c xi) - L_S(w)], xi ~ N(0, I) ("l2") or U[-1, 1] ("linf"); c as in
    `worst_case_sharpness`.

    The noise is drawn batch after batch, `samples` rows each, so the value does not depend on chunking.
    """
    check_norm(norm)
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    flat = FlatModel.of(model)
    objective = make_objective(flat, loss_fn, normalize_logits, execution.bf16)
    c = _scale(flat, adaptive, scale)
    if generator is None:
        generator = torch.Generator(device=flat.w0.device).manual_seed(0)
    # A chunk counts (batch, noise sample) pairs: whole batches when all their samples fit, else one batch
    # at a time in slices of its samples.
    pairs = _chunk_size(execution, objective, flat.w0, batches[0], len(batches) * samples)
    batches_per_call, samples_per_call = max(1, pairs // samples), min(samples, pairs)
    kernel = torch.compile(average_case_losses, dynamic=False) if execution.compile else average_case_losses
    scale = rho * c
    increases = []
    for run in _same_shape_runs(batches):
        for start in range(0, len(run), batches_per_call):
            indices = run[start:start + batches_per_call]
            inputs, labels = _stacked(batches, indices)
            origin = flat.w0.expand(len(indices), flat.w0.numel())
            with torch.no_grad():
                initial_loss = over_problems(objective, len(indices))(origin, inputs, labels)
            total = torch.zeros_like(initial_loss)
            for first in range(0, samples, samples_per_call):
                count = min(samples_per_call, samples - first)
                xi = torch.stack([sample_noise(c, norm, generator, count) for _ in indices])
                total = total + kernel(objective, origin, scale, xi, inputs, labels)
            increases.append(total / samples - initial_loss)
    return torch.cat(increases).mean().item()
