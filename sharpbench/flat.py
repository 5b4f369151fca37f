"""A model's trainable parameters as one flat vector, and its logits as a function of that vector.

Sharpness kernels work on flat vectors so that a step, a projection and the best-point bookkeeping are a
few fused vector operations instead of a Python loop over parameter tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call


@dataclass
class FlatModel:
    """The trainable parameters of `module` flattened into `w0`; everything else is held fixed."""

    module: nn.Module
    names: list[str]
    shapes: list[torch.Size]
    numels: list[int]
    w0: torch.Tensor
    fixed: dict[str, torch.Tensor]

    @classmethod
    def of(cls, module: nn.Module) -> "FlatModel":
        """Snapshot `module`: every parameter with requires_grad is perturbed; buffers and frozen ones are not."""
        trainable = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("the model has no trainable parameters to perturb")
        fixed = {name: p.detach() for name, p in module.named_parameters() if not p.requires_grad}
        fixed.update({name: b.detach() for name, b in module.named_buffers()})
        w0 = torch.cat([p.detach().reshape(-1) for _, p in trainable]).clone()
        return cls(
            module=module,
            names=[name for name, _ in trainable],
            shapes=[p.shape for _, p in trainable],
            numels=[p.numel() for _, p in trainable],
            w0=w0,
            fixed=fixed,
        )

    def unflatten(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of the flat vector `w` shaped as the module's parameters (no copies)."""
        pieces = torch.split(w, self.numels)
        return {name: piece.view(shape) for name, piece, shape in zip(self.names, pieces, self.shapes)}

    def logits(self, w: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """The module's output at parameters `w`, computed functionally (the module is never modified)."""
        tensors = {**self.fixed, **self.unflatten(w)}
        return functional_call(self.module, tensors, (inputs,))

