"""The integrity guard: a measure runs in eval mode, must return one finite number per model, and must leave
every weight bit for bit as it found it; any breach is a MeasureError naming the measure, the model and the fix."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from sharpbench.errors import MeasureError
from sharpbench.measure import Batch, MeasureContext
from sharpbench.cards.measure_card import MeasureSpec


def _state_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def _first_changed(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> str | None:
    """The name of the first tensor whose bits differ from the snapshot (NaN-safe), or None."""
    current = model.state_dict()
    if current.keys() != snapshot.keys():
        return f"the set of tensors ({sorted(set(current) ^ set(snapshot))})"
    for name, before in snapshot.items():
        after = current[name].detach()
        if after.shape != before.shape or after.dtype != before.dtype:
            return name
        if not torch.equal(after.contiguous().reshape(-1).view(torch.uint8), before.reshape(-1).view(torch.uint8)):
            return name
    return None


def run_guarded(spec: MeasureSpec, model: nn.Module, context: MeasureContext, params: dict[str, Any],
                model_id: str = "the model") -> float:
    """Run a measure in eval mode and check that it returned a finite number and left the weights unchanged."""
    return run_guarded_many(spec, [model], context, params, [model_id], many=False)[0]


def run_guarded_many(spec: MeasureSpec, models: list[nn.Module], context: MeasureContext, params: dict[str, Any],
                     model_ids: list[str], many: bool = True) -> list[float]:
    """`run_guarded` for same-architecture models through the measure's many-model form (one call for all)."""
    snapshots = []
    for model in models:
        model.eval()
        snapshots.append(_state_snapshot(model))
    names = ", ".join(model_ids)
    try:
        raw = spec.call_many(models, context, params) if many else [spec.call(models[0], context, params)]
    except MeasureError:
        raise
    except (Exception, SystemExit) as error:      # sys.exit() in a measure must not end the run without a report
        raise MeasureError(f"measure '{spec.name}' failed on {names}: {type(error).__name__}: {error} "
                           f"(implementation {spec.function}, card {spec.path})") from error
    for model, snapshot, model_id in zip(models, snapshots, model_ids):
        changed = _first_changed(model, snapshot)
        if changed is not None:
            raise MeasureError(
                f"measure '{spec.name}' changed the weights of {model_id} (first changed tensor: {changed}); a "
                f"measure must only read the model: evaluate it functionally (torch.func.functional_call) or "
                f"on a copy (copy.deepcopy(model)). Fix {spec.function}; no value was stored for this model."
            )
    if many and (not isinstance(raw, (list, tuple)) or len(raw) != len(models)):
        raise MeasureError(f"measure '{spec.name}': its many-model form returned {raw!r} for {len(models)} models; "
                           f"it must return one value per model. Fix {spec.function}.many.")
    return [_finite(spec, value, model_id, params) for value, model_id in zip(raw, model_ids)]


def _finite(spec: MeasureSpec, raw: Any, model_id: str, params: dict[str, Any]) -> float:
    """The measure's value as a float: a real number or a one-element tensor, never a str or a bool."""
    try:
        if isinstance(raw, (str, bytes, bool)) or (isinstance(raw, torch.Tensor) and raw.dtype == torch.bool):
            raise TypeError(type(raw).__name__)
        value = float(raw)
    except (TypeError, ValueError):
        raise MeasureError(f"measure '{spec.name}' returned {type(raw).__name__} for {model_id}; it must return "
                           f"a float (or a one-element tensor). Fix {spec.function}.") from None
    if not math.isfinite(value):
        raise MeasureError(f"measure '{spec.name}' returned {value} for {model_id} with parameters {params}; "
                           f"no value was stored. Check the parameters (is rho too large?) or {spec.function}.")
    return value


def infer_num_classes(model: nn.Module, batches: Sequence[Batch]) -> int:
    """The width of the model's output on the first batch."""
    with torch.no_grad():
        return int(model(batches[0][0][:1]).shape[-1])
