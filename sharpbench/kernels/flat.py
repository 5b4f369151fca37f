"""A model's trainable parameters as one flat vector, and its logits as a function of that vector.

Sharpness kernels work on flat vectors so that a step, a projection and the best-point bookkeeping are a
few fused vector operations instead of a Python loop over parameter tensors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call


@dataclass
class FlatModel:
    """The trainable parameters of `module` flattened into `w0`; everything else is held fixed.

    For a stack of same-architecture models (`FlatModel.stack`), w0 has one row per model, and after the
    `trainable` entries each row carries that model's floating-point buffers and frozen parameters (its
    BatchNorm statistics, say), which perturbations never move.
    """

    module: nn.Module
    names: list[str]
    shapes: list[torch.Size]
    numels: list[int]
    w0: torch.Tensor
    fixed: dict[str, torch.Tensor]
    trainable: int
    carried: tuple[str, ...] = ()     # the names after the trainable ones: a stack's buffers

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
            trainable=w0.numel(),
        )

    @classmethod
    def stack(cls, modules: Sequence[nn.Module]) -> "FlatModel":
        """Rows of w0 = the modules' trainable parameters, then their floating-point buffers and frozen
        parameters; other tensors (integer counters) come from the first module. The modules must share
        `architecture_key`."""
        first = FlatModel.of(modules[0])
        if len(modules) == 1:
            return first
        keys = {architecture_key(module) for module in modules}
        if len(keys) != 1:
            raise ValueError("FlatModel.stack needs modules of one architecture (equal architecture_key)")
        carried = [name for name, tensor in first.fixed.items() if tensor.is_floating_point()]
        rows = []
        for module in modules:
            tensors = {**dict(module.named_parameters()), **dict(module.named_buffers())}
            rows.append(torch.cat([tensors[name].detach().reshape(-1)
                                   for name in first.names + carried]))
        return cls(
            module=modules[0],
            names=first.names + carried,
            shapes=first.shapes + [first.fixed[name].shape for name in carried],
            numels=first.numels + [first.fixed[name].numel() for name in carried],
            w0=torch.stack(rows),
            fixed={name: tensor for name, tensor in first.fixed.items() if name not in carried},
            trainable=first.trainable,
            carried=tuple(carried),
        )

    def unflatten(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of the flat vector `w` shaped as the module's parameters (no copies)."""
        pieces = torch.split(w, self.numels)
        return {name: piece.view(shape) for name, piece, shape in zip(self.names, pieces, self.shapes)}

    def logits(self, w: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """The module's output at parameters `w`, computed functionally (the module is never modified)."""
        tensors = self.unflatten(w)
        if self.carried:  # a stack's carried buffers are constants, outside autograd
            constants = self.unflatten(w.detach())
            tensors.update({name: constants[name] for name in self.carried})
        return self.call(tensors, inputs)

    def call(self, tensors: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """The module's output with `tensors` (every name of `names`) in place of its own, the rest fixed."""
        return functional_call(self.module, {**self.fixed, **tensors}, (inputs,))



def architecture_key(module: nn.Module) -> str:
    """Equal for models that `FlatModel.stack` can evaluate together: the same class, the same names, shapes,
    dtypes and trainability of parameters and buffers, and equal non-floating-point buffers (BatchNorm's
    batch counter excepted: eval-mode forward passes never read it)."""
    digest = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}:{tensor.requires_grad}".encode())
    counters = {f"{prefix}.num_batches_tracked" if prefix else "num_batches_tracked"
                for prefix, sub in module.named_modules() if isinstance(sub, nn.modules.batchnorm._NormBase)}
    for name, tensor in module.named_buffers():
        if not tensor.is_floating_point() and name not in counters:
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
