"""Model builders: a small registry from architecture kind to builder (timm-style).

``ARCHITECTURES[kind]`` is an :class:`ArchitectureKind`: a builder ``(config) -> nn.Module`` and the fields
it takes (a collection card's ``architecture`` section holds fixed values of them; its grid may vary
them). ``build_model(arch, hparams)`` merges the two, so a grid can vary ``width`` while the card fixes
``depth``. Add a kind (a timm model by name, a transformers config) by adding an entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from sharpbench.data import Param


@dataclass(frozen=True)
class ArchitectureKind:
    builder: Callable[[dict[str, Any]], nn.Module]
    params: dict[str, Param]
    description: str = ""


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def _build_mlp(config: dict[str, Any]) -> nn.Module:
    """``depth`` hidden layers of ``width`` units with ``activation``, then a linear head.

    An nn.Sequential, so parameter names are stable: 0.weight, 0.bias, 2.weight, ..."""
    layers: list[nn.Module] = []
    features = int(config["in_features"])
    for _ in range(int(config["depth"])):
        layers += [nn.Linear(features, int(config["width"]), bias=config["bias"]), _ACTIVATIONS[config["activation"]]()]
        features = int(config["width"])
    layers.append(nn.Linear(features, int(config["num_classes"]), bias=config["bias"]))
    return nn.Sequential(*layers)


def _positive(v: Any) -> bool:
    return v > 0


ARCHITECTURES: dict[str, ArchitectureKind] = {
    "mlp": ArchitectureKind(
        _build_mlp,
        {
            "in_features": Param(int, check=_positive, expected="a positive integer"),
            "num_classes": Param(int, check=lambda v: v >= 2, expected="an integer >= 2"),
            "width": Param(int, check=_positive, expected="a positive integer"),
            "depth": Param(int, default=1, check=lambda v: v >= 0, expected="an integer >= 0"),
            "activation": Param(str, default="relu", check=lambda v: v in _ACTIVATIONS,
                                expected=f"one of {sorted(_ACTIVATIONS)}"),
            "bias": Param(bool, default=True),
        },
        "fully connected network on flat inputs",
    ),
}


def architecture_config(arch: dict[str, Any], hparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """The builder's full configuration: defaults, then the card's fixed fields, then grid values."""
    kind = ARCHITECTURES[arch["kind"]]
    config = {name: p.default for name, p in kind.params.items() if p.default is not ...}
    config.update({k: v for k, v in arch.items() if k != "kind"})
    for name, value in (hparams or {}).items():
        if name in kind.params:
            config[name] = value
    missing = [name for name in kind.params if name not in config]
    if missing:
        raise ValueError(f"architecture {arch['kind']!r} needs {missing}")
    return config


def build_model(arch: dict[str, Any], hparams: dict[str, Any] | None = None) -> nn.Module:
    """A freshly initialized float32 model (initialized from torch's global RNG: seed it first)."""
    if arch.get("kind") not in ARCHITECTURES:
        raise KeyError(f"unknown architecture kind {arch.get('kind')!r}; known: {sorted(ARCHITECTURES)}")
    model = ARCHITECTURES[arch["kind"]].builder(architecture_config(arch, hparams))
    return model.to(torch.float32)
