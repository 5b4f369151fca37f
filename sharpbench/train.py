"""Training recipes for building collections, and the error/loss evaluation every collection uses.

The loop is written for tiny models, whose cost is Python overhead: the data are in-memory tensors, each
epoch permutes them once (so a batch is a slice, not a gather), gradients come from
``torch.autograd.grad`` and the SGD update is four fused ``torch._foreach_*`` calls. The loss is mean
cross-entropy everywhere.

``RECIPE_PARAMS`` lists the fields of a card's ``training`` section; any of the numeric ones may instead be
varied by the card's grid. Add an optimizer or schedule by extending ``OPTIMIZERS`` / ``SCHEDULES``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from sharpbench.data import Param

Tensor = torch.Tensor


def _constant(base: float, step: int, total: int) -> float:
    return base


def _cosine(base: float, step: int, total: int) -> float:
    return base * 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))


SCHEDULES: dict[str, Callable[[float, int, int], float]] = {"constant": _constant, "cosine": _cosine}
OPTIMIZERS = ("sgd",)


def _positive(v: Any) -> bool:
    return v > 0


RECIPE_PARAMS: dict[str, Param] = {
    "optimizer": Param(str, default="sgd", check=lambda v: v in OPTIMIZERS, expected=f"one of {list(OPTIMIZERS)}"),
    "learning_rate": Param(float, check=_positive, expected="a positive number"),
    "batch_size": Param(int, check=_positive, expected="a positive integer"),
    "epochs": Param(int, check=_positive, expected="a positive integer"),
    "momentum": Param(float, default=0.0, check=lambda v: 0 <= v < 1, expected="a number in [0, 1)"),
    "nesterov": Param(bool, default=False),
    "weight_decay": Param(float, default=0.0, check=lambda v: v >= 0, expected="a number >= 0"),
    "schedule": Param(str, default="constant", check=lambda v: v in SCHEDULES, expected=f"one of {sorted(SCHEDULES)}"),
}


def recipe_config(recipe: dict[str, Any], hparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full recipe: defaults, then the card's ``training`` section, then the model's grid values."""
    config = {name: p.default for name, p in RECIPE_PARAMS.items() if p.default is not ...}
    config.update(recipe)
    for name, value in (hparams or {}).items():
        if name in RECIPE_PARAMS:
            config[name] = value
    missing = [name for name in RECIPE_PARAMS if name not in config]
    if missing:
        raise ValueError(f"training recipe needs {missing}")
    return config


def train_model(model: nn.Module, x: Tensor, y: Tensor, recipe: dict[str, Any], hparams: dict[str, Any],
                seed: int) -> None:
    """Train ``model`` in place with mini-batch SGD on (x, y); deterministic for a fixed seed and thread count.

    The batch order comes from a generator seeded by ``seed`` (a fresh permutation each epoch; the last
    batch of an epoch may be smaller). Weight decay is the classic coupled L2 term of torch's SGD. A run
    whose weights stop being finite is stopped early (its train error then excludes it)."""
    config = recipe_config(recipe, hparams)
    base_lr, batch_size, epochs = float(config["learning_rate"]), int(config["batch_size"]), int(config["epochs"])
    momentum, weight_decay, nesterov = float(config["momentum"]), float(config["weight_decay"]), bool(config["nesterov"])
    schedule = SCHEDULES[config["schedule"]]
    params = [p for p in model.parameters() if p.requires_grad]
    buffers = [torch.zeros_like(p) for p in params]
    generator = torch.Generator().manual_seed(int(seed))
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    total, step = epochs * steps_per_epoch, 0
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator)
        xs, ys = x[perm], y[perm]
        for start in range(0, n, batch_size):
            loss = F.cross_entropy(model(xs[start:start + batch_size]), ys[start:start + batch_size])
            grads = torch.autograd.grad(loss, params)
            lr = schedule(base_lr, step, total)
            with torch.no_grad():
                if weight_decay:
                    torch._foreach_add_(grads, params, alpha=weight_decay)
                if momentum:
                    torch._foreach_mul_(buffers, momentum)
                    torch._foreach_add_(buffers, grads)
                    if nesterov:
                        torch._foreach_add_(grads, buffers, alpha=momentum)
                        update = grads
                    else:
                        update = buffers
                else:
                    update = grads
                torch._foreach_add_(params, update, alpha=-lr)
            step += 1
        if not math.isfinite(float(loss.detach())):
            break
    model.eval()


@torch.no_grad()
def evaluate_errors(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 4096) -> tuple[float, float]:
    """(error rate, mean cross-entropy) of ``model`` in eval mode on (x, y); restores the model's mode."""
    was_training = model.training
    model.eval()
    wrong, loss_sum = 0, 0.0
    for start in range(0, x.shape[0], batch_size):
        logits = model(x[start:start + batch_size]).float()
        target = y[start:start + batch_size]
        wrong += int((logits.argmax(dim=1) != target).sum())
        loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
    model.train(was_training)
    n = max(int(x.shape[0]), 1)
    return wrong / n, loss_sum / n
