"""The integrity guard: a measure runs in eval mode, must return one finite number per model, and must leave
every weight and the sharpness batches bit for bit as it found them; any breach is a MeasureError naming the
measure, the model and the fix."""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import torch
from torch import nn

from sharpbench.errors import MeasureError
from sharpbench.measure import Batch, MeasureContext
from sharpbench.cards.measure_card import MeasureSpec


def state_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every weight and buffer, to compare with after a call."""
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def same_bits(after: torch.Tensor, before: torch.Tensor) -> bool:
    """Whether two tensors are bit for bit equal (NaN-safe, -0.0 differs from 0.0)."""
    after = after.detach()
    return (after.shape == before.shape and after.dtype == before.dtype and
            torch.equal(after.contiguous().reshape(-1).view(torch.uint8), before.reshape(-1).view(torch.uint8)))


def first_changed(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> str | None:
    """The name of the first tensor whose bits differ from the snapshot, or None."""
    current = model.state_dict()
    if current.keys() != snapshot.keys():
        return f"the set of tensors ({sorted(set(current) ^ set(snapshot))})"
    return next((name for name, before in snapshot.items() if not same_bits(current[name], before)), None)


def batches_snapshot(batches: Sequence[Batch]) -> list[Batch]:
    """A copy of the sharpness batches, to compare with after each call."""
    return [(inputs.detach().clone(), labels.detach().clone()) for inputs, labels in batches]


def first_changed_batch(batches: Sequence[Batch], snapshot: list[Batch]) -> str | None:
    """Which sharpness batch a measure altered ('batch 3's inputs'), or None when all are as they were."""
    if len(batches) != len(snapshot):
        return f"the list of batches ({len(snapshot)} batches before, {len(batches)} after)"
    for index, (batch, before) in enumerate(zip(batches, snapshot)):
        for part, after, old in (("inputs", batch[0], before[0]), ("labels", batch[1], before[1])):
            if not same_bits(after, old):
                return f"batch {index}'s {part}"
    return None


def describe_models(model_ids: Sequence[str]) -> str:
    """The first model and how many more: 'model '000' and 19 more'."""
    return model_ids[0] + (f" and {len(model_ids) - 1} more" if len(model_ids) > 1 else "")


def run_guarded(spec: MeasureSpec, model: nn.Module, context: MeasureContext, params: dict[str, Any],
                model_id: str = "the model") -> float:
    """Run a measure in eval mode and check that it returned a finite number and left the weights unchanged."""
    return run_guarded_many(spec, [model], context, params, [model_id], many=False)[0]


def run_guarded_many(spec: MeasureSpec, models: list[nn.Module], context: MeasureContext, params: dict[str, Any],
                     model_ids: list[str], many: bool = True, batches: Sequence[Batch] | None = None) -> list[float]:
    """`run_guarded` for same-architecture models through the measure's many-model form (one call for all).

    `batches` is a snapshot of the context's batches (`batches_snapshot`) that a caller making many calls on the
    same batches takes once; without it, they are copied for this call."""
    snapshots = []
    for model in models:
        model.eval()
        snapshots.append(state_snapshot(model))
    batches = batches_snapshot(context.batches) if batches is None else batches
    names = describe_models(model_ids)
    try:
        raw = spec.call_many(models, context, params) if many else [spec.call(models[0], context, params)]
    except MeasureError:
        raise
    except (Exception, SystemExit) as error:      # sys.exit() in a measure must not end the run without a report
        raise MeasureError(f"measure '{spec.name}' failed on {names}: {type(error).__name__}: {error} "
                           f"(implementation {spec.function}, card {spec.path})") from error
    altered = first_changed_batch(context.batches, batches)
    if altered is not None:
        raise MeasureError(
            f"measure '{spec.name}' changed the sharpness batches in place ({altered}) on {names}; every model "
            f"must see the same data, so a measure must only read them: compute on a copy (x = x * 2, not "
            f"x.mul_(2)). Fix {spec.function}; no value was stored for {names}.")
    for model, snapshot, model_id in zip(models, snapshots, model_ids):
        changed = first_changed(model, snapshot)
        if changed is not None:
            raise MeasureError(
                f"measure '{spec.name}' changed the weights of {model_id} (first changed tensor: {changed}); a "
                f"measure must only read the model: evaluate it functionally (torch.func.functional_call) or "
                f"on a copy (copy.deepcopy(model)). Fix {spec.function}; no value was stored for this model."
            )
    if many and (not isinstance(raw, (list, tuple)) or len(raw) != len(models)):
        raise MeasureError(f"measure '{spec.name}': its many-model form returned {raw!r} for {len(models)} models; "
                           f"it must return one value per model. Fix {spec.function}.many.")
    return [as_value(spec, value, model_id, params) for value, model_id in zip(raw, model_ids)]


def as_value(spec: MeasureSpec, raw: Any, model_id: str, params: dict[str, Any]) -> float:
    """The measure's value as a float: a real number (Python's, numpy's) or a one-element real tensor, never a
    str, a bool (numpy's or torch's included) or a complex number."""
    real_tensor = (isinstance(raw, torch.Tensor) and raw.numel() == 1 and not raw.dtype.is_complex
                   and raw.dtype != torch.bool)
    if not (real_tensor or (isinstance(raw, numbers.Real) and not isinstance(raw, bool))):
        raise MeasureError(f"measure '{spec.name}' returned {type(raw).__name__} ({raw!r:.60}) for {model_id}; it "
                           f"must return a real number (a float, or a one-element tensor). Fix {spec.function}.")
    try:
        value = float(raw)
    except OverflowError:       # an int beyond the float range, e.g. 10**400
        digits = len(str(abs(int(raw))))
        raise MeasureError(f"measure '{spec.name}' returned a number beyond the range of a float ({type(raw).__name__}, "
                           f"{digits} digits) for {model_id} with parameters {params}; no value was stored. Fix "
                           f"{spec.function}.") from None
    if not math.isfinite(value):
        raise MeasureError(f"measure '{spec.name}' returned {value} for {model_id} with parameters {params}; "
                           f"no value was stored. Check the parameters (is rho too large?) or {spec.function}.")
    return value


def infer_num_classes(model: nn.Module, batches: Sequence[Batch]) -> int:
    """The width of the model's output on the first batch."""
    with torch.no_grad():
        return int(model(batches[0][0][:1]).shape[-1])
