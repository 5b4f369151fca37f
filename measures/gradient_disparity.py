"""Gradient disparity (Forouzesh and Thiran, ECML PKDD 2021): the mean l2 distance between the loss gradients of two
training batches, over the pairs of the sharpness batches. The paper bounds a batch's generalization penalty (its loss
after a step on another batch minus its loss after a step on itself) by a quantity that grows with this distance.

With `rescale`, each batch's loss is the authors' re-scaled loss, the batch's per-example losses divided by their
standard deviation before the mean (their released code, `find_grad_dis` in mahf93/disparity_early_stopping), so the
disparity does not grow or shrink with the scale of the loss.
"""

from __future__ import annotations

import torch
from torch import nn

from sharpbench import LOSSES, Batch, FlatModel, LossFn, MeasureContext


def gradient_disparity(model: nn.Module, context: MeasureContext, *, s: int = 0, rescale: bool = True) -> float:
    """Mean over the unordered pairs i < j of the chosen batches of ||g_i - g_j||_2, g_i the gradient at w of batch
    i's loss (re-scaled with `rescale`); the batches are all sharpness batches (s = 0) or s of them drawn from the
    generator. One forward and backward pass per chosen batch."""
    batches = _chosen_batches(context, s)
    flat = FlatModel.of(model)
    gradients = []
    for inputs, labels in batches:
        point = flat.w0.clone().requires_grad_(True)
        with torch.enable_grad():
            outputs = flat.logits(point, inputs)
            loss = _rescaled_loss(context.loss_fn, outputs, labels) if rescale else context.loss_fn(outputs, labels)
            gradient, = torch.autograd.grad(loss, point)
        gradients.append(gradient)
    # one distance per unordered pair (i < j), in the gradients' dtype, then averaged in float64
    distances = torch.pdist(torch.stack(gradients), p=2)
    return distances.double().mean().item()


def _chosen_batches(context: MeasureContext, s: int) -> list[Batch]:
    """The batches whose pairs are averaged: all of them for s = 0, else s of them drawn without replacement."""
    available = len(context.batches)
    if available < 2:
        raise NotImplementedError(f"gradient disparity compares the gradients of two batches, and this collection's "
                                  f"sharpness data is {available} batch (n = m)")
    if s == 1 or s < 0:
        raise ValueError(f"s must be 0 (all {available} sharpness batches) or at least 2 (a pair), got {s}")
    if s > available:
        raise ValueError(f"s = {s} batches asked for, but there are only {available} sharpness batches")
    if s in (0, available):
        return list(context.batches)
    generator = context.generator
    drawn = torch.randperm(available, generator=generator, device=generator.device)[:s].sort().values
    return [context.batches[index] for index in drawn.tolist()]


def _rescaled_loss(loss_fn: LossFn, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """mean_k(l_k) / std_k(l_k) over the batch's per-example losses l_k (unbiased std, differentiated through as in
    the authors' code)."""
    if len(labels) < 2:
        raise ValueError("rescale divides by the standard deviation of a batch's losses and needs batches of at "
                         "least 2 points; use rescale=false")
    losses = _per_example_losses(loss_fn, outputs, labels)
    spread = losses.std()
    if spread == 0:
        raise ValueError("a batch's per-example losses are all equal, so the re-scaled loss (divided by their "
                         "standard deviation) is undefined; use rescale=false")
    return losses.mean() / spread


def _per_example_losses(loss_fn: LossFn, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss of each example: sharpbench's per-example form of a built-in mean loss, else the mean loss on
    one-example slices (exact for any mean loss; torch.func.vmap has no batching rule for cross-entropy)."""
    for loss in LOSSES.values():
        if loss_fn is loss.mean:
            return loss.per_example(outputs, labels)
    return torch.stack([loss_fn(outputs[k:k + 1], labels[k:k + 1]) for k in range(len(labels))])
