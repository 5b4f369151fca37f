"""Relative flatness (Petzka, Kamp, Adilova, Sminchisescu, Boley, NeurIPS 2021, Definition 3) of the classifier head.

kappa^phi_Tr(w) = sum_{s,s'} <w_s, w_s'> Tr(H_{s,s'}), with w the weights of the head (the nn.Linear whose output is
the logits; row w_s feeds output s), phi the head's input (the features) and H_{s,s'} the block of the Hessian of the
mean loss over the sharpness points with respect to the rows w_s and w_s'.

The Hessian is exact, never estimated, and never formed: the logits z_i = W phi_i + b are linear in W, so
d^2 L / dW_sk dW_s'k' = (1/n) sum_i [grad^2_z l_i]_ss' phi_ik phi_ik' (no second-order term), and the C x C block
traces are Tr(H_{s,s'}) = (1/n) sum_i [grad^2_z l_i]_ss' ||phi_i||^2. The per-example Hessians grad^2_z l_i come from
C Hessian-vector products of the loss with respect to the logits per batch (torch.autograd, double backward); the
network itself runs one forward pass per batch. This is written here rather than through curvlinops because its
operator over the head's weights would need C * d Hessian-vector products through the whole network for the same
exact block traces.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from sharpbench import LossFn, MeasureContext

Variant = Literal["full", "normalized"]
VARIANTS = ("full", "normalized")


def _find_head(model: nn.Module, inputs: torch.Tensor) -> tuple[nn.Linear, torch.Tensor, torch.Tensor, torch.Size]:
    """The nn.Linear whose output is the model's output, with its input (the features), its output (the logits, one
    row per example) and the model output's shape, from one forward pass; NotImplementedError when the logits do not
    come straight from one trainable nn.Linear."""
    calls: list[tuple[nn.Linear, torch.Tensor, torch.Tensor]] = []

    def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        calls.append((module, args[0], output))

    handles = [module.register_forward_hook(record) for module in model.modules() if isinstance(module, nn.Linear)]
    try:
        with torch.no_grad():
            output = model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(output, torch.Tensor):
        raise NotImplementedError(f"relative flatness needs a model that returns a logits tensor, got "
                                  f"{type(output).__name__}")
    batch = output.shape[0]
    flat = output.reshape(batch, -1)
    matches = [(head, features, logits) for head, features, logits in calls
               if logits.shape[0] == batch and logits.numel() == output.numel()
               and torch.equal(logits.reshape(batch, -1), flat)]
    if not matches:
        raise NotImplementedError("relative flatness is defined for a model whose output is that of an nn.Linear "
                                  "(the classifier head); this model's last layer is something else")
    head, features, logits = matches[-1]
    if sum(module is head for module, _, _ in calls) > 1:
        raise NotImplementedError("the classifier head is applied more than once in a forward pass; relative "
                                  "flatness needs the logits to be linear in its weights")
    if features.dim() != 2 or features.shape[0] != batch:
        raise NotImplementedError(f"relative flatness needs the head to map one feature vector per example to the "
                                  f"logits; its input has shape {tuple(features.shape)}")
    if not head.weight.requires_grad:
        raise NotImplementedError("the classifier head's weights are frozen: the last trainable layer is not the "
                                  "nn.Linear that gives the logits")
    for module in model.modules():
        if module is not head and any(p is head.weight for p in module.parameters(recurse=False)):
            raise NotImplementedError("the classifier head's weights are tied to another layer's")
    return head, features, logits, output.shape


def _block_traces(loss_fn: LossFn, logits: torch.Tensor, labels: torch.Tensor, shape: torch.Size, weight: float,
                  squared_norms: torch.Tensor) -> torch.Tensor:
    """weight * sum_i ||phi_i||^2 grad^2_z l_B(z)_i (C x C) over one batch, l_B the batch's mean loss and
    grad^2_z l_B(z)_i its Hessian block of example i in the logits. The loss is a mean over examples, so that Hessian
    is block diagonal, and one Hessian-vector product with e_c in every example's place gives column c of every
    example's block at once: C products per batch."""
    point = logits.detach().clone().requires_grad_(True)
    classes = point.shape[1]
    traces = torch.zeros(classes, classes, dtype=point.dtype, device=point.device)
    with torch.enable_grad():
        loss = loss_fn(point.reshape(shape), labels) * weight
        grad, = torch.autograd.grad(loss, point, create_graph=True)
        for c in range(classes):
            direction = torch.zeros_like(point)
            direction[:, c] = 1.0
            column, = torch.autograd.grad(grad, point, grad_outputs=direction, retain_graph=c + 1 < classes)
            traces[:, c] = squared_norms @ column
    return traces


def relative_flatness(model: nn.Module, context: MeasureContext, *, variant: Variant = "full") -> float:
    """kappa^phi_Tr(w) = sum_{s,s'} <w_s, w_s'> Tr(H_{s,s'}) of the classifier head, exactly (Petzka et al. 2021,
    Definition 3); `normalized`: the same on features rescaled to unit standard deviation over the sharpness points
    (the authors' released code), which makes it invariant to rescaling the penultimate layer's neurons."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    captured = []
    for inputs, labels in context.batches:
        head, features, logits, shape = _find_head(model, inputs)
        captured.append((features.double(), logits.double(), labels, shape))
    weight = head.weight.detach().double()                       # (C, d): row s feeds output s
    all_features = torch.cat([features for features, _, _, _ in captured])
    n = all_features.shape[0]
    if variant == "normalized":
        # The authors divide the penultimate layer's neuron j (its weights and bias) by sigma_j, the standard
        # deviation of feature j over the training points, and multiply the head's column j by it: the same function
        # with features of unit spread. A feature constant on the sample (sigma_j = 0, a dead ReLU) is dropped, its
        # constant contribution to the logits moved into the bias (the logits, hence H, are unchanged). The authors
        # leave it unscaled; then the head's weights out of a dead unit, which a function-preserving rescaling
        # changes at will, would still enter <w_s, w_s'>.
        sigma = all_features.std(dim=0, unbiased=False)
        live = sigma > 0
        weight = weight * sigma
        captured = [(torch.where(live, features / torch.where(live, sigma, 1.0), 0.0), logits, labels, shape)
                    for features, logits, labels, shape in captured]
    # Tr(H_{s,s'}) = (1/n) sum_i [grad^2_z l_i]_{s,s'} ||phi_i||^2, each batch's mean loss weighted by its size
    block_traces = sum(_block_traces(context.loss_fn, logits.reshape(len(labels), -1), labels, shape, len(labels) / n,
                                     features.square().sum(dim=1))
                       for features, logits, labels, shape in captured)
    gram = weight @ weight.T                                                  # <w_s, w_s'>
    return (gram * block_traces).sum().item()
