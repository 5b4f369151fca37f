"""The properties of a measure, each from a test that can fail (`sharpbench measure check`): on the tiny models of
:mod:`sharpbench.evaluation.check_models`, is its value finite, deterministic, computed without changing the
model or the batches, the same from its many-model form, invariant to rescaling and to permuting ReLU units, and
how many forward+backward passes does it cost?

Every call goes through the card (`MeasureSpec.call` / `call_many`) on a fresh copy of a model that is already in
eval mode, as the engine gives it; the check then compares what the measure left behind with what it was given,
so it sees what the measure did (the guard of an evaluation would only see the weights)."""

from __future__ import annotations

import copy
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from sharpbench.cards.measure_card import MeasureSpec
from sharpbench.errors import MeasureError
from sharpbench.evaluation.check_models import (
    ARCHITECTURES,
    CheckModel,
    build_check_model,
)
from sharpbench.evaluation.guard import as_value, first_changed, first_changed_batch, state_snapshot
from sharpbench.measure import Batch, MeasureContext
from sharpbench.version import __version__, git_commit

SEED = 0
# The properties a measure must have: a failure of any of them exits 1. The invariances are facts about it.
REQUIRED = ("finite", "deterministic", "unchanged", "many_equals_single")
PROPERTIES = REQUIRED + ("rescaling_invariant", "permutation_invariant")
RESCALING_FACTORS = (4.0, 3.0)   # a power of two (exact in floating point) and one that rounds
# Agreement of a transformed MLP's value with the original's, relative: the transformed network computes the same
# function up to float32 rounding (about 1e-7 relative per operation, which an ascent or a bisection may amplify a
# thousandfold), while a measure that is not invariant moves by the order of the transformation (a factor 3 or 4,
# a reshuffled layer): 1e-4 lies between the two. A card that states a looser tolerance gets that one.
INVARIANCE_TOLERANCE = 1e-4
# The measure's calls per model: they give determinism, and the faster of them the measure's wall time (the first
# may carry one-time work: a lazy import, the allocator's first blocks).
TIMED_CALLS = 2
TIMED_PASSES = 5                  # forward+backward passes timed per model, after one to warm up
# Torch threads during a check: on models this small a second thread only adds synchronization, and on a shared
# machine it made every step up to 40 times slower (and the timings erratic); the ratio of two timings (the cost)
# is what the check reports.
THREADS = 1


@dataclass
class ModelCheck:
    """What one tiny model showed: the value, or why there is none, and each per-model property."""

    value: float | None = None
    status: str = "ok"               # ok | not applicable (NotImplementedError) | failed
    error: str | None = None
    deterministic: bool | None = None
    unchanged: bool | None = None
    changes: list[str] = field(default_factory=list)
    many_equals_single: bool | None = None
    many_values: list[float] | None = None
    measure_seconds: float | None = None
    pass_seconds: float | None = None
    cost_passes: float | None = None


