"""SAM's sharpness (Foret et al., 2021): the loss increase after SAM's one normalized ascent step of radius rho, on
each m-sharpness batch; with `adaptive`, the step of ASAM (Kwon et al., 2021), scaled by |w|."""

from __future__ import annotations

import torch
from torch import nn

from sharpbench import FlatModel, MeasureContext


def sam_sharpness(model: nn.Module, context: MeasureContext, *, rho: float = 0.05, adaptive: bool = False) -> float:
    """E_S [L_S(w + eps_S) - L_S(w)], eps_S = rho g / ||g||_2 (SAM) or rho T^2 g / ||T g||_2 with T = diag(|w|)
    (ASAM), g the gradient of L_S at w: one forward+backward and one forward pass per batch."""
    flat = FlatModel.of(model)
    scale = flat.w0.abs() if adaptive else torch.ones_like(flat.w0)
    increases = []
    for inputs, labels in context.batches:
        point = flat.w0.clone().requires_grad_(True)
        with torch.enable_grad():
            loss = context.loss_fn(flat.logits(point, inputs), labels)
            grad, = torch.autograd.grad(loss, point)
        with torch.no_grad():
            scaled = scale * grad
            step = rho * scale * scaled / (scaled.norm() + 1e-12)
            perturbed = context.loss_fn(flat.logits(flat.w0 + step, inputs), labels)
        increases.append(perturbed.double() - loss.detach().double())
    return torch.stack(increases).mean().item()
