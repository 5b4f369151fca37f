"""SAM's sharpness against its closed form on a quadratic loss, for SAM's step and ASAM's, and through the
registry as a user computes it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sharpbench
from sharpbench.measure import MeasureContext

pytestmark = pytest.mark.usefixtures("float64_default")


def squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs.squeeze(-1) - targets).pow(2).mean()


def linear_regression():
    """A linear model without bias under squared error: L(w) = ||X w - y||^2 / n, a quadratic in w."""
    torch.manual_seed(0)
    model = nn.Linear(5, 1, bias=False)
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(12, 5, generator=generator), torch.randn(12, generator=generator)) for _ in range(3)]
    return model, batches


def closed_form(w: torch.Tensor, batches, rho: float, adaptive: bool) -> float:
    """L(w + eps) - L(w) = g.eps + eps.A.eps / 2 exactly, A = 2 X^T X / n the Hessian, g = 2 X^T (X w - y) / n."""
    increases = []
    for x, y in batches:
        n = len(y)
        g = 2 * x.T @ (x @ w - y) / n
        hessian = 2 * x.T @ x / n
        t = w.abs() if adaptive else torch.ones_like(w)
        eps = rho * t * t * g / (t * g).norm()
        increases.append(g @ eps + eps @ hessian @ eps / 2)
    return float(torch.stack(increases).mean())


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_sharpness_is_the_closed_form_on_a_quadratic(adaptive):
    model, batches = linear_regression()
    context = MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator(),
                             num_classes=1, loss_fn=squared_error)
    from sharpbench_measures.sam import sam_sharpness

    value = sam_sharpness(model, context, rho=0.3, adaptive=adaptive)
    assert value == pytest.approx(closed_form(model.weight.detach().reshape(-1), batches, 0.3, adaptive), rel=1e-10)
    assert value > 0


def test_asam_is_invariant_to_a_rescaling_that_sam_is_not():
    """A ReLU network's first layer times a, the next layer divided by a: the same function. ASAM's step moves
    with the weights (its value is unchanged); SAM's is not."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    twin = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():
        twin[0].weight.mul_(4.0), twin[0].bias.mul_(4.0), twin[2].weight.div_(4.0)
    generator = torch.Generator().manual_seed(2)
    batches = [(torch.randn(16, 4, generator=generator), torch.randint(0, 3, (16,), generator=generator))]
    values = {(name, adaptive): sharpbench.compute_measure("sam-sharpness", net, batches, rho=0.1, adaptive=adaptive)
              for name, net in (("model", model), ("twin", twin)) for adaptive in (False, True)}
    assert values["model", True] == pytest.approx(values["twin", True], rel=1e-9)
    assert values["model", False] != pytest.approx(values["twin", False], rel=1e-3)
