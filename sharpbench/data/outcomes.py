"""Per-example outcomes: each kept model's error and loss on every example of every evaluation set.

Scores need them to resample test examples (intervals) and to measure a target's noise ceiling; the
manifest's aggregate errors and losses are their means. One safetensors file per model holds float32
tensors ``"{set}/error"`` and ``"{set}/loss"`` for the sets ``train``, ``test`` and ``ood/<shift>``: the error
is 0/1 for classification and the squared error for a regression loss (whose mean is the MSE), the loss is
the example's loss.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

from sharpbench.errors import CollectionError, Hint

KINDS = ("error", "loss")
# A recomputed 0/1 error rate is a count over n, the same double as before: it must match exactly (up to the
# last bit). A loss (or a regression error) is a float32 sum whose order may differ between code versions and
# devices: it must match to float32 precision, far below what changes a model's rank.
_EXACT, _ROUNDING = dict(rel_tol=1e-12, abs_tol=1e-12), dict(rel_tol=1e-4, abs_tol=1e-6)


@dataclass(frozen=True)
class Outcomes:
    """One model's per-example ``error`` and ``loss`` (1-D float32 tensors, one entry per example) on one set."""

    error: torch.Tensor
    loss: torch.Tensor

    def __post_init__(self) -> None:
        if self.error.ndim != 1 or self.error.shape != self.loss.shape:
            raise ValueError(f"outcomes must be two 1-D tensors of one length (got error {tuple(self.error.shape)}, "
                             f"loss {tuple(self.loss.shape)})")

    def __len__(self) -> int:
        return int(self.error.shape[0])

    def means(self) -> tuple[float, float]:
        """(error, loss) averaged over the examples, in float64 over the stored float32 values."""
        if len(self) == 0:
            raise ValueError("cannot average the outcomes of an empty set")
        return float(self.error.double().mean()), float(self.loss.double().mean())

    @classmethod
    def concat(cls, parts: list["Outcomes"]) -> "Outcomes":
        """The outcomes of consecutive batches as those of the whole set (float32, on the CPU)."""
        if not parts:
            raise ValueError("cannot score a model on an empty set")
        return cls(torch.cat([p.error for p in parts]).float().cpu(), torch.cat([p.loss for p in parts]).float().cpu())


def set_names(shifts: Iterable[str]) -> list[str]:
    """The evaluation sets of a collection with these OOD shifts, in file order."""
    return ["train", "test", *(f"ood/{name}" for name in shifts)]


def aggregates(outcomes: dict[str, Outcomes]) -> dict[str, Any]:
    """The manifest's aggregate fields (train/test error and loss, OOD error and loss per shift): the means."""
    means = {name: value.means() for name, value in outcomes.items()}
    ood = {name[len("ood/"):]: value for name, value in means.items() if name.startswith("ood/")}
    return {"train_error": means["train"][0], "train_loss": means["train"][1],
            "test_error": means["test"][0], "test_loss": means["test"][1],
            "ood_error": {name: value[0] for name, value in ood.items()},
            "ood_loss": {name: value[1] for name, value in ood.items()}}


def mismatches(recorded: dict[str, Any], outcomes: dict[str, Outcomes], exact_error: bool) -> list[str]:
    """The aggregate fields of ``recorded`` (a manifest entry) that the means of ``outcomes`` do not reproduce,
    as 'field: recorded -> recomputed'. ``exact_error``: errors are 0/1 rates, which must match exactly.
    A loss the entry does not give (null, e.g. not reported by an import) is not compared."""
    found = aggregates(outcomes)
    pairs: list[tuple[str, Any, float, dict[str, float]]] = []
    for key in ("train_error", "train_loss", "test_error", "test_loss"):
        tolerance = _EXACT if exact_error and key.endswith("error") else _ROUNDING
        pairs.append((key, recorded.get(key), found[key], tolerance))
    for key in ("ood_error", "ood_loss"):
        for shift, value in found[key].items():
            pairs.append((f"{key}.{shift}", (recorded.get(key) or {}).get(shift), value,
                          _EXACT if exact_error and key == "ood_error" else _ROUNDING))
    return [f"{name}: {old} -> {new}" for name, old, new, tolerance in pairs
            if not (old is None and name.endswith("loss"))
            and (old is None or not math.isclose(float(old), new, **tolerance))]


def encode(outcomes: dict[str, Outcomes], metadata: dict[str, Any]) -> bytes:
    """The safetensors bytes of one model's outcomes; byte-stable for the same values and metadata."""
    from safetensors.torch import save

    tensors = {f"{name}/{kind}": getattr(value, kind).detach().float().cpu().contiguous()
               for name, value in outcomes.items() for kind in KINDS}
    # one metadata key: safetensors writes several in a random order, and the sha256 must be stable
    return save(tensors, {"sharpbench": json.dumps(metadata, sort_keys=True)})


def decode(raw: bytes, sizes: dict[str, int], where: str, fix: Sequence[Hint] = ()) -> dict[str, Outcomes]:
    """One model's outcomes from safetensors bytes, checked to hold exactly the sets of ``sizes`` at those sizes."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(raw)
    except (SafetensorError, ValueError) as error:
        raise CollectionError(f"outcome file {where} is not a valid safetensors file ({error}).", hints=fix) from None
    expected = {f"{name}/{kind}": (size,) for name, size in sizes.items() for kind in KINDS}
    found = {key: tuple(value.shape) for key, value in tensors.items()}
    if found != expected:
        raise CollectionError(f"outcome file {where} holds tensors {found}, not the sets the manifest sizes "
                              f"{expected}.", hints=fix)
    return {name: Outcomes(tensors[f"{name}/error"], tensors[f"{name}/loss"]) for name in sizes}
