"""reference_compat: sharpbench's ascent reproduces the released code's iterates (tests/released_ascent.py, a
transcription independent of the kernels), to 1e-6 relative in float64, for both norms, adaptive and standard;
and the corrected default differs from it where the two algorithms differ."""

from __future__ import annotations

import pytest
import torch
from released_ascent import released_sharpness
from torch import nn

from sharpbench.kernels.sharpness import worst_case_sharpness

pytestmark = pytest.mark.usefixtures("float64_default")

CASES = [("linf", True, 0.05), ("linf", False, 0.02), ("l2", True, 0.5), ("l2", False, 0.5)]


def model_and_batches(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 12), nn.Tanh(), nn.Linear(12, 4)).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    batches = [(torch.randn(16, 6, generator=generator), torch.randint(0, 4, (16,), generator=generator))
               for _ in range(3)]
    return model, batches


@pytest.mark.parametrize("norm,adaptive,rho", CASES)
def test_reference_compat_agrees_with_the_released_algorithm(norm, adaptive, rho):
    model, batches = model_and_batches()
    ours = worst_case_sharpness(model, batches, rho=rho, norm=norm, adaptive=adaptive, reference_compat=True)
    released = released_sharpness(model, batches, rho=rho, adaptive=adaptive, norm=norm)
    assert released > 0
    assert ours == pytest.approx(released, rel=1e-6)


def test_the_default_ascent_is_not_the_released_one_where_they_differ():
    """Adaptive L2 differs in its step, its projection and its halvings: the values differ."""
    model, batches = model_and_batches()
    default = worst_case_sharpness(model, batches, rho=0.5, norm="l2", adaptive=True)
    released = released_sharpness(model, batches, rho=0.5, adaptive=True, norm="l2")
    assert abs(default - released) > 1e-3 * released


def test_a_parameter_at_zero_turns_the_released_l2_projection_off_and_compat_keeps_that():
    """The released weighted norm is 0/0 = NaN with a zero parameter, so nothing is projected: reproduced."""
    model, batches = model_and_batches()
    with torch.no_grad():
        model[0].bias[0] = 0.0
    ours = worst_case_sharpness(model, batches, rho=0.5, norm="l2", adaptive=True, reference_compat=True)
    released = released_sharpness(model, batches, rho=0.5, adaptive=True, norm="l2")
    constrained = worst_case_sharpness(model, batches, rho=0.5, norm="l2", adaptive=True)
    assert ours == pytest.approx(released, rel=1e-6)
    assert ours > constrained


@pytest.mark.parametrize("option", [{"restarts": 2}, {"perturb_head": False}, {"scaling": "filterwise"}])
def test_what_the_released_code_cannot_do_is_refused_with_reference_compat(option):
    model, batches = model_and_batches()
    with pytest.raises(ValueError, match="reference_compat reproduces the released code"):
        worst_case_sharpness(model, batches, rho=0.05, reference_compat=True, **option)
