"""A straightforward implementation of the sharpness definitions, kept as the oracle of the fast kernels.

It follows the reference code's structure: it perturbs the model in place, loops over parameter tensors in
Python, treats one batch at a time, evaluates each iterate's loss with an extra forward pass, copies the
state on each improvement and reads every loss back to the host. It computes the same mathematics as
sharpbench.kernels.ascent (APGD on u = delta / c), independently written, so the two must agree.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


def checkpoints(steps: int) -> list[int]:
    """The iterations after which APGD may halve its step (the study's schedule, written out again here)."""
    p, w = [0.0, 0.22], [0, math.ceil(steps * 0.22)]
    while w[-1] < steps and w[-1] != w[-2]:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
        w.append(math.ceil(p[-1] * steps))
    return w[1:]


def _loss(model, x, y, normalize_logits):
    logits = model(x)
    if normalize_logits:
        centered = logits - logits.mean(dim=-1, keepdim=True)
        logits = centered / centered.norm(dim=-1, keepdim=True).clamp_min(1e-10)
    return F.cross_entropy(logits, y)


def _project(delta, scale, rho, norm):
    if norm == "linf":
        return [torch.max(torch.min(d, rho * s), -rho * s) for d, s in zip(delta, scale)]
    total = 0.0
    for d, s in zip(delta, scale):
        safe = torch.where(s > 0, s, torch.ones_like(s))
        total += (torch.where(s > 0, d / safe, torch.zeros_like(d)) ** 2).sum().item()
    radius = math.sqrt(total)
    factor = min(1.0, rho / radius) if radius > 0 else 1.0
    return [torch.where(s > 0, d * factor, torch.zeros_like(d)) for d, s in zip(delta, scale)]


def worst_case(model: nn.Module, batches, *, rho, norm, adaptive, steps=20, normalize_logits=False) -> float:
    model = copy.deepcopy(model).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    origin = [p.detach().clone() for p in params]
    scale = [o.abs() if adaptive else torch.ones_like(o) for o in origin]
    schedule = checkpoints(steps)
    total = 0.0
    for x, y in batches:
        for p, o in zip(params, origin):
            p.data = o.clone()
        with torch.no_grad():
            initial = _loss(model, x, y, normalize_logits).item()
        delta = [torch.zeros_like(o) for o in origin]
        previous = [torch.zeros_like(o) for o in origin]
        best_loss, best_delta = initial, copy.deepcopy(delta)
        step, prev_step, prev_best, last_cp, updates = 2 * rho, 2 * rho, initial, 0, 0
        for i in range(steps):
            model.zero_grad()
            _loss(model, x, y, normalize_logits).backward()
            grads = [p.grad.detach().clone() for p in params]
            if norm == "linf":
                moved = [d + step * g.sign() * s for d, g, s in zip(delta, grads, scale)]
            else:
                length = math.sqrt(sum(((s * g) ** 2).sum().item() for g, s in zip(grads, scale)))
                moved = [d + step * s * s * g / (length + 1e-12) for d, g, s in zip(delta, grads, scale)]
            target = _project(moved, scale, rho, norm)
            new = [0.75 * t + 0.25 * q for t, q in zip(target, previous)]
            previous, delta = delta, new
            for p, o, d in zip(params, origin, delta):
                p.data = o + d
            with torch.no_grad():
                current = _loss(model, x, y, normalize_logits).item()
            if current > best_loss:
                best_loss, best_delta = current, copy.deepcopy(delta)
                updates += 1
            if i in schedule:
                too_few = updates < 0.75 * (i - last_cp)
                stalled = prev_step == step and prev_best == best_loss
                prev_step, prev_best, last_cp, updates = step, best_loss, i, 0
                if too_few or stalled:
                    step /= 2
                    delta = copy.deepcopy(best_delta)
                    previous = copy.deepcopy(best_delta)
                    for p, o, d in zip(params, origin, delta):
                        p.data = o + d
        total += best_loss - initial
    return total / len(batches)


def average_case(model: nn.Module, batches, *, rho, norm, adaptive, samples=20, normalize_logits=False,
                 seed=0) -> float:
    model = copy.deepcopy(model).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    origin = [p.detach().clone() for p in params]
    generator = torch.Generator().manual_seed(seed)
    size = sum(p.numel() for p in params)
    total = 0.0
    with torch.no_grad():
        for x, y in batches:
            for p, o in zip(params, origin):
                p.data = o.clone()
            initial = _loss(model, x, y, normalize_logits).item()
            batch_total = 0.0
            for _ in range(samples):
                if norm == "l2":
                    xi = torch.randn(size, generator=generator, dtype=origin[0].dtype)
                else:
                    xi = torch.rand(size, generator=generator, dtype=origin[0].dtype) * 2 - 1
                offset = 0
                for p, o in zip(params, origin):
                    piece = xi[offset:offset + o.numel()].view_as(o)
                    offset += o.numel()
                    p.data = o + rho * (o.abs() if adaptive else 1.0) * piece
                batch_total += _loss(model, x, y, normalize_logits).item() - initial
            total += batch_total / samples
    return total / len(batches)