@dataclass
class CheckReport:
    """The check of one measure: its properties (True, False, or None where not tested) and the evidence."""

    spec: MeasureSpec
    params: dict[str, Any]
    models: dict[str, ModelCheck]
    invariance: dict[str, Any]
    properties: dict[str, bool | None]
    seconds: float

    @property
    def cost_passes(self) -> float | None:
        """The headline cost: measure calls per forward+backward pass on the MLP."""
        return self.models["mlp"].cost_passes

    def failures(self) -> list[str]:
        """One line per failed required property, naming the model and what went wrong."""
        lines = []
        for name, check in self.models.items():
            if check.status == "failed":
                lines.append(f"finite: {name}: {check.error}")
            if check.deterministic is False:
                lines.append(f"deterministic: {name}: two calls with the generator seeded alike gave different "
                             f"values")
            lines += [f"unchanged: {name}: {change}" for change in check.changes]
            if check.many_equals_single is False:
                lines.append(f"many_equals_single: {name}: " + (
                    check.error if check.many_values is None else
                    f"many-model form gave {check.many_values}, single calls {check.value} and its twin's "
                    f"(tolerance {self.spec.tolerance:g})"))
        if self.properties["finite"] is False and not any(c.status == "failed" for c in self.models.values()):
            lines.append("finite: the measure is not applicable to any of the tiny models")
        return lines

    @property
    def passed(self) -> bool:
        """Whether every required property held (a property not offered, None, does not fail)."""
        return all(self.properties[name] is not False for name in REQUIRED)

    def document(self) -> dict[str, Any]:
        """The JSON document of `--json` and of a published properties file."""
        implementation = self.spec.implementation()
        return {
            "measure": self.spec.name,
            "properties": dict(self.properties),
            "cost_passes": _rounded(self.cost_passes),
            "passed": self.passed,
            "failures": self.failures(),
            "params": self.params,
            "tolerance": {"card": self.spec.tolerance, "invariance": self.invariance["tolerance"]},
            "invariance": {key: value for key, value in self.invariance.items() if key != "tolerance"},
            "models": {name: {key: _rounded(value) if key.endswith(("seconds", "passes")) else value
                              for key, value in asdict(check).items()}
                       for name, check in self.models.items()},
            "provenance": {
                "implementation": {"function": implementation.function, "source_sha256": implementation.source_sha256,
                                   "kernels_sha256": implementation.kernels_sha256,
                                   "card_version": implementation.card_version},
                "card_sha256": self.spec.card_sha256,
                "sharpbench_version": __version__,
                "git_commit": git_commit(),
                "torch_version": torch.__version__,
                "torch_threads": THREADS,
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
                "seconds": round(self.seconds, 2),
            },
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.4g}")


def check_measure(spec: MeasureSpec, params: dict[str, Any] | None = None, *,
                  progress: Callable[[str], None] = lambda step: None) -> CheckReport:
    """Run every property test of `spec` (with `params` over the card's defaults); `progress` is told each
    step's name as it starts (a progress bar's hook)."""
    params = spec.bind(params)
    spec.implementation()    # a broken card fails here, as a CardError, before any model is built
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return _check(spec, params, progress)
    finally:
        torch.set_num_threads(threads)


def _check(spec: MeasureSpec, params: dict[str, Any], progress: Callable[[str], None]) -> CheckReport:
    start = time.perf_counter()
    models: dict[str, ModelCheck] = {}
    built: dict[str, CheckModel] = {}
    for family in ARCHITECTURES:
        progress(family)
        built[family] = build_check_model(family, seed=SEED)
        models[family] = _check_model(spec, params, built[family])
    if spec.computes_many:
        for family, check in models.items():
            progress(f"{family}: many-model form")
            if check.status == "ok":
                _check_many(spec, params, built[family], check)
    progress("invariances")
    invariance = _check_invariances(spec, params, built["mlp"], models["mlp"])
    applicable = [check for check in models.values() if check.status != "not applicable"]
    offered = [check.many_equals_single for check in models.values() if check.many_equals_single is not None]
    properties = {
        "finite": bool(applicable) and all(check.status == "ok" for check in applicable),
        "deterministic": all(check.deterministic is not False for check in applicable),
        "unchanged": all(check.unchanged is not False for check in models.values()),
        "many_equals_single": all(offered) if offered else None,
        "rescaling_invariant": invariance["rescaling_invariant"],
        "permutation_invariant": invariance["permutation_invariant"],
    }
    return CheckReport(spec, params, models, invariance, properties, time.perf_counter() - start)


def _context(check: CheckModel, batches: list[Batch], initial_state: bool = True,
             uses: tuple[str, ...] = ()) -> MeasureContext:
    """A check's context; a measure that reads test inputs gets the batches' inputs (a check model has no test
    split), and one that reads other models gets the same architecture fitted from the next seed."""
    return MeasureContext(batches=batches, device=torch.device("cpu"),
                          generator=torch.Generator().manual_seed(SEED), num_classes=check.num_classes,
                          initial_state={name: tensor.clone() for name, tensor in check.initial_state.items()}
                          if initial_state else None,
                          test_inputs=[inputs.clone() for inputs, _ in batches] if "test_inputs" in uses else None,
                          siblings=[copy.deepcopy(build_check_model(check.name, seed=SEED + 1).model).eval()]
                          if "other_models" in uses else None)


@dataclass
class _Call:
    """One observed call: its raw result or error, how long it took, and what it changed."""

    raw: Any = None
    error: BaseException | None = None
    seconds: float = 0.0
    changes: list[str] = field(default_factory=list)


