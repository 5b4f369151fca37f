"""Margin-normalized spectral measures, as Jiang et al. (2020, Appendix C.3) take them from the spectral bounds:
the spectral complexity of Bartlett, Foster and Telgarsky (2017) and the PAC-Bayes spectral bound of Neyshabur,
Bhojanapalli and Srebro (2018), each divided by the squared output margin gamma^2.

Both bounds are proved for a feed-forward chain x -> W_d s(... s(W_1 x)) of linear maps and 1-Lipschitz
activations. A model qualifies when it is an nn.Sequential (nested ones included) of nn.Linear and nn.Conv1d/2d/3d
layers, eval-mode BatchNorms right after a layer (folded into it: W <- diag(a) W, a = weight / sqrt(running_var +
eps), the affine map they compute), activations, pooling, reshapes and dropout; anything else (attention, residual
blocks, embeddings) is not a chain and raises NotImplementedError, as does a model that is not a classifier.
Layers are reshaped to matrices by :func:`sharpbench_measures.norms.layer_matrices` (a kernel as (out, in * k * k),
as spectral-norm-product takes it) and gamma is :func:`sharpbench_measures.margin.output_margin`. Values are natural
logs of the measures, computed in float64 as sums of logs.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd
from torch.nn.modules.pooling import _AdaptiveAvgPoolNd, _AdaptiveMaxPoolNd, _AvgPoolNd, _MaxPoolNd

from sharpbench import MeasureContext, MeasureError, ToImage
from sharpbench_measures.margin import output_margin, require_classifier
from sharpbench_measures.norms import folded_batchnorm, layer_matrices

REFERENCES = ("init", "origin")
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# What may sit between two layers of the chain: maps that fix 0 and whose Lipschitz constants rho_i the measures
# take as 1, as Jiang et al. do (exact for ReLU, tanh and pooling over disjoint windows; GELU's is about 1.13),
# reshapes, and dropout, the identity in eval mode.
_BETWEEN = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.GELU, _MaxPoolNd, _AvgPoolNd, _AdaptiveMaxPoolNd, _AdaptiveAvgPoolNd,
            nn.Flatten, nn.Identity, _DropoutNd, ToImage)


@dataclass(frozen=True)
class _Layer:
    """One layer of the chain: the name of its nn.Linear or convolution, and of the BatchNorm folded into it."""

    name: str
    batchnorm: str | None = None


def _qualified(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _chain(model: nn.Module, measure: str) -> list[_Layer]:
    """The model's layers in the order they apply, or NotImplementedError when the model is not such a chain."""
    leaves: list[tuple[str, nn.Module]] = []

    def walk(module: nn.Module, name: str) -> None:
        if isinstance(module, nn.Sequential):
            for child_name, child in module.named_children():
                walk(child, _qualified(name, child_name))
        else:
            leaves.append((name, module))

    walk(model, "")
    layers: list[_Layer] = []
    previous: nn.Module | None = None
    for name, module in leaves:
        where = f"{type(module).__name__} at '{name or 'the model'}'"
        if isinstance(module, _LAYERS):
            layers.append(_Layer(name))
        elif isinstance(module, _BatchNorm):
            if not isinstance(previous, _LAYERS) or module.num_features != previous.weight.shape[0]:
                raise NotImplementedError(f"{measure} folds an eval-mode BatchNorm into the linear layer or "
                                          f"convolution right before it, and the {where} follows none")
            if module.running_var is None:
                raise NotImplementedError(f"{measure}: the {where} keeps no running statistics, so in eval mode it "
                                          f"normalizes by batch statistics and is not a fixed affine map to fold")
            layers[-1] = _Layer(layers[-1].name, name)
        elif not isinstance(module, _BETWEEN):
            raise NotImplementedError(
                f"{measure} is defined for a feed-forward chain of linear layers and convolutions with activations "
                f"between them (an nn.Sequential), the networks of the bounds of Bartlett et al. (2017) and "
                f"Neyshabur et al. (2018); this model has a {where}, which is not part of such a chain (attention, "
                f"residual blocks and embeddings are not), and Jiang et al. (2020) give no extension")
        previous = module
    if not layers:
        raise NotImplementedError(f"{measure}: the model ({type(model).__name__}) has no nn.Linear or convolution "
                                  f"layer")
    return layers


def _matrices(model: nn.Module, layers: list[_Layer]) -> list[torch.Tensor]:
    """Each layer's matrix (float64), its BatchNorm folded in: diag(a) W."""
    matrices = layer_matrices(model)    # in module order, which for a chain of nn.Sequential is the chain's order
    modules = dict(model.named_modules())
    for index, layer in enumerate(layers):
        if layer.batchnorm is not None:
            scale = folded_batchnorm(modules[layer.batchnorm]).scale.detach().double()
            matrices[index] = scale[:, None] * matrices[index]
    return matrices


