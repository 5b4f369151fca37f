"""The training loop of a collection's grid, written for tiny models, whose cost is Python overhead.

The data are in-memory tensors, each epoch permutes them once (so a batch is a slice, not a gather), gradients
come from ``torch.autograd.grad`` and the SGD update is four fused ``torch._foreach_*`` calls (Adam and AdamW use
torch.optim). Options: a stop at a training loss (Jiang et al. train to cross-entropy 0.01), random crops and
flips, and SAM (Foret et al. 2021) with training radius ``sam_rho``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from sharpbench.data.sets import EvalSet, score_outcomes
from sharpbench.losses import LOSSES, LossFn
from sharpbench.training.augment import augment
from sharpbench.training.recipe import SCHEDULES, recipe_config

Tensor = torch.Tensor


def train_model(model: nn.Module, x: Tensor, y: Tensor, recipe: dict[str, Any], hparams: dict[str, Any],
                seed: int, loss: str = "cross_entropy") -> int:
    """Train ``model`` in place on (x, y); deterministic for a fixed seed and thread count. Returns the number of
    epochs run.

    The batch order comes from a generator seeded by ``seed`` (a fresh permutation each epoch; the last
    batch of an epoch may be smaller). SGD's weight decay is the classic coupled L2 term of torch's SGD.
    With ``stop_train_loss`` the run stops after the first epoch whose training loss (eval mode, all of x)
    is at most that value. A run whose loss stops being finite is stopped early (its train error then
    excludes it)."""
    config = recipe_config(recipe, hparams)
    loss_fn = LOSSES[loss].mean
    base_lr, batch_size, epochs = float(config["learning_rate"]), int(config["batch_size"]), int(config["epochs"])
    momentum, weight_decay, nesterov = float(config["momentum"]), float(config["weight_decay"]), bool(config["nesterov"])
    schedule, sam_rho, augmentation = SCHEDULES[config["schedule"]], float(config["sam_rho"]), config["augmentation"]
    params = [p for p in model.parameters() if p.requires_grad]
    buffers = [torch.zeros_like(p) for p in params]
    optimizer = _torch_optimizer(config, params)
    generator = torch.Generator().manual_seed(int(seed))
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    total, step = epochs * steps_per_epoch, 0
    model.train()
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n, generator=generator).to(x.device)   # drawn on the CPU: the same order anywhere
        xs, ys = x[perm], y[perm]
        for start in range(0, n, batch_size):
            inputs, targets = xs[start:start + batch_size], ys[start:start + batch_size]
            if augmentation != "none":
                inputs = augment(inputs, augmentation, int(config["crop_padding"]), generator)
            value = loss_fn(model(inputs), targets)
            grads = torch.autograd.grad(value, params)
            if sam_rho > 0:
                grads = _sam_gradients(model, params, grads, inputs, targets, loss_fn, sam_rho)
            lr = schedule(base_lr, step, total)
            if optimizer is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr
                for p, g in zip(params, grads):
                    p.grad = g
                optimizer.step()
            else:
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
        if not math.isfinite(float(value.detach())):
            break
        if config["stop_train_loss"] > 0:
            if score_outcomes(model, EvalSet(TensorDataset(x, y)), loss).means()[1] <= config["stop_train_loss"]:
                break
            model.train()
    model.eval()
    for p in params:
        p.grad = None
    return epoch


def _torch_optimizer(config: dict[str, Any], params: list[nn.Parameter]) -> torch.optim.Optimizer | None:
    """Adam or AdamW from torch.optim (betas 0.9, 0.999); None for SGD, which the loop applies itself."""
    if config["optimizer"] == "sgd":
        return None
    cls = torch.optim.Adam if config["optimizer"] == "adam" else torch.optim.AdamW
    return cls(params, lr=float(config["learning_rate"]), weight_decay=float(config["weight_decay"]))


def _sam_gradients(model: nn.Module, params: list[nn.Parameter], grads: tuple[Tensor, ...], inputs: Tensor,
                   targets: Tensor, loss_fn: LossFn, rho: float) -> tuple[Tensor, ...]:
    """SAM's gradient: taken at w + rho * g / ||g||_2 (the first-order worst case of the L2 ball), then w is
    restored. BatchNorm statistics see both passes, as in the reference implementation."""
    with torch.no_grad():
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        scale = rho / float(norm.clamp_min(1e-12))
        shifts = [g * scale for g in grads]
        torch._foreach_add_(params, shifts)
    perturbed = torch.autograd.grad(loss_fn(model(inputs), targets), params)
    with torch.no_grad():
        torch._foreach_sub_(params, shifts)
    return perturbed