def _observed(call: Callable[[list[nn.Module], list[Batch]], Any], checks: list[CheckModel]) -> _Call:
    """Run `call` on fresh eval-mode copies of the models and batches, and list what it changed in them: a weight
    or buffer (bit for bit), a module's train/eval mode, a batch tensor (bit for bit)."""
    models = [copy.deepcopy(check.model).eval() for check in checks]
    batches = [[(inputs.clone(), labels.clone()) for inputs, labels in check.batches] for check in checks]
    snapshots = [state_snapshot(model) for model in models]
    observed = _Call()
    start = time.perf_counter()
    try:
        observed.raw = call(models, batches)
    except (Exception, SystemExit) as error:   # reported, never raised: the other properties still get tested
        observed.error = error
    observed.seconds = time.perf_counter() - start
    for check, model, snapshot, given in zip(checks, models, snapshots, batches):
        changed = first_changed(model, snapshot)
        if changed is not None:
            observed.changes.append(f"the call changed {changed} (weights and buffers must stay bit for bit)")
        flipped = [name or "the model" for name, module in model.named_modules() if module.training]
        if flipped:
            observed.changes.append(f"the call left {', '.join(flipped[:3])}{' ...' if len(flipped) > 3 else ''} "
                                    f"in train mode (the model is given in eval mode and must be left in it)")
        altered = first_changed_batch(given, check.batches)
        if altered is not None:
            observed.changes.append(f"the call changed {altered} in place (batches are shared by every model and "
                                    f"must stay bit for bit)")
    return observed


def _single(spec: MeasureSpec, params: dict[str, Any], check: CheckModel, initial_state: bool = True) -> _Call:
    return _observed(lambda models, batches: spec.call(models[0], _context(check, batches[0], initial_state,
                                                                          spec.uses), params), [check])


def _value(spec: MeasureSpec, params: dict[str, Any], raw: Any, where: str) -> float:
    """The call's result as the guard accepts it (a finite float or one-element tensor), else a MeasureError."""
    return as_value(spec, raw, where, params)


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _check_model(spec: MeasureSpec, params: dict[str, Any], check: CheckModel) -> ModelCheck:
    """finite, deterministic and unchanged on one model, and its cost in forward+backward passes."""
    result = ModelCheck()
    calls = [_single(spec, params, check) for _ in range(TIMED_CALLS)]
    for call in calls:
        result.changes += [change for change in call.changes if change not in result.changes]
    result.unchanged = not result.changes
    values = []
    for call in calls:
        if isinstance(call.error, NotImplementedError):
            result.status, result.error = "not applicable", _error_text(call.error)
            return result
        try:
            if call.error is not None:
                raise call.error
            values.append(_value(spec, params, call.raw, check.name))
        except (Exception, SystemExit) as error:
            result.status, result.error = "failed", _error_text(error)
            return result
    result.value = values[0]
    result.deterministic = all(value == values[0] for value in values)
    result.measure_seconds = min(call.seconds for call in calls)
    result.pass_seconds = _pass_seconds(check)
    result.cost_passes = result.measure_seconds / result.pass_seconds
    return result


def _pass_seconds(check: CheckModel) -> float:
    """The median wall time of one forward+backward pass of the mean loss over the model's batches (gradients
    taken with torch.autograd.grad, so no .grad is left behind)."""
    model = copy.deepcopy(check.model).eval()
    weights = [p for p in model.parameters() if p.requires_grad]
    context = _context(check, check.batches)
    count = sum(len(labels) for _, labels in check.batches)
    times = []
    for _ in range(TIMED_PASSES + 1):
        start = time.perf_counter()
        loss = sum(context.loss_fn(model(inputs), labels) * len(labels) for inputs, labels in check.batches) / count
        torch.autograd.grad(loss, weights)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def _check_many(spec: MeasureSpec, params: dict[str, Any], check: CheckModel, result: ModelCheck) -> None:
    """many([m, twin]) against [single(m), single(twin)], the twin the same architecture from another seed; the
    context of a many-model call has no initial weights, so neither have the single calls compared with it."""
    twin = replace(build_check_model(check.name, seed=SEED + 1), batches=check.batches)
    singles = [_single(spec, params, model, initial_state=False) for model in (check, twin)]
    many = _observed(lambda models, batches: spec.call_many(models, _context(check, batches[0], False), params),
                     [check, twin])
    for call in [*singles, many]:
        result.changes += [change for change in call.changes if change not in result.changes]
    result.unchanged = not result.changes
    try:
        for call in [*singles, many]:
            if call.error is not None:
                raise call.error
        expected = [_value(spec, params, call.raw, check.name) for call in singles]
        if not isinstance(many.raw, (list, tuple)) or len(many.raw) != 2:
            raise MeasureError(f"the many-model form returned {many.raw!r} for 2 models")
        result.many_values = [_value(spec, params, raw, check.name) for raw in many.raw]
    except (Exception, SystemExit) as error:
        result.many_equals_single, result.error = False, f"many-model form: {_error_text(error)}"
        return
    result.many_equals_single = all(_agree(a, b, spec.tolerance) for a, b in zip(result.many_values, expected))


