"""Benchmarks of the sharpness kernels, each one half of a ratio printed at the end of the run."""

from __future__ import annotations

import oracle
import pytest
import torch.nn.functional as F

from benchmarks.models import LARGE, model_and_batches
from benchmarks.timing import timed
from sharpbench.kernels.ascent import WorstCaseAscent, WorstCaseConfig
from sharpbench.kernels.flat import FlatModel
from sharpbench.kernels.scaling import Scaling
from sharpbench.kernels.sharpness import Execution, average_case_sharpness, make_objective, worst_case_sharpness

ITERATION_MODELS = ["small-cnn", "resnet18", "vit-s", "digits-mlp", "preact-resnet18", "timm-resnet18"]


@pytest.mark.parametrize("name", ITERATION_MODELS)
def test_plain_forward_backward(benchmark, setup, record, name):
    model, [(inputs, labels)] = model_and_batches(name, setup.device, setup.full)

    def plain():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), labels).backward()

    timed(benchmark, setup, plain, rounds=10)
    record("iteration", name, "plain")


@pytest.mark.parametrize("name", ITERATION_MODELS)
def test_worst_case_iteration(benchmark, setup, record, name):
    model, [(inputs, labels)] = model_and_batches(name, setup.device, setup.full)
    flat = FlatModel.of(model)
    objective = make_objective(flat, F.cross_entropy, normalize_logits=False, bf16=False)
    shape = (1, flat.w0.numel())
    c = Scaling(adaptive=True).vector(flat)
    ascent = WorstCaseAscent(objective, flat.w0.expand(shape), c, inputs[None], labels[None],
                             WorstCaseConfig(rho=0.002))
    state = ascent.start()
    timed(benchmark, setup, lambda: ascent.advance(state), rounds=10)
    record("iteration", name, "iteration")


SPEEDUP_CASES = [("digits-mlp", "worst", "linf"), ("digits-mlp", "worst", "l2"), ("digits-mlp", "avg", "l2"),
                 ("resnet18", "worst", "linf"), ("resnet18", "avg", "l2")]
RHO = {("worst", "linf"): 0.002, ("worst", "l2"): 0.5, ("avg", "l2"): 0.1}


def _speedup_problem(setup, name):
    batches = 2 if name in LARGE else 8
    model, data = model_and_batches(name, setup.device, setup.full, batches=batches)
    steps = 20 if setup.full else 2
    return model, data, steps


@pytest.mark.parametrize("name,kind,norm", SPEEDUP_CASES)
def test_fast_path(benchmark, setup, record, name, kind, norm):
    model, data, steps = _speedup_problem(setup, name)
    params = dict(rho=RHO[kind, norm], norm=norm, adaptive=True)
    if kind == "worst":
        run = lambda: worst_case_sharpness(model, data, steps=steps, **params)  # noqa: E731
    else:
        run = lambda: average_case_sharpness(model, data, samples=steps, **params)  # noqa: E731
    timed(benchmark, setup, run, rounds=1 if name in LARGE else 5)
    record("oracle", f"{name} {kind}-{norm}", "fast")


@pytest.mark.parametrize("name,kind,norm", SPEEDUP_CASES)
def test_straightforward_oracle(benchmark, setup, record, name, kind, norm):
    model, data, steps = _speedup_problem(setup, name)
    params = dict(rho=RHO[kind, norm], norm=norm, adaptive=True)
    if kind == "worst":
        run = lambda: oracle.worst_case(model, data, steps=steps, **params)  # noqa: E731
    else:
        run = lambda: oracle.average_case(model, data, samples=steps, **params)  # noqa: E731
    timed(benchmark, setup, run, rounds=1 if name in LARGE else 5)
    record("oracle", f"{name} {kind}-{norm}", "oracle")


VMAP_CASES = [("digits-mlp", "worst"), ("digits-mlp", "avg"), ("small-cnn", "worst"), ("resnet18", "worst")]


@pytest.mark.parametrize("name,kind", VMAP_CASES)
@pytest.mark.parametrize("mode", ["vmapped", "sequential"])
def test_vmapped_and_sequential(benchmark, setup, record, name, kind, mode):
    model, data, steps = _speedup_problem(setup, name)
    execution = Execution(chunk=len(data) if mode == "vmapped" else 1)
    if kind == "worst":
        run = lambda: worst_case_sharpness(model, data, rho=0.002, steps=steps, execution=execution)  # noqa: E731
    else:
        run = lambda: average_case_sharpness(model, data, rho=0.1, samples=steps, execution=execution)  # noqa: E731
    timed(benchmark, setup, run, rounds=1 if name in LARGE else 5)
    record("sequential", f"{name} {kind}", mode)