def _initial_matrices(model: nn.Module, layers: list[_Layer], context: MeasureContext,
                      measure: str) -> list[torch.Tensor]:
    """The layers' matrices at initialization (context.initial_state), folded as the trained ones are."""
    initial = context.initial_state
    if initial is None:
        raise MeasureError(f"measure '{measure}' with reference=init needs the weights at initialization, and none "
                           f"were given: evaluate it on a collection that keeps them, pass "
                           f"initial_state=model.state_dict() at initialization to compute_measure, or set "
                           f"reference=origin (M_i = 0)")
    modules = dict(model.named_modules())
    needed = [_qualified(layer.name, "weight") for layer in layers]
    for layer in layers:
        if layer.batchnorm is not None:
            needed.append(_qualified(layer.batchnorm, "running_var"))
            if modules[layer.batchnorm].weight is not None:
                needed.append(_qualified(layer.batchnorm, "weight"))
    current = model.state_dict()
    for key in needed:
        if key not in initial or initial[key].shape != current[key].shape:
            found = "missing" if key not in initial else f"of shape {tuple(initial[key].shape)}"
            raise MeasureError(f"measure '{measure}': the initial weights have no tensor '{key}' of shape "
                               f"{tuple(current[key].shape)} ({found}); they must be a state_dict of the same "
                               f"architecture at initialization")
    start = copy.deepcopy(model)
    start.load_state_dict({key: initial[key] for key in needed}, strict=False)
    return _matrices(start, layers)


def _prepared(model: nn.Module, context: MeasureContext, reference: str, percentile: float,
              measure: str) -> tuple[list[torch.Tensor], list[torch.Tensor], float]:
    """The layer matrices W_i, the reference matrices M_i and the margin gamma the measures share."""
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {', '.join(REFERENCES)}, got {reference!r}")
    require_classifier(context, f"{measure}, normalized by the output margin z_y - max_(j != y) z_j,")
    layers = _chain(model, measure)
    margin = output_margin(model, context, percentile=percentile)
    if margin == 0:
        raise MeasureError(f"measure '{measure}': the {percentile:g}th percentile of the training margins is 0, so "
                           f"the measure (over gamma^2) is infinite")
    matrices = _matrices(model, layers)
    if reference == "init":
        references = _initial_matrices(model, layers, context, measure)
    else:
        references = [torch.zeros_like(matrix) for matrix in matrices]
    return matrices, references, abs(margin)


def _spectral_norms(matrices: list[torch.Tensor], measure: str) -> torch.Tensor:
    norms = torch.stack([torch.linalg.matrix_norm(matrix, ord=2) for matrix in matrices])
    if not bool((norms > 0).all()):
        raise MeasureError(f"measure '{measure}': a layer's weights are all zero (spectral norm 0), so the "
                           f"measure is not defined")
    return norms


def _log_of_sum(terms: torch.Tensor, measure: str) -> float:
    total = terms.sum().item()
    if total == 0:
        raise MeasureError(f"measure '{measure}': every layer equals its reference matrix (a model at its "
                           f"initialization with reference=init), so the measure is 0 and has no log")
    return math.log(total)


def spectral_complexity_margin(model: nn.Module, context: MeasureContext, *, reference: str = "init",
                               percentile: float = 10.0) -> float:
    """log of Bartlett et al.'s squared spectral complexity over gamma^2:
    prod_i ||W_i||_2^2 (sum_i ||W_i^T - M_i^T||_{2,1}^{2/3} / ||W_i||_2^{2/3})^3 / gamma^2."""
    measure = "spectral-complexity-margin"
    matrices, references, gamma = _prepared(model, context, reference, percentile, measure)
    spectral = _spectral_norms(matrices, measure)
    # ||A^T||_{2,1}: the sum over the columns of A^T, the rows of A (one per output unit), of their l2 norms
    two_one = torch.stack([torch.linalg.vector_norm(w - m, dim=1).sum() for w, m in zip(matrices, references)])
    return (2 * spectral.log().sum().item() + 3 * _log_of_sum((two_one / spectral) ** (2 / 3), measure)
            - 2 * math.log(gamma))


def pac_bayes_spectral_margin(model: nn.Module, context: MeasureContext, *, reference: str = "init",
                              percentile: float = 10.0, depth_width_factor: bool = False) -> float:
    """log of Neyshabur et al.'s PAC-Bayes spectral term over gamma^2:
    d^2 h ln(d h) prod_i ||W_i||_2^2 sum_i ||W_i - M_i||_F^2 / ||W_i||_2^2 / gamma^2 (without d^2 h ln(d h):
    Jiang et al.'s spec-init, Eq. 29, or spec-orig, Eq. 30)."""
    measure = "pac-bayes-spectral-margin"
    matrices, references, gamma = _prepared(model, context, reference, percentile, measure)
    spectral = _spectral_norms(matrices, measure)
    frobenius = torch.stack([torch.linalg.matrix_norm(w - m, ord="fro") for w, m in zip(matrices, references)])
    value = 2 * spectral.log().sum().item() + _log_of_sum((frobenius / spectral) ** 2, measure) - 2 * math.log(gamma)
    if depth_width_factor:
        depth = len(matrices)
        width = max(max(matrix.shape) for matrix in matrices)
        value += math.log(depth**2 * width * math.log(depth * width))
    return value
