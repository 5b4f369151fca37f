"""Training many small models of one architecture at once: their parameters stacked (``torch.func``'s
``stack_module_state``) and one vmapped forward and backward per step for the whole group, so that a step's Python
overhead and its small matrix products are paid once for K models instead of K times.

Each model keeps what it has when trained alone (:func:`sharpbench.training.loop.train_model`): its initial weights,
its batch order (a generator seeded by its own seed), its learning rate, weight decay and momentum (per model
vectors here), its labels. What the group shares is what fixes the shapes and the number of steps: the
architecture, the batch size, the epochs, the optimizer and the schedule (:func:`group_key`). The updates are
written out as torch.optim's SGD (coupled L2 weight decay, momentum, Nesterov) and Adam / AdamW (bias-corrected,
coupled or decoupled decay) compute them, vectorized over the group; the group's weights agree with one-at-a-time
training to float rounding (tests/test_grouped_training.py), not bit for bit (a batched matrix product adds in
another order). Dropout masks come from torch's generator seeded per group, so a group trained twice on one
machine gives the same bits.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from sharpbench.losses import LOSSES
from sharpbench.training.recipe import SCHEDULES, recipe_config

Tensor = torch.Tensor

PER_MODEL = ("learning_rate", "weight_decay", "momentum")   # vectors over the group; every other field is shared
_ADAM_BETAS, _ADAM_EPS = (0.9, 0.999), 1e-8


def group_key(recipe: dict[str, Any], hparams: dict[str, Any], architecture: dict[str, Any]) -> tuple | None:
    """What models must share to be trained together: the architecture's configuration and every recipe field but
    the per-model ones; None for a recipe trained one model at a time (a stop at a training loss, augmentation,
    SAM)."""
    config = recipe_config(recipe, hparams)
    if config["stop_train_loss"] > 0 or config["augmentation"] != "none" or config["sam_rho"] > 0:
        return None
    shared = {k: v for k, v in config.items() if k not in PER_MODEL and k not in ("label_noise", "group_size")}
    return (repr(sorted(architecture.items())), repr(sorted(shared.items())))


def _per_model(values: Sequence[float], like: Tensor) -> Tensor:
    """A (K, 1, ..., 1) tensor of per-model scalars that broadcasts against a stacked parameter ``like``."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).reshape(-1, *([1] * (like.dim() - 1)))


def train_group(models: Sequence[nn.Module], x: Tensor, labels: Sequence[Tensor], recipe: dict[str, Any],
                hparams: Sequence[dict[str, Any]], seeds: Sequence[int], loss: str = "cross_entropy",
                group_seed: int = 0) -> list[int]:
    """Train ``models`` (same architecture, no buffers) in place on (x, labels[k]) as one group; returns the epochs
    each ran (as train_model reports them: the epoch at whose end a model's loss was no longer finite, where
    train_model stops it; here its weights go on as NaN, and its train error excludes it either way)."""
    if group_key(recipe, hparams[0], {}) is None:
        raise ValueError("a stop at a training loss, augmentation and SAM are trained one model at a time")
    configs = [recipe_config(recipe, h) for h in hparams]
    first = configs[0]
    for config in configs[1:]:
        differ = [k for k in first if k not in PER_MODEL + ("label_noise",) and config[k] != first[k]]
        if differ:
            raise ValueError(f"models trained as a group must share {differ}")
    if any(True for model in models for _ in model.buffers()):
        raise ValueError("models with buffers (BatchNorm statistics) are trained one at a time")
    loss_fn = LOSSES[loss].mean
    batch_size, epochs, schedule = int(first["batch_size"]), int(first["epochs"]), SCHEDULES[first["schedule"]]
    optimizer, nesterov = first["optimizer"], bool(first["nesterov"])
    k_models, n = len(models), x.shape[0]

    params, _ = stack_module_state(list(models))
    params = {name: value.detach().clone() for name, value in params.items()}
    names = list(params)
    base = copy.deepcopy(models[0]).to("meta")
    base.train()

    def model_loss(weights: dict[str, Tensor], inputs: Tensor, targets: Tensor) -> Tensor:
        return loss_fn(functional_call(base, weights, (inputs,)), targets)

    losses = vmap(model_loss, randomness="different")

    def step_fn(weights: dict[str, Tensor], inputs: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        # the models are independent, so the gradient of the sum of their losses is each model's own gradient;
        # autograd through the vmapped forward is several times faster here than vmap(grad(...))
        leaves = {name: value.requires_grad_(True) for name, value in weights.items()}
        values = losses(leaves, inputs, targets)
        grads = torch.autograd.grad(values.sum(), list(leaves.values()))
        for value in leaves.values():
            value.requires_grad_(False)
        return dict(zip(leaves, grads)), values.detach()
    lr = {name: _per_model([c["learning_rate"] for c in configs], params[name]) for name in names}
    decay = {name: _per_model([c["weight_decay"] for c in configs], params[name]) for name in names}
    momentum = {name: _per_model([c["momentum"] for c in configs], params[name]) for name in names}
    state = {name: torch.zeros_like(params[name]) for name in names}           # momentum, or Adam's first moment
    second = {name: torch.zeros_like(params[name]) for name in names} if optimizer != "sgd" else {}
    y = torch.stack([label.to(x.device) for label in labels])                 # (K, n)
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    steps_per_epoch = math.ceil(n / batch_size)
    total, step = epochs * steps_per_epoch, 0
    finite = torch.ones(k_models, dtype=torch.bool)
    ran = [epochs] * k_models
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(group_seed))
        for epoch in range(1, epochs + 1):
            # each model's own permutation, drawn on the CPU as train_model draws it
            order = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(x.device)
            xs, ys = x[order], torch.gather(y, 1, order)
            for start in range(0, n, batch_size):
                grads, values = step_fn(params, xs[:, start:start + batch_size], ys[:, start:start + batch_size])
                factor = schedule(1.0, step, total)
                step += 1
                with torch.no_grad():
                    for name in names:
                        _update(optimizer, nesterov, params[name], grads[name], state[name], second.get(name),
                                lr[name] * factor, decay[name], momentum[name], step)
            now_finite = torch.isfinite(values.detach().cpu())
            for index in torch.nonzero(finite & ~now_finite).flatten().tolist():
                ran[index] = epoch
            finite &= now_finite
            if not finite.any():
                break
    for index, model in enumerate(models):
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                parameter.copy_(params[name][index])
        model.eval()
    return ran


def _update(optimizer: str, nesterov: bool, param: Tensor, grad: Tensor, state: Tensor, second: Tensor | None,
            lr: Tensor, decay: Tensor, momentum: Tensor, step: int) -> None:
    """One optimizer step of a stacked parameter, in place, as torch.optim computes it for each model."""
    if optimizer == "sgd":
        grad = grad + decay * param                       # coupled L2, as torch's SGD
        state.mul_(momentum).add_(grad)                   # with momentum 0 the buffer is the gradient
        param.sub_(lr * (grad + momentum * state if nesterov else state))
        return
    assert second is not None
    beta1, beta2 = _ADAM_BETAS
    if optimizer == "adamw":
        param.mul_(1 - lr * decay)                        # decoupled decay
    else:
        grad = grad + decay * param                       # Adam's coupled L2
    state.mul_(beta1).add_(grad, alpha=1 - beta1)
    second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    corrected = lr / (1 - beta1 ** step)
    denominator = (second / (1 - beta2 ** step)).sqrt().add_(_ADAM_EPS)
    param.sub_(corrected * state / denominator)
