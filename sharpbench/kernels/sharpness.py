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

from sharpbench.kernels.ascent import Objective, WorstCaseConfig, average_case_losses, over_problems, worst_case_increase
from sharpbench.kernels.flat import FlatModel
from sharpbench.kernels.objective import FlatObjective
from sharpbench.losses import LossFn, cross_entropy
from sharpbench.kernels.perturb import check_norm, sample_noise, sample_start
from sharpbench.kernels.scaling import Scaling

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Execution:
    """How the kernels run; none of this changes the definition of the value.

    bf16: forward and backward passes under bf16 autocast (the perturbation and the bookkeeping stay in
    float32); compile: torch.compile the batched pass (on a GPU, mode "reduce-overhead" adds CUDA graphs);
    chunk: problems (batches, or batch x noise-sample pairs) per vmapped call, None to fit `memory_budget`
    bytes (default: half the free GPU memory, or a quarter of the free RAM up to 256 MiB per call; on a CPU, one at a
    time for models whose pass holds more than 32 MiB).
    """

    bf16: bool = False
    compile: bool = False
    chunk: int | None = None
    memory_budget: int | None = None


def make_objective(flat: FlatModel, loss_fn: LossFn, normalize_logits: bool, bf16: bool) -> FlatObjective:
    """The loss at flat parameters w on one batch, with the study's logit normalization when asked."""
    return FlatObjective(flat, loss_fn, normalize_logits, bf16)


# On a CPU, one vmapped call pays off while its problems' state stays near the caches: for 16 digits MLPs
# (85k parameters) x 8 batches, calls of 32-64 problems (about 250 MiB) ran 1.6x faster than one model at a
# time, and calls of 128 or more problems no faster than one model at a time (tests/benchmarks/README.md).
_CPU_CALL_BYTES = 256 << 20


