"""The two sharpness kernels of the study: the worst-case maximizer and the average-case noisy losses.

Both solve N independent problems at once (m-sharpness batches): problem i perturbs the flat parameter
vector origin[i] by delta[i] and evaluates `objective(w, inputs[i], labels[i])`. The problems form the
leading dimension of every tensor and go through `torch.func.vmap`, so a step, a projection and the
bookkeeping are a few fused operations for all of them.

The worst case is the study's APGD-style ascent, run on u = delta / c (see perturb), with the reference
code's defects fixed: the loss of each iterate comes from the same forward pass that gives its gradient,
the best point and its gradient are tracked without state-dict copies (on the device with `torch.where`,
or by host decisions on a CPU), and after a step-size halving the ascent really continues from the best
point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch.func import grad_and_value, vmap

from sharpbench.kernels.objective import FlatObjective
from sharpbench.kernels.perturb import PerturbationSet, check_norm

# objective(w, inputs, labels) -> scalar loss of the model at flat parameters w on one batch.
Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def over_problems(function: Callable, problems: int, in_dims: tuple = (0, 0, 0)) -> Callable:
    """`function` mapped over the leading dimension of its arguments: vmap for several problems, a plain
    call for one (vmap's batched weights would send a lone problem down slower batched kernels)."""
    if problems > 1:
        return vmap(function, in_dims=in_dims)

    def single(*args):
        result = function(*(arg if dim is None else arg[0] for arg, dim in zip(args, in_dims)))
        return tuple(r.unsqueeze(0) for r in result) if isinstance(result, tuple) else result.unsqueeze(0)

    return single


def gradient_over_problems(objective: Objective, problems: int) -> Callable:
    """(grad, loss) of `objective` at each problem's point: vmap(grad_and_value) for several problems; for one,
    plain reverse-mode autograd, whose per-call overhead on a small model is a fraction of torch.func's
    (digits MLP: 3.7 ms against 5.9 ms per pass, the plain pass being 3.3 ms; tests/benchmarks/README.md), with
    the gradient written into `out` when it is given and the objective is a FlatObjective."""
    if problems > 1:
        batched = vmap(grad_and_value(objective))
        return lambda w, inputs, labels, out=None: batched(w, inputs, labels)

    def single(w: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor,
               out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if out is not None and isinstance(objective, FlatObjective):
            loss = objective.value_and_grad_into(w[0], inputs[0], labels[0], out[0])
            return out, loss.unsqueeze(0)
        with torch.enable_grad():
            point = w[0].detach().requires_grad_(True)
            loss = objective(point, inputs[0], labels[0])
            grad, = torch.autograd.grad(loss, point)
        return grad.unsqueeze(0), loss.detach().unsqueeze(0)

    return single


@dataclass(frozen=True)
class WorstCaseConfig:
    """Parameters of the worst-case ascent (the scale vector c is given separately); defaults are the study's."""

    rho: float
    norm: str = "linf"
    steps: int = 20
    momentum: float = 0.75
    min_improvement_ratio: float = 0.75
    # the released code's iterates: its L2 step and adaptive L2 projection (`PerturbationSet`), and at a
    # halving the gradient of the best point with the step continuing from the current perturbation
    reference_compat: bool = False

    def __post_init__(self) -> None:
        check_norm(self.norm)
        if not self.rho > 0:
            raise ValueError(f"rho must be > 0, got {self.rho}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


def apgd_checkpoints(steps: int) -> frozenset[int]:
    """Iterations after which APGD may halve its step: ceil(p_j * steps), p_0 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) (for 20 steps: 5, 9, 12, 15, 16, 18, 19)."""
    fractions, points = [0.0, 0.22], [0, math.ceil(0.22 * steps)]
    while points[-1] < steps and points[-1] != points[-2]:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06))
        points.append(math.ceil(fractions[-1] * steps))
    return frozenset(point for point in points[1:] if point < steps)


@dataclass
class AscentState:
    """Everything the ascent carries between iterations; one row per problem, all on the device."""

    delta: torch.Tensor
    previous: torch.Tensor
    grad: torch.Tensor
    loss: torch.Tensor
    best_loss: torch.Tensor
    best_delta: torch.Tensor
    best_grad: torch.Tensor
    step_size: torch.Tensor           # (N, 1)
    step_scale: torch.Tensor          # step_size * c, (N, P)
    improvements: torch.Tensor        # improving iterations since the last checkpoint
    step_at_checkpoint: torch.Tensor
    best_at_checkpoint: torch.Tensor


class WorstCaseAscent:
    """The APGD-style ascent for N problems: `start`, then `advance` once per iteration (with `checkpoint`
    at APGD's checkpoints). `run` does all of it; the pieces exist so that one iteration can be timed.

    Two forms compute the same values bit for bit. On a GPU (`host=False`) the bookkeeping stays on the device
    and never synchronises: the best point and its gradient are picked with `torch.where`. On a CPU
    (`host=True`, the default there) the losses are on the host anyway, so each decision is a Python branch
    that usually skips the copy (when every problem improves, the best point is the new iterate itself), and
    the new point is written into reused buffers: each fresh parameter-sized tensor costs its page faults,
    and on ResNet-18 a `torch.where` into a fresh tensor took 11x a sweep into a reused one. `advance` and
    `checkpoint` never write the buffers of the state they are given (so one state can be advanced twice), but
    may reuse those of older states.
    """

    def __init__(self, objective: Objective, origin: torch.Tensor, c: torch.Tensor, inputs: torch.Tensor,
                 labels: torch.Tensor, config: WorstCaseConfig, initial: torch.Tensor | None = None,
                 host: bool | None = None) -> None:
        self.value_and_grad = gradient_over_problems(objective, len(origin))
        self.forward = over_problems(objective, len(origin))
        self.origin, self.inputs, self.labels, self.config = origin, inputs, labels, config
        self.set = PerturbationSet.of(c, config.rho, config.norm, reference=config.reference_compat)
        self.initial = initial
        self.host = origin.device.type == "cpu" if host is None else host
        # host form: reused storage of the iterates, gradients, step scales, the projected step and the point
        self._iterates: list[torch.Tensor] = []
        self._grads: list[torch.Tensor] = []
        self._scales: list[torch.Tensor] = []
        self._scratch: list[torch.Tensor] = []
        self._point: list[torch.Tensor] = []

    def start(self) -> AscentState:
        """The first pass, at the initial perturbation (delta = 0 unless a random start was given): its loss
        and gradient."""
        if self.initial is None:
            delta = torch.zeros(self.origin.shape, dtype=self.origin.dtype, device=self.origin.device)
            grad, loss = self.value_and_grad(self.origin, self.inputs, self.labels)
        else:
            delta = self.initial
            grad, loss = self.value_and_grad(self.origin + delta, self.inputs, self.labels)
        step_size = torch.full_like(loss, 2 * self.config.rho).unsqueeze(-1)
        return AscentState(delta, delta, grad, loss, loss, delta, grad, step_size, step_size * self.set.c,
                           torch.zeros_like(loss), step_size, loss)

    def advance(self, state: AscentState, last: bool = False) -> AscentState:
        """One iteration: step, project, average, one pass at the new point (forward only when `last`), and
        keep the best point with its gradient."""
        if self.host:
            target = self.set.target(state.delta, state.grad, state.step_scale, out=self._free_buffer(self._scratch, ()))
            # momentum * target + (1 - momentum) * previous: both lie in the convex set, so their average does too.
            free = self._free_buffer(self._iterates, (state.delta, state.previous, state.best_delta))
            delta = torch.lerp(state.previous, target, self.config.momentum, out=free)
            point = torch.add(self.origin, delta, out=self._free_buffer(self._point, ()))
        else:
            target = self.set.target(state.delta, state.grad, state.step_scale)
            delta = torch.lerp(state.previous, target, self.config.momentum)
            point = self.origin + delta
        if last:
            grad, loss = state.grad, self.forward(point, self.inputs, self.labels)
        else:
            out = self._free_buffer(self._grads, (state.grad, state.best_grad)) if self.host else None
            grad, loss = self.value_and_grad(point, self.inputs, self.labels, out)
        improved = loss > state.best_loss
        taken = (state.delta, state.previous, state.best_delta, delta, state.grad, state.best_grad, grad)
        best_loss, best_delta, best_grad = _pick(improved, lambda: (loss, delta, grad),
                                                 (state.best_loss, state.best_delta, state.best_grad), self.host,
                                                 self._rows_into((None, self._iterates, self._grads), taken))
        return AscentState(
            delta=delta, previous=state.delta, grad=grad, loss=loss,
            best_loss=best_loss, best_delta=best_delta, best_grad=best_grad,
            step_size=state.step_size, step_scale=state.step_scale, improvements=state.improvements + improved,
            step_at_checkpoint=state.step_at_checkpoint, best_at_checkpoint=state.best_at_checkpoint,
        )

    def checkpoint(self, state: AscentState, iterations: int) -> AscentState:
        """Halve the step of each problem that improved in fewer than 75% of the `iterations` since the last
        checkpoint, or changed neither its step nor its best loss; those restart from their best point, with
        its gradient and no momentum from the abandoned path."""
        too_few = state.improvements < self.config.min_improvement_ratio * iterations
        stalled = ((state.step_at_checkpoint == state.step_size).squeeze(-1)
                   & (state.best_at_checkpoint == state.best_loss))
        halve = too_few | stalled

        def halved() -> tuple[torch.Tensor, ...]:
            scale = self._free_buffer(self._scales, (state.step_scale,)) if self.host else None
            # the released code reloads the best weights, whose gradient the next step takes, but keeps its
            # perturbation and momentum: the step continues from where the ascent was
            delta, previous = ((state.delta, state.previous) if self.config.reference_compat else
                               (state.best_delta, state.best_delta))
            return (delta, previous, state.best_grad, state.step_size / 2,
                    torch.div(state.step_scale, 2, out=scale))

        taken = (state.delta, state.previous, state.best_delta, state.grad, state.best_grad, state.step_scale)
        delta, previous, grad, step_size, step_scale = _pick(
            halve, halved, (state.delta, state.previous, state.grad, state.step_size, state.step_scale), self.host,
            self._rows_into((self._iterates, self._iterates, self._grads, None, self._scales), taken))
        return AscentState(
            delta=delta, previous=previous, grad=grad,
            loss=state.loss, best_loss=state.best_loss, best_delta=state.best_delta, best_grad=state.best_grad,
            step_size=step_size, step_scale=step_scale, improvements=torch.zeros_like(state.improvements),
            step_at_checkpoint=state.step_size, best_at_checkpoint=state.best_loss,
        )

    def _rows_into(self, pools: tuple[list[torch.Tensor] | None, ...], taken: tuple[torch.Tensor, ...]):
        """For `_pick` in the host form: where a condition is mixed, the i-th picked tensor is written into a
        buffer of pools[i] that is none of `taken` (the given state's and the new state's tensors) nor of the
        tensors `_pick` has in use (None: a fresh tensor, for the per-problem scalars); a `torch.where` into a
        fresh (8, P) tensor on the digits MLP cost its page faults, 0.35 ms a call and 7 calls an iteration."""
        if not self.host:
            return None

        def into(i: int, in_use: list[torch.Tensor]) -> torch.Tensor | None:
            return None if pools[i] is None else self._free_buffer(pools[i], (*taken, *in_use))

        return into

    def _free_buffer(self, pool: list[torch.Tensor], taken: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """A buffer of `pool` that none of `taken` is, added to the pool if there is none (the iterates' pool
        never holds more than five: a mixed checkpoint writes delta and previous while the given state's delta,
        previous and best point are read; the gradients' four, the step scales' three; with nothing taken, the
        pool's one buffer)."""
        for buffer in pool:
            if all(buffer is not tensor for tensor in taken):
                return buffer
        pool.append(torch.empty(self.origin.shape, dtype=self.origin.dtype, device=self.origin.device))
        return pool[-1]

    def run(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All iterations; returns the increase over the unperturbed loss (N,) and the best perturbation
        (N, P). From a random start the unperturbed loss costs one more forward pass."""
        state = self.start()
        if self.initial is None:
            initial_loss = state.loss
        else:
            with torch.no_grad():
                initial_loss = self.forward(self.origin, self.inputs, self.labels)
        steps, last_checkpoint = self.config.steps, 0
        checkpoints = apgd_checkpoints(steps)
        for i in range(steps):
            state = self.advance(state, last=i == steps - 1)
            if i in checkpoints:
                state = self.checkpoint(state, i - last_checkpoint)
                last_checkpoint = i
        return state.best_loss - initial_loss, state.best_delta


def _pick(condition: torch.Tensor, chosen: Callable[[], tuple[torch.Tensor, ...]], kept: tuple[torch.Tensor, ...],
          host: bool, into: Callable[[int, list[torch.Tensor]], torch.Tensor | None] | None = None
          ) -> tuple[torch.Tensor, ...]:
    """Row-wise `chosen()` where `condition` (N,) holds, else `kept`: with `torch.where` on the device, or,
    with host decisions, the tensors themselves when all rows or none agree (no copy; `chosen` is not even
    computed when no row needs it) and `torch.where` only for a mixed condition, the i-th result written into
    into(i, tensors in use) when that gives a buffer (in use: the chosen tensors and the results so far)."""
    if host:
        flags = condition.tolist()
        if not any(flags):
            return kept
        if all(flags):
            return chosen()
    candidates, picked = chosen(), []
    for i, (a, b) in enumerate(zip(candidates, kept)):
        out = None if into is None else into(i, [*candidates, *picked])
        picked.append(torch.where(condition.view(-1, *[1] * (a.dim() - 1)), a, b, out=out))
    return tuple(picked)


def worst_case_increase(objective: Objective, origin: torch.Tensor, c: torch.Tensor, inputs: torch.Tensor,
                        labels: torch.Tensor, config: WorstCaseConfig, initial: torch.Tensor | None = None,
                        host: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For each problem i, max over the set of L_i(origin_i + delta) - L_i(origin_i): the best loss over the
    ascent's iterates, shape (N,), and the best perturbation, shape (N, P).

    origin has shape (N, P) (an expanded view is fine), c shape (P,) or (N, P); `initial` (N, P), inside the
    set, is a random start (default delta = 0, which makes the increase >= 0); `host` chooses the form of the
    bookkeeping (see WorstCaseAscent). Cost: `steps` batched forward+backward passes and one batched forward pass
    (two from a random start).
    """
    return WorstCaseAscent(objective, origin, c, inputs, labels, config, initial, host).run()


def average_case_losses(objective: Objective, origin: torch.Tensor, scale: torch.Tensor, xi: torch.Tensor,
                        inputs: torch.Tensor, labels: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """For each problem i, the sum over its noise rows of L_i(origin_i + scale * xi_is), shape (N,).

    origin: (N, P); scale: rho * c, (P,) or (N, P); xi: (N, S, P); forward passes only; `out`, (N, S, P), takes
    the perturbed weights (a buffer the caller reuses). Sums, so that the caller can split the rows of a problem
    into several calls.
    """
    per_sample = over_problems(objective, xi.shape[1], in_dims=(0, None, None))
    scale = scale if scale.dim() == 1 else scale.unsqueeze(1)
    with torch.no_grad():
        perturbed = torch.addcmul(origin.unsqueeze(1), scale, xi, out=out)
        return over_problems(per_sample, len(origin))(perturbed, inputs, labels).sum(dim=1)
