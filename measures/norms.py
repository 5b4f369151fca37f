"""Norm-based baselines: functions of the weights (and, for the path norm, of the input's shape) alone."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from sharpbench import MeasureContext, MeasureError


def param_norm(model: nn.Module, context: MeasureContext) -> float:
    """||w||_2 over every trainable parameter (weights, biases, norm-layer affine parameters)."""
    del context  # the weights alone decide it
    with torch.no_grad():
        squares = [p.double().square().sum() for p in model.parameters() if p.requires_grad]
        return torch.stack(squares).sum().sqrt().item()


def distance_from_init(model: nn.Module, context: MeasureContext) -> float:
    """||w - w_0||_2 over every trainable parameter, w_0 the weights at initialization."""
    initial = context.initial_state
    if initial is None:
        raise MeasureError("measure 'distance-from-init' needs the weights at initialization, and none were given: "
                           "evaluate it on a collection that keeps them (a collection trained here keeps them; a "
                           "card of pretrained checkpoints keeps them when each checkpoint names its `init`), or pass "
                           "initial_state=model.state_dict() at initialization to compute_measure")
    squares = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if name not in initial or initial[name].shape != p.shape:
                found = "missing" if name not in initial else f"of shape {tuple(initial[name].shape)}"
                raise MeasureError(f"measure 'distance-from-init': the initial weights have no tensor '{name}' of "
                                   f"shape {tuple(p.shape)} ({found}); they must be a state_dict of the same "
                                   f"architecture at initialization")
            squares.append((p.double() - initial[name].to(p.device).double()).square().sum())
    return torch.stack(squares).sum().sqrt().item()


def layer_matrices(model: nn.Module) -> list[torch.Tensor]:
    """The weight of every nn.Linear and convolution, as a matrix (out_channels, in_channels * kernel size).

    These are the layers of the norm products; biases, normalization layers, embeddings and tokens are not."""
    matrices = [module.weight.detach().double().reshape(module.weight.shape[0], -1) for module in model.modules()
                if isinstance(module, (nn.Linear, _ConvNd))]
    if not matrices:
        raise MeasureError(f"the model ({type(model).__name__}) has no nn.Linear or convolution layer, so a product of "
                           f"layer norms is not defined for it")
    return matrices


def _norm_product(model: nn.Module, ord: str | int) -> float:
    logs = [torch.linalg.matrix_norm(matrix, ord=ord).log() for matrix in layer_matrices(model)]
    return torch.stack(logs).sum().exp().item()  # summed as logs: deep networks stay finite longer


def spectral_norm_product(model: nn.Module, context: MeasureContext) -> float:
    """Product over layers of the largest singular value of each layer's weight matrix."""
    del context
    return _norm_product(model, 2)


def frobenius_norm_product(model: nn.Module, context: MeasureContext) -> float:
    """Product over layers of the Frobenius norm of each layer's weight matrix."""
    del context
    return _norm_product(model, "fro")


class _ChannelAffine(nn.Module):
    """x -> scale * x + shift along dimension 1, the map an eval-mode BatchNorm computes."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.scale, self.shift = nn.Parameter(scale), nn.Parameter(shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.scale.view(shape) + self.shift.view(shape)


def folded_batchnorm(module: _BatchNorm) -> _ChannelAffine:
    """An eval-mode BatchNorm as the per-channel affine map it computes: a = gamma / sqrt(var + eps),
    b = beta - a * mean."""
    scale = (module.running_var + module.eps).rsqrt()
    if module.weight is not None:
        scale = scale * module.weight
    shift = -scale * module.running_mean
    if module.bias is not None:
        shift = shift + module.bias
    return _ChannelAffine(scale.detach(), shift.detach())


def _squared_network(model: nn.Module) -> nn.Module:
    """A float64 copy with eval-mode BatchNorms folded into affine maps and every parameter squared."""
    squared = copy.deepcopy(model).double().eval()
    for parent in list(squared.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, _BatchNorm) and child.running_var is not None:
                setattr(parent, child_name, folded_batchnorm(child))
    with torch.no_grad():
        for p in squared.parameters():
            p.square_()
    return squared


def path_norm(model: nn.Module, context: MeasureContext) -> float:
    """Neyshabur et al.'s l2 path norm: sqrt of the summed outputs of the squared network on an all-ones input.

    For a ReLU network of linear layers, convolutions and (folded) BatchNorms with non-negative squared
    parameters every pre-activation is non-negative, so this is sqrt(sum over input-output paths, biases
    included as paths from a constant unit, of the product of the squared weights along the path). Other layers
    (LayerNorm centres its input) can make outputs negative: their absolute values are summed, a heuristic
    extension that equals the path norm wherever the latter is defined.
    """
    given = context.batches[0][0]
    if not given.is_floating_point():
        raise NotImplementedError(f"path-norm needs real-valued inputs (it feeds the squared network an all-ones "
                                  f"input); this model takes {given.dtype} inputs (token ids), which have none")
    inputs = torch.ones_like(given[:1], dtype=torch.float64)
    with torch.no_grad():
        return _squared_network(model)(inputs).abs().sum().sqrt().item()
