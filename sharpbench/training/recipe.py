"""Training recipes for building collections, and the error/loss evaluation every collection uses.

The loop is written for tiny models, whose cost is Python overhead: the data are in-memory tensors, each
epoch permutes them once (so a batch is a slice, not a gather), gradients come from
``torch.autograd.grad`` and the SGD update is four fused ``torch._foreach_*`` calls (Adam and AdamW use
torch.optim). Options: a stop at a training loss (Jiang et al. train to cross-entropy 0.01), random crops
and flips, label noise, and SAM (Foret et al. 2021) with training radius ``sam_rho``.

``RECIPE_PARAMS`` lists the fields of a card's ``training`` section; any of them may instead be varied by
the card's grid. Add an optimizer or schedule by extending ``OPTIMIZERS`` / ``SCHEDULES``, a loss by
extending ``LOSSES``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from sharpbench.cards.schema import Param, in_range, non_negative, one_of, positive
from sharpbench.losses import LossFn, cross_entropy, mean_squared_error
from sharpbench.data.outcomes import Outcomes

Tensor = torch.Tensor


def _constant(base: float, step: int, total: int) -> float:
    return base


def _cosine(base: float, step: int, total: int) -> float:
    return base * 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))


SCHEDULES: dict[str, Callable[[float, int, int], float]] = {"constant": _constant, "cosine": _cosine}
OPTIMIZERS = ("sgd", "adam", "adamw")
AUGMENTATIONS = ("none", "flip", "crop", "crop_flip")


def _cross_entropy_per_example(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits, labels, reduction="none")


def _squared_error_per_example(outputs: Tensor, targets: Tensor) -> Tensor:
    return (outputs.reshape(targets.shape) - targets).square().reshape(targets.shape[0], -1).mean(dim=1)


# name -> (training loss: a batch mean, the same loss per example (the batch mean is their mean; torch.vmap of the
# mean over single examples would be exact too, but cross-entropy has no batching rule and it runs 6x slower),
# whether the error is the classification error (else it is the example's loss itself))
LOSSES: dict[str, tuple[LossFn, LossFn, bool]] = {
    "cross_entropy": (cross_entropy, _cross_entropy_per_example, True),
    "mse": (mean_squared_error, _squared_error_per_example, False),
}


RECIPE_PARAMS: dict[str, Param] = {
    "optimizer": Param(str, default="sgd", check=one_of(*OPTIMIZERS)),
    "learning_rate": Param(float, check=positive),
    "batch_size": Param(int, check=positive),
    "epochs": Param(int, check=positive, note="the most, with stop_train_loss"),
    "momentum": Param(float, default=0.0, check=in_range(0, 1, closed="left")),
    "nesterov": Param(bool, default=False),
    "weight_decay": Param(float, default=0.0, check=non_negative),
    "schedule": Param(str, default="constant", check=one_of(*sorted(SCHEDULES))),
    "stop_train_loss": Param(float, default=0.0, check=non_negative,
                             note="0: train all epochs"),
    "augmentation": Param(str, default="none", check=one_of(*AUGMENTATIONS)),
    "crop_padding": Param(int, default=2, check=non_negative),
    "label_noise": Param(float, default=0.0, check=in_range(0, 1, closed="left")),
    "sam_rho": Param(float, default=0.0, check=non_negative, note="0: no SAM"),
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


def noisy_labels(y: Tensor, fraction: float, num_classes: int, seed: int) -> Tensor:
    """A copy of y with a seeded random ``fraction`` of the labels replaced by uniformly drawn classes (which
    may equal the old one, as in Zhang et al. 2017)."""
    if fraction <= 0:
        return y
    generator = torch.Generator().manual_seed(int(seed) + 7919)  # a stream apart from the batch order
    chosen = torch.rand(y.shape[0], generator=generator) < fraction
    random = torch.randint(0, num_classes, y.shape, generator=generator)
    return torch.where(chosen, random, y)


def _augment(images: Tensor, mode: str, padding: int, generator: torch.Generator) -> Tensor:
    """Random horizontal flips and/or random crops after zero padding, one draw per image (N, C, H, W)."""
    if "flip" in mode:
        flip = (torch.rand(images.shape[0], generator=generator) < 0.5).to(images.device)
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    if "crop" in mode and padding > 0:
        height, width = images.shape[-2:]
        padded = F.pad(images, (padding,) * 4)
        offsets = torch.randint(0, 2 * padding + 1, (images.shape[0], 2), generator=generator)
        # one gather per distinct offset: at most (2p+1)^2 slices, instead of a Python loop over images
        out = torch.empty_like(images)
        for dy, dx in torch.unique(offsets, dim=0).tolist():
            rows = ((offsets[:, 0] == dy) & (offsets[:, 1] == dx)).to(images.device)
            out[rows] = padded[rows, :, dy:dy + height, dx:dx + width]
        images = out
    return images


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
    loss_fn = LOSSES[loss][0]
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
                inputs = _augment(inputs, augmentation, int(config["crop_padding"]), generator)
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
            if evaluate_errors(model, x, y, loss)[1] <= config["stop_train_loss"]:
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


@torch.no_grad()
def evaluate_outcomes(model: nn.Module, x: Tensor, y: Tensor, loss: str = "cross_entropy",
                      batch_size: int = 4096) -> Outcomes:
    """Per-example (error, loss) of ``model`` in eval mode on (x, y); restores the model's mode. The error is 0/1
    (wrong class) for cross-entropy, and the example's loss itself for a regression loss (its squared error)."""
    _, per_example, classification = LOSSES[loss]
    was_training = model.training
    model.eval()
    parts = []
    for start in range(0, x.shape[0], batch_size):
        outputs = model(x[start:start + batch_size]).float()
        target = y[start:start + batch_size]
        losses = per_example(outputs, target)
        errors = (outputs.argmax(dim=1) != target).float() if classification else losses
        parts.append(Outcomes(errors, losses))
    model.train(was_training)
    return Outcomes.concat(parts)


def evaluate_errors(model: nn.Module, x: Tensor, y: Tensor, loss: str = "cross_entropy",
                    batch_size: int = 4096) -> tuple[float, float]:
    """(error, mean loss) of ``model`` on (x, y): the means of :func:`evaluate_outcomes`."""
    return evaluate_outcomes(model, x, y, loss, batch_size).means()