def _memory_budget(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return min(available // 4, _CPU_CALL_BYTES)


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


def _scales(flat: FlatModel, scaling: Scaling, scale: torch.Tensor | None) -> torch.Tensor:
    """c for every model of the stack, (K, P); `scale` (one model only) replaces the built one."""
    rows = flat.w0.reshape(-1, flat.w0.shape[-1])
    if scale is None:
        return torch.stack([scaling.vector(flat, row) for row in rows])
    if len(rows) != 1 or scale.shape != (flat.trainable,):
        raise ValueError(f"scale must be a flat vector of {flat.trainable} entries for one model, got shape "
                         f"{tuple(scale.shape)} for {len(rows)} model(s)")
    return scale.to(device=rows.device, dtype=rows.dtype).unsqueeze(0)


def _padded(rows: torch.Tensor, size: int) -> torch.Tensor:
    """Draws over the trainable entries, padded with zeros over a stack's carried buffers."""
    return torch.nn.functional.pad(rows, (0, size - rows.shape[-1]))


@dataclass(frozen=True)
class _Problems:
    """Independent problems (model k, batch b, ...) of one chunk: gathered rows, or shared ones for one model."""

    origins: torch.Tensor         # (K, P)
    scales: torch.Tensor          # (K, P)
    models: list[int]

    def origin(self) -> torch.Tensor:
        if len(self.origins) == 1:
            return self.origins[0].expand(len(self.models), self.origins.shape[-1])
        return self.origins[self.models]

    def scale(self) -> torch.Tensor:
        return self.scales[0] if len(self.scales) == 1 else self.scales[self.models]


def worst_case_sharpness(model: nn.Module, batches: Sequence[Batch], **options) -> float:
    """E_S [max_{||delta / c||_p <= rho} L_S(w + delta) - L_S(w)] over the given batches; the options are
    those of `worst_case_sharpness_many`."""
    return worst_case_sharpness_many([model], batches, **options)[0]


def worst_case_sharpness_many(models: Sequence[nn.Module], batches: Sequence[Batch], *, rho: float,
                              norm: str = "linf", adaptive: bool = True, steps: int = 20, restarts: int = 1,
                              normalize_logits: bool = False, scaling: str = "elementwise",
                              perturb_norm_layers: bool = True, perturb_head: bool = True,
                              generator: torch.Generator | None = None, loss_fn: LossFn = cross_entropy,
                              execution: Execution = Execution(), scale: torch.Tensor | None = None,
                              reference_compat: bool = False) -> list[float]:
    """Worst-case sharpness of each same-architecture model, all solved as one set of problems.

    c is |w| (adaptive) or 1, element- or filter-wise, and 0 on the parameter groups left out; `scale` gives it
    instead as a flat vector in `FlatModel.of(model)` order (one model only; for other sets of the same shape,
    such as Keskar et al.'s box rho (|w| + 1)). Restart 0 starts at delta = 0; each further restart at a random
    point of the set, drawn from `generator` batch after batch (the same draws for every model, so a value does
    not depend on which models are evaluated together); each batch keeps its best restart.

    `reference_compat` reproduces the iterates of the study's released code (tml-epfl/sharpness-vs-generalization,
    `eval_APGD_sharpness` as its scripts call it): its L2 step eta * c * g / ||g||, its adaptive L2 projection by
    bisection in delta space (no projection at all when a parameter is exactly 0), and its continuation after a
    halving. It is for reproducing the paper's numbers: the default ascent is the corrected one.
    """
    if reference_compat:
        _check_reference_compat(restarts, scaling, perturb_norm_layers, perturb_head, scale, execution)
    config = WorstCaseConfig(rho=rho, norm=norm, steps=steps, reference_compat=reference_compat)
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    flat = FlatModel.stack(models)
    objective = make_objective(flat, loss_fn, normalize_logits, execution.bf16)
    scales = _scales(flat, Scaling(adaptive, scaling, perturb_norm_layers, perturb_head), scale)
    origins = flat.w0.reshape(len(scales), -1)
    generator = generator or torch.Generator(device=origins.device).manual_seed(0)
    starts = [_padded(sample_start(flat.trainable, rho, norm, generator, restarts - 1), origins.shape[1])
              .to(origins.dtype) for _ in batches]
    chunk = _chunk_size(execution, objective, origins[0], batches[0], len(models) * len(batches) * restarts)
    kernel = torch.compile(worst_case_increase, dynamic=False) if execution.compile else worst_case_increase
    increases = torch.empty(len(models), len(batches), restarts, device=origins.device, dtype=origins.dtype)
    for run in _same_shape_runs(batches):
        problems = [(k, b, r) for b in run for r in range(restarts) for k in range(len(models))]
        for first in range(0, len(problems), chunk):
            ks, bs, rs = (list(column) for column in zip(*problems[first:first + chunk]))
            rows = _Problems(origins, scales, ks)
            inputs, labels = _stacked(batches, bs)
            initial = None
            if any(rs):  # restart r > 0 starts at c * u, u drawn inside the unit-scale set
                u = torch.stack([starts[b][r - 1] if r else torch.zeros_like(origins[0]) for b, r in zip(bs, rs)])
                initial = rows.scale() * u
            # compiled, the device form: one graph without host decisions
            increase, _ = kernel(objective, rows.origin(), rows.scale(), inputs, labels, config, initial,
                                 False if execution.compile else None)
            increases[ks, bs, rs] = increase.to(increases.dtype)
    return increases.amax(dim=2).mean(dim=1).tolist()


def _check_reference_compat(restarts: int, scaling: str, perturb_norm_layers: bool, perturb_head: bool,
                            scale: torch.Tensor | None, execution: Execution) -> None:
    """The released code has one start (its random start is never used), perturbs every parameter elementwise,
    and decides on the host: refuse what it cannot reproduce."""
    departures = [text for text, departs in [
        ("restarts > 1 (its random start is never used)", restarts != 1),
        ("scaling other than elementwise", scaling != "elementwise"),
        ("perturb_norm_layers false", not perturb_norm_layers), ("perturb_head false", not perturb_head),
        ("a given scale", scale is not None), ("compile", execution.compile)] if departs]
    if departures:
        raise ValueError(f"reference_compat reproduces the released code, which has none of: "
                         f"{', '.join(departures)}")


def average_case_sharpness(model: nn.Module, batches: Sequence[Batch], **options) -> float:
    """E_S E_xi [L_S(w + rho c xi) - L_S(w)], xi ~ N(0, I) ("l2") or U[-1, 1] ("linf"); the options are those
    of `average_case_sharpness_many`."""
    return average_case_sharpness_many([model], batches, **options)[0]


def average_case_sharpness_many(models: Sequence[nn.Module], batches: Sequence[Batch], *, rho: float,
                                norm: str = "l2", adaptive: bool = True, samples: int = 20,
                                normalize_logits: bool = False, scaling: str = "elementwise",
                                perturb_norm_layers: bool = True, perturb_head: bool = True,
                                generator: torch.Generator | None = None, loss_fn: LossFn = cross_entropy,
                                execution: Execution = Execution(),
                                scale: torch.Tensor | None = None) -> list[float]:
    """Average-case sharpness of each same-architecture model; c as in `worst_case_sharpness_many`.

    The noise is drawn batch after batch, `samples` rows each, and shared by all models, so a value depends
    neither on chunking nor on which models are evaluated together.
    """
    check_norm(norm)
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    flat = FlatModel.stack(models)
    objective = make_objective(flat, loss_fn, normalize_logits, execution.bf16)
    scales = rho * _scales(flat, Scaling(adaptive, scaling, perturb_norm_layers, perturb_head), scale)
    origins = flat.w0.reshape(len(scales), -1)
    generator = generator or torch.Generator(device=origins.device).manual_seed(0)
    # A chunk counts (model, batch, noise sample) triples: all samples of all models of several batches when
    # they fit, else fewer models, else slices of one batch's samples.
    budget = _chunk_size(execution, objective, origins[0], batches[0], len(models) * len(batches) * samples)
    samples_per_call = min(samples, budget)
    models_per_call = max(1, min(len(models), budget // samples_per_call))
    batches_per_call = max(1, budget // (samples_per_call * len(models))) if models_per_call == len(models) else 1
    kernel = torch.compile(average_case_losses, dynamic=False) if execution.compile else average_case_losses
    increases = torch.empty(len(models), len(batches), device=origins.device, dtype=origins.dtype)
    reused: dict[tuple, torch.Tensor] = {}

    def reusable(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A buffer kept for the calls of one shape (on a CPU, each fresh one costs its page faults); its
        columns over a stack's carried buffers are zeroed once (the noise's stay zero: they are never drawn)
        and the rest is left unset, as every call writes it (a zeroed 8 x 20-row digits-MLP buffer, 54 MB,
        cost a memset of its own)."""
        if (name, shape) not in reused:
            reused[name, shape] = torch.empty(shape, device=origins.device, dtype=origins.dtype)
            reused[name, shape][..., flat.trainable:].zero_()
        return reused[name, shape]

    for run in _same_shape_runs(batches):
        for start in range(0, len(run), batches_per_call):
            chunk_batches = run[start:start + batches_per_call]
            totals = torch.zeros(len(models), len(chunk_batches), device=origins.device, dtype=origins.dtype)
            initial = torch.zeros_like(totals)
            for first in range(0, samples, samples_per_call):
                count = min(samples_per_call, samples - first)
                xi = reusable("noise", (len(chunk_batches), count, origins.shape[1]))
                for j in range(len(chunk_batches)):
                    sample_noise(scales[0, :flat.trainable], norm, generator, count, out=xi[j])
                for low in range(0, len(models), models_per_call):
                    ks = list(range(low, min(len(models), low + models_per_call)))
                    pairs = [(k, j) for k in ks for j in range(len(chunk_batches))]
                    rows = _Problems(origins, scales, [k for k, _ in pairs])
                    inputs, labels = _stacked(batches, [chunk_batches[j] for _, j in pairs])
                    noise = xi if len(ks) == 1 else xi[[j for _, j in pairs]]
                    perturbed = None if execution.compile else reusable("perturbed", tuple(noise.shape))
                    losses = kernel(objective, rows.origin(), rows.scale(), noise, inputs, labels, perturbed)
                    totals[ks] += losses.view(len(ks), len(chunk_batches)).to(totals.dtype)
                    if first == 0:
                        with torch.no_grad():
                            unperturbed = over_problems(objective, len(pairs))(rows.origin(), inputs, labels)
                        initial[ks] = unperturbed.view(len(ks), len(chunk_batches)).to(totals.dtype)
            increases[:, chunk_batches] = totals / samples - initial
    return increases.mean(dim=1).tolist()
