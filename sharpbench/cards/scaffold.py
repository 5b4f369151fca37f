"""The scaffold of a new measure (`sharpbench measure new NAME`): a complete card, a working implementation and a
unit test that can fail, written into an include-path folder. The starting measure is the p-norm of the gradient
of the training loss on the sharpness batches, a first-order sharpness proxy, which shows the two things a
measure must get right: weight every batch by its size, and leave the model as it was (gradients by
torch.autograd.grad, so no .grad is written)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sharpbench.errors import SharpbenchError

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")   # a result file's measure name (schemas/result.schema.json)

CARD = """\
name: {name}
description: "p-norm of the gradient of the training loss on the sharpness batches, a first-order sharpness proxy"
function: {module}.py:{module}
source: "Zhao, Zhang, Hu. Penalizing Gradient Norm for Efficiently Improving Generalization in Deep Learning. ICML 2022"
higher_means: worse
definition: >-
  ||grad_w L(w)||_p, L the mean cross-entropy over the n sharpness points (each batch weighted by its size), w
  every trainable parameter, model in eval mode; accumulated in float64.
params:
  p: {{type: float, default: 2.0, help: "the p of the norm (2: Euclidean; 1: the sum of absolute values)"}}
version: 1
tolerance: 1.0e-06
"""

MODULE = '''\
"""{name}: the p-norm of the gradient of the training loss on the sharpness batches.

Written by `sharpbench measure new {name}`: edit it into your measure, keep the card's definition true to it, and
keep the unit test beside it passing. A measure imports only `from sharpbench import ...`."""

from __future__ import annotations

import torch
from torch import nn

from sharpbench import MeasureContext


def {module}(model: nn.Module, context: MeasureContext, *, p: float = 2.0) -> float:
    """||grad_w L(w)||_p over every trainable parameter, L the mean loss over all sharpness points.

    Each batch's mean loss is weighted by its share of the points, so unequal batches give the mean over points.
    torch.autograd.grad returns the gradient without writing .grad: the model is left exactly as it was given."""
    weights = [w for w in model.parameters() if w.requires_grad]
    count = sum(len(labels) for _, labels in context.batches)
    gradient = [torch.zeros_like(w, dtype=torch.float64) for w in weights]
    for inputs, labels in context.batches:
        loss = context.loss_fn(model(inputs), labels) * (len(labels) / count)
        for total, part in zip(gradient, torch.autograd.grad(loss, weights)):
            total += part.double()
    return torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in gradient]), ord=p).item()
'''

TEST = '''\
"""A unit test of the measure {name}: on a linear softmax classifier its value equals the closed-form gradient."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from sharpbench import MeasureContext

SOURCE = Path(__file__).resolve().parents[1] / "measures" / "{module}.py"


def load_measure():
    spec = importlib.util.spec_from_file_location("{module}", SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.{module}


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_the_value_is_the_closed_form_gradient_norm_of_a_linear_classifier(p):
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    # batches of unequal size: the mean is over points, not over batches
    batches = [(torch.randn(8, 5), torch.randint(0, 3, (8,))), (torch.randn(4, 5), torch.randint(0, 3, (4,)))]
    context = MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0),
                             num_classes=3)
    before = {{name: tensor.clone() for name, tensor in model.state_dict().items()}}

    value = load_measure()(model, context, p=p)

    inputs, labels = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
    with torch.no_grad():   # d(mean cross-entropy)/d logits = (softmax - one hot) / n
        residual = (torch.softmax(model(inputs), dim=1) - torch.nn.functional.one_hot(labels, 3)) / len(labels)
    expected = torch.cat([(residual.T @ inputs).reshape(-1), residual.sum(0)]).double().norm(p=p).item()
    assert value == pytest.approx(expected, rel=1e-5)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert all(w.grad is None for w in model.parameters())
'''


@dataclass(frozen=True)
class Scaffold:
    """The files of a new measure: its card, its implementation and its unit test."""

    card: Path
    module: Path
    test: Path

    @property
    def paths(self) -> list[Path]:
        return [self.card, self.module, self.test]


def module_name(name: str) -> str:
    """The Python module (and function) name of a measure name: '-' and '.' become '_', a leading digit gets
    'measure_' before it."""
    module = re.sub(r"[-.]", "_", name)
    return f"measure_{module}" if module[0].isdigit() else module


def write_scaffold(name: str, root: Path) -> Scaffold:
    """Write ROOT/measures/NAME.yaml, ROOT/measures/MODULE.py and ROOT/tests/test_MODULE.py; an invalid name or
    any existing file is refused before anything is written."""
    if not NAME_PATTERN.match(name):
        raise SharpbenchError(f"measure name {name!r} is not allowed: use lower case letters, digits, '.', '_' and "
                              f"'-', starting with a letter or digit (e.g. my-measure)")
    module = module_name(name)
    scaffold = Scaffold(root / "measures" / f"{name}.yaml", root / "measures" / f"{module}.py",
                        root / "tests" / f"test_{module}.py")
    existing = [str(path) for path in scaffold.paths if path.exists()]
    if existing:
        raise SharpbenchError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; nothing was "
                              f"written: choose another name or folder, or move the files away")
    texts = {scaffold.card: CARD, scaffold.module: MODULE, scaffold.test: TEST}
    for path, template in texts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(name=name, module=module), encoding="utf-8")
    return scaffold
