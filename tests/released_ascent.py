"""The worst-case ascent of the study's released code, transcribed for the tests from its description (tml-epfl/
sharpness-vs-generalization, `eval_APGD_sharpness` and `weight_ascent_step_momentum`, as its scripts call them:
no random start, one restart): a model whose parameters are moved in place, one dictionary of perturbations per
parameter, the loss of each iterate from a forward pass of its own. Independent of sharpbench's kernels, which
`reference_compat=True` must agree with.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from oracle import checkpoints
from torch import nn


def _weighted_norm(deltas: dict, origin: dict, adaptive: bool) -> torch.Tensor:
    return sum(((deltas[p] / (origin[p].abs() if adaptive else 1)) ** 2).sum() for p in deltas) ** 0.5


def _step(model: nn.Module, x, y, origin: dict, deltas: dict, previous: dict, step_size: float, rho: float,
          adaptive: bool, norm: str) -> tuple[dict, dict]:
    backup = {p: deltas[p].clone() for p in deltas}
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        if norm == "l2":
            grad_norm = sum(p.grad.norm() ** 2 for p in model.parameters()) ** 0.5
            for p in model.parameters():
                deltas[p] += step_size / (grad_norm + 1e-12) * p.grad * (origin[p].abs() if adaptive else 1)
        else:
            for p in model.parameters():
                deltas[p] += step_size * p.grad.sign() * (origin[p].abs() if adaptive else 1)
    model.zero_grad()
    with torch.no_grad():
        if norm == "l2":
            if not adaptive:
                size = _weighted_norm(deltas, origin, False)
                if size > rho:
                    for p in deltas:
                        deltas[p] *= rho / size
            else:
                lmbd, limit = 0.1, 10.0
                low, high = 0.0, limit
                shrunk = {p: deltas[p].clone() for p in deltas}
                new = _weighted_norm(shrunk, origin, True)
                if new > rho:
                    while (new - rho).abs() > 1e-5:
                        for p in deltas:
                            shrunk[p] = deltas[p] / (1 + 2 * lmbd * (1 / origin[p].abs()) ** 2)
                        new = _weighted_norm(shrunk, origin, True)
                        if new > rho:
                            lmbd, low = (lmbd + high) / 2, lmbd
                        else:
                            lmbd, high = (low + lmbd) / 2, lmbd
                        if limit - high < 1e-2:
                            limit, high = limit * 2, high * 2
                deltas = {p: shrunk[p].clone() for p in shrunk}
        else:
            for p in deltas:
                bound = (origin[p].abs() if adaptive else torch.ones_like(origin[p])) * rho
                deltas[p] = torch.max(torch.min(deltas[p], bound), -bound)
        for p in model.parameters():
            deltas[p] = 0.75 * deltas[p] + 0.25 * previous[p]
            p.data = origin[p] + deltas[p]
            previous[p] = backup[p]
    return deltas, previous


def released_sharpness(model: nn.Module, batches, rho: float, steps: int = 20, adaptive: bool = True,
                       norm: str = "linf") -> float:
    """The mean over batches of the best loss over the ascent's iterates minus the unperturbed loss."""
    model.eval()
    original_state = copy.deepcopy(model.state_dict())
    origin = {p: p.detach().clone() for p in model.parameters()}
    schedule = checkpoints(steps)
    increases = []
    for x, y in batches:
        with torch.no_grad():
            initial = F.cross_entropy(model(x), y).item()
        deltas = {p: torch.zeros_like(p) for p in model.parameters()}
        previous = {p: deltas[p].clone() for p in deltas}
        worst_state = copy.deepcopy(model.state_dict())
        previous_worst = worst = initial
        step_size = previous_step_size = 2 * rho
        previous_checkpoint, updates = 0, 0
        for i in range(steps):
            deltas, previous = _step(model, x, y, origin, deltas, previous, step_size, rho, adaptive, norm)
            with torch.no_grad():
                loss = F.cross_entropy(model(x), y).item()
            if loss > worst:
                worst, worst_state, updates = loss, copy.deepcopy(model.state_dict()), updates + 1
            if i in schedule:
                few = updates < 0.75 * (i - previous_checkpoint)
                stalled = previous_step_size == step_size and previous_worst == worst
                previous_step_size, previous_worst, previous_checkpoint, updates = step_size, worst, i, 0
                if few or stalled:
                    step_size *= 0.5
                    model.load_state_dict(worst_state)
        increases.append(worst - initial)
        model.load_state_dict(original_state)
    return sum(increases) / len(increases)
