"""Whole calls at the study's protocol (batches of 128, 20 steps or noise samples), each against the passes it
makes done plainly, and the worst case against the study's released code (with --study-code).

The passes are what no implementation can skip: for each batch, the worst case needs the loss and gradient at
20 points and the loss at one more (20 forward+backward passes and one forward), the average case 21 forward
passes (20 noisy, one at w) and 20 Gaussian draws of the parameter vector's size. Everything beyond them (the
vector work, the guard, the card's lookup) is the overhead that these ratios show.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
import torch.nn.functional as F

from benchmarks.models import model_and_batches
from benchmarks.passes import forwards_and_draws, plain_passes
from benchmarks.timing import timed
from sharpbench import compute_measure
from sharpbench.kernels.sharpness import average_case_sharpness, worst_case_sharpness

RHO = 0.002      # worst-case adaptive L-inf, the middle of the study's ResNet-18 grid
SIGMA = 0.1      # average-case adaptive L2
# (model, batches): timm's resnet18 at 32x32 and the digits MLP on a CPU; on a GPU the study's PreActResNet-18 too
CALL_CASES = [("timm-resnet18", 1), ("digits-mlp", 8), ("preact-resnet18", 1)]
# a digits-MLP call takes 0.1-0.5 s and moves by a third between rounds on a shared CPU: more rounds for its median
ROUNDS = {"digits-mlp": 15}


def _case(setup, name: str, batches: int):
    if name == "preact-resnet18" and setup.full and setup.device.type == "cpu":
        pytest.skip("a whole PreActResNet-18 call takes minutes per round on a CPU; test_kernels times its iteration")
    model, data = model_and_batches(name, setup.device, setup.full, batches=batches)
    steps = 20 if setup.full else 2
    return model, data, steps, f"{name}, {batches} x m={len(data[0][1])}"


@pytest.mark.parametrize("name,batches", CALL_CASES)
def test_worst_case_call(benchmark, setup, record, name, batches):
    model, data, steps, case = _case(setup, name, batches)
    timed(benchmark, setup, lambda: worst_case_sharpness(model, data, rho=RHO, steps=steps), rounds=ROUNDS.get(name, 3))
    record("whole-call", f"{case}, worst-case kernel", "whole-call")
    record("study", case, "sharpbench")


@pytest.mark.parametrize("name,batches", CALL_CASES)
def test_worst_case_passes(benchmark, setup, record, name, batches):
    model, data, steps, case = _case(setup, name, batches)
    timed(benchmark, setup, lambda: plain_passes(model, data, backward=steps, forward=1), rounds=ROUNDS.get(name, 3))
    record("whole-call", f"{case}, worst-case kernel", "passes")
    record("whole-call", f"{case}, compute_measure", "passes")


@pytest.mark.parametrize("name,batches", CALL_CASES[:2])
def test_compute_measure_call(benchmark, setup, record, name, batches):
    """What a notebook user runs: the card looked up, the guard's snapshots and checks around the kernel."""
    model, data, steps, case = _case(setup, name, batches)
    timed(benchmark, setup, lambda: compute_measure("sharpness-worst-linf-adaptive", model, data, rho=RHO,
                                                    steps=steps), rounds=ROUNDS.get(name, 3))
    record("whole-call", f"{case}, compute_measure", "whole-call")


@pytest.mark.parametrize("name,batches", CALL_CASES)
def test_average_case_call(benchmark, setup, record, name, batches):
    model, data, steps, case = _case(setup, name, batches)
    timed(benchmark, setup, lambda: average_case_sharpness(model, data, rho=SIGMA, samples=steps),
          rounds=ROUNDS.get(name, 3))
    record("average", case, "average")


@pytest.mark.parametrize("name,batches", CALL_CASES)
def test_average_case_forwards_and_draws(benchmark, setup, record, name, batches):
    model, data, steps, case = _case(setup, name, batches)
    generator = torch.Generator(device=setup.device).manual_seed(0)
    noise = torch.empty(sum(p.numel() for p in model.parameters()), device=setup.device)
    timed(benchmark, setup, lambda: forwards_and_draws(model, data, steps, generator, noise),
          rounds=ROUNDS.get(name, 3))
    record("average", case, "forwards")


def _study_module(setup):
    """The study's sharpness.py, imported from --study-code with its `utils` beside it."""
    if setup.study_code is None:
        pytest.skip("--study-code PATH (a checkout of tml-epfl/sharpness-vs-generalization) times the study's code")
    source = setup.study_code / "sharpness.py"
    if not source.is_file():
        pytest.fail(f"--study-code {setup.study_code} has no sharpness.py: give the root of the study's repository")
    sys.path.insert(0, str(setup.study_code))
    try:
        spec = importlib.util.spec_from_file_location("study_sharpness", source)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(setup.study_code))
    return module


@pytest.mark.parametrize("name,batches", CALL_CASES)
def test_study_code(benchmark, setup, record, monkeypatch, name, batches):
    """The study's eval_APGD_sharpness as its scripts call it (no random start, one restart), on the same model,
    batches and rho. Its `.cuda()` calls are sent to the benchmark's device."""
    study = _study_module(setup)
    model, data, steps, case = _case(setup, name, batches)
    monkeypatch.setattr(torch.Tensor, "cuda", lambda tensor, *args, **kwargs: tensor.to(setup.device))
    batches_of_five = [(inputs, None, labels, None, None) for inputs, labels in data]

    def run():
        study.eval_APGD_sharpness(model, batches_of_five, F.cross_entropy, None, None, rho=RHO, n_iters=steps,
                                  adaptive=True, norm="linf", rand_init=False)

    timed(benchmark, setup, run, rounds=ROUNDS.get(name, 3))
    record("study", case, "study")