def _agree(a: float, b: float, tolerance: float) -> bool:
    """Relative agreement: |a - b| <= tolerance * max(|a|, |b|) (equal values always agree, 0 included)."""
    return a == b or math.isclose(a, b, rel_tol=tolerance, abs_tol=0.0)


def _linear_layers(model: nn.Module) -> list[nn.Linear]:
    return [module for module in model.modules() if isinstance(module, nn.Linear)]


def rescaled(model: nn.Module, factor: float) -> nn.Module:
    """A copy whose first hidden layer's weights and bias are multiplied by `factor` > 0 and whose next layer's
    weights are divided by it: with ReLU between them, the same function."""
    out = copy.deepcopy(model)
    first, second = _linear_layers(out)[:2]
    with torch.no_grad():
        first.weight.mul_(factor)
        first.bias.mul_(factor)
        second.weight.div_(factor)
    return out


def permuted(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """A copy whose first hidden layer's units are permuted (rows of its weights and bias, columns of the next
    layer's weights): the same function."""
    out = copy.deepcopy(model)
    first, second = _linear_layers(out)[:2]
    order = torch.randperm(first.out_features, generator=generator)
    while torch.equal(order, torch.arange(first.out_features)):
        order = torch.randperm(first.out_features, generator=generator)
    with torch.no_grad():
        first.weight.copy_(first.weight[order])
        first.bias.copy_(first.bias[order])
        second.weight.copy_(second.weight[:, order])
    return out


def _transforms(model: nn.Module) -> Iterator[tuple[str, str, nn.Module]]:
    for factor in RESCALING_FACTORS:
        yield "rescaling_invariant", f"rescaled by {factor:g}", rescaled(model, factor)
    yield "permutation_invariant", "permuted", permuted(model, torch.Generator().manual_seed(SEED))


def _check_invariances(spec: MeasureSpec, params: dict[str, Any], mlp: CheckModel,
                       result: ModelCheck) -> dict[str, Any]:
    """The MLP's value after each function-preserving transformation, against its value before."""
    tolerance = max(spec.tolerance, INVARIANCE_TOLERANCE)
    found: dict[str, Any] = {"tolerance": tolerance, "rescaling_invariant": None, "permutation_invariant": None,
                             "baseline": result.value, "values": {}}
    if result.status != "ok":
        return found
    with torch.no_grad():
        reference = [mlp.model(inputs) for inputs, _ in mlp.batches]
    verdicts: dict[str, list[bool]] = {"rescaling_invariant": [], "permutation_invariant": []}
    for prop, label, model in _transforms(mlp.model):
        with torch.no_grad():
            logits = [model(inputs) for inputs, _ in mlp.batches]
        if not all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(logits, reference)):
            raise AssertionError(f"the {label} MLP computes another function: the check itself is wrong")
        call = _single(spec, params, CheckModel(mlp.name, model, mlp.batches, mlp.num_classes, mlp.initial_state))
        try:
            if call.error is not None:
                raise call.error
            value = _value(spec, params, call.raw, f"the {label} MLP")
        except (Exception, SystemExit) as error:
            found["values"][label] = _error_text(error)
            verdicts[prop].append(False)
            continue
        found["values"][label] = value
        verdicts[prop].append(_agree(value, result.value, tolerance))
    found.update({prop: all(values) for prop, values in verdicts.items()})
    return found
