"""The fast kernels against the straightforward oracle, and the execution options against each other."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import oracle
from sharpbench.kernels.sharpness import Execution, average_case_sharpness, worst_case_sharpness


def models():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(10, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 4))
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 4))
    for model in (mlp, cnn):
        model.train()
        with torch.no_grad():  # non-trivial running statistics for eval mode
            model(torch.randn(64, 10) if model is mlp else torch.randn(64, 1, 6, 6))
        model.double().eval()
    mlp_batches = [(torch.randn(16, 10, dtype=torch.float64), torch.randint(0, 4, (16,))) for _ in range(3)]
    mlp_batches.append((torch.randn(5, 10, dtype=torch.float64), torch.randint(0, 4, (5,))))  # a smaller last one
    cnn_batches = [(torch.randn(8, 1, 6, 6, dtype=torch.float64), torch.randint(0, 4, (8,))) for _ in range(2)]
    return {"mlp": (mlp, mlp_batches), "cnn": (cnn, cnn_batches)}


CASES = [(kind, norm, adaptive, normalize) for kind in ("worst", "avg") for norm in ("linf", "l2")
         for adaptive in (True, False) for normalize in (False, True)]
RHO = {("worst", "linf"): 0.01, ("worst", "l2"): 0.3, ("avg", "linf"): 0.2, ("avg", "l2"): 0.1}


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("kind,norm,adaptive,normalize", CASES)
def test_fast_path_agrees_with_the_oracle_in_float64(name, kind, norm, adaptive, normalize):
    model, batches = models()[name]
    params = dict(rho=RHO[kind, norm], norm=norm, adaptive=adaptive, normalize_logits=normalize)
    if kind == "worst":
        fast = worst_case_sharpness(model, batches, **params)
        slow = oracle.worst_case(model, batches, **params)
    else:
        fast = average_case_sharpness(model, batches, samples=6, generator=torch.Generator().manual_seed(3),
                                      **params)
        slow = oracle.average_case(model, batches, samples=6, seed=3, **params)
    assert fast == pytest.approx(slow, rel=1e-5, abs=1e-12)
    assert fast != 0


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_the_value_does_not_depend_on_the_chunking(chunk):
    model, batches = models()["mlp"]
    for function, params in ((worst_case_sharpness, dict(rho=0.01)), (average_case_sharpness, dict(rho=0.1))):
        whole = function(model, batches, **params)
        assert function(model, batches, execution=Execution(chunk=chunk), **params) == pytest.approx(whole, rel=1e-12)


def test_a_tiny_memory_budget_still_gives_the_same_value():
    model, batches = models()["cnn"]
    whole = average_case_sharpness(model, batches, rho=0.1, samples=5)
    assert average_case_sharpness(model, batches, rho=0.1, samples=5,
                                  execution=Execution(memory_budget=1)) == pytest.approx(whole, rel=1e-12)


def test_bf16_autocast_stays_within_two_percent_of_float32():
    # Stated tolerance: 2% relative on a float32 model (bf16 keeps 8 bits of mantissa in the passes only).
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
    batches = [(torch.randn(64, 32), torch.randint(0, 10, (64,))) for _ in range(2)]
    for function, params in ((worst_case_sharpness, dict(rho=0.05)), (average_case_sharpness, dict(rho=0.3))):
        exact = function(model, batches, **params)
        approximate = function(model, batches, execution=Execution(bf16=True), **params)
        assert approximate == pytest.approx(exact, rel=0.02)


@pytest.mark.slow
def test_torch_compile_gives_the_same_value():
    model, batches = models()["mlp"]
    for function, params in ((worst_case_sharpness, dict(rho=0.01)), (average_case_sharpness, dict(rho=0.1))):
        eager = function(model, batches, **params)
        assert function(model, batches, execution=Execution(compile=True), **params) == pytest.approx(eager, rel=1e-9)
