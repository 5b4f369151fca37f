"""The scale vector c of a perturbation set: which parameters move, and how far.

The study perturbs every trainable parameter with c = |w| (adaptive) or c = 1 (standard). The ablations it
discusses are expressed here as other scale vectors over the same flat parameter vector: c = 0 freezes the
normalization layers or the classifier head, and filter-wise adaptive scaling gives every entry of a filter
(one output unit's slice of a weight tensor) the norm of that filter, as in ASAM (Kwon et al., 2021).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sharpbench.kernels.flat import FlatModel

SCALINGS = ("elementwise", "filterwise")

# Module types whose parameters count as normalization layers (timm's and transformers' norms subclass these).
_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


@dataclass(frozen=True)
class Scaling:
    """How c is built: adaptive or standard, element- or filter-wise, and which parameter groups move."""

    adaptive: bool = True
    scaling: str = "elementwise"
    perturb_norm_layers: bool = True
    perturb_head: bool = True

    def __post_init__(self) -> None:
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {self.scaling!r}")

    def vector(self, flat: FlatModel, w: torch.Tensor | None = None) -> torch.Tensor:
        """c for the flat parameters `w` (default: the model's own, a row of w0 for a stack), shape (P,)."""
        w = flat.w0 if w is None else w
        frozen = self._frozen_names(flat)
        pieces, offset = [], 0
        for name, value, shape in zip(flat.names, flat.unflatten(w).values(), flat.shapes):
            # Entries past `trainable` are carried buffers; like frozen groups, they never move.
            moves = offset < flat.trainable and name not in frozen
            pieces.append(self._piece(value, shape).reshape(-1) if moves else torch.zeros_like(value).reshape(-1))
            offset += value.numel()
        return torch.cat(pieces)

    def _piece(self, value: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        if not self.adaptive:
            return torch.ones_like(value)
        if self.scaling == "elementwise" or len(shape) < 2:
            return value.abs()
        # One filter per output unit (dimension 0 of Linear and Conv weights): every entry gets its norm.
        norms = value.reshape(shape[0], -1).norm(dim=1)
        return norms.view(-1, *([1] * (len(shape) - 1))).expand(shape)

    def _frozen_names(self, flat: FlatModel) -> set[str]:
        frozen: set[str] = set()
        if not self.perturb_norm_layers:
            frozen |= _parameter_names(flat.module, lambda _, module: isinstance(module, _NORM_LAYERS))
        if not self.perturb_head:
            head = _head(flat.module)
            frozen |= _parameter_names(flat.module, lambda _, module: module is head)
        return frozen & set(flat.names)


def _parameter_names(model: nn.Module, select) -> set[str]:
    """Full names of the parameters owned directly by the modules that `select(name, module)` picks."""
    return {f"{name}.{parameter}" if name else parameter
            for name, module in model.named_modules() if select(name, module)
            for parameter, _ in module.named_parameters(recurse=False)}


def _head(model: nn.Module) -> nn.Module:
    """The classifier: timm's `get_classifier()` when the model has it, else its last nn.Linear."""
    if hasattr(model, "get_classifier") and isinstance(model.get_classifier(), nn.Module):
        return model.get_classifier()
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError("perturb_head=false needs a classifier head: the model has no get_classifier() and "
                         "no nn.Linear layer")
    return linears[-1]
