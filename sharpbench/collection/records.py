"""One model of a collection as its manifest lists it, and the fields of a manifest entry."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# the fields of a kept model's manifest entry, in order: the aggregates are the means of its outcomes, and an
# imported model keeps the numbers its table reported under "reported"
AGGREGATE_KEYS = ("train_error", "train_loss", "test_error", "test_loss", "ood_error", "ood_loss")
MODEL_KEYS = ("id", "hparams", "seed", "file", "sha256", "init_file", "init_sha256", "outcomes_file",
              "outcomes_sha256", *AGGREGATE_KEYS, "reported")


@dataclass(frozen=True)
class ModelRecord:
    """One kept (converged) model of a built collection, as listed in manifest.json."""

    id: str
    hparams: dict[str, float | int | str]
    file: str            # path relative to the collection root
    sha256: str
    init_file: str
    init_sha256: str
    train_error: float
    train_loss: float
    test_error: float
    test_loss: float
    ood_error: dict[str, float]
    ood_loss: dict[str, float]
    seed: int = 0
    outcomes_file: str = ""      # "" for a collection built before outcomes existed
    outcomes_sha256: str = ""

    def __hash__(self) -> int:  # the dict fields are not hashable; id and checkpoint hash identify a record
        return hash((self.id, self.sha256))

    @property
    def gen_gap(self) -> float:
        """Generalization gap: test error - train error."""
        return self.test_error - self.train_error

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "hparams": dict(self.hparams), "seed": self.seed,
            "file": self.file, "sha256": self.sha256, "init_file": self.init_file, "init_sha256": self.init_sha256,
            "outcomes_file": self.outcomes_file, "outcomes_sha256": self.outcomes_sha256,
            "train_error": self.train_error, "train_loss": self.train_loss,
            "test_error": self.test_error, "test_loss": self.test_loss,
            "ood_error": dict(self.ood_error), "ood_loss": dict(self.ood_loss),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModelRecord":
        return cls(
            id=str(data["id"]), hparams=dict(data["hparams"]), seed=int(data.get("seed", 0)),
            file=str(data["file"]), sha256=str(data["sha256"]),
            init_file=str(data["init_file"]), init_sha256=str(data["init_sha256"]),
            outcomes_file=str(data.get("outcomes_file", "")), outcomes_sha256=str(data.get("outcomes_sha256", "")),
            train_error=float(data["train_error"]), train_loss=_float_or_nan(data["train_loss"]),
            test_error=float(data["test_error"]), test_loss=_float_or_nan(data["test_loss"]),
            ood_error={k: float(v) for k, v in data["ood_error"].items()},
            ood_loss={k: _float_or_nan(v) for k, v in data["ood_loss"].items()},
        )


def _float_or_nan(value: Any) -> float:
    """A manifest number; null (a loss an imported collection did not report) reads as NaN."""
    return math.nan if value is None else float(value)
