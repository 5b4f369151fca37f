"""The registries of datasets and of deterministic distribution shifts (OOD test sets) for collections.

Two small registries, extended by adding an entry, never by a special case elsewhere:
- ``DATASETS``: dataset name -> :class:`DatasetKind` (loader, the card fields it takes, input shape,
  number of classes). A dataset too large for memory (ImageNet, MNLI) has a ``stream`` loader instead, which
  returns a :class:`sharpbench.data.sets.DatasetSplits` of datasets read from disk, and declares the OOD kinds it
  accepts beside its loader (``ood_sets``: sets with labels of their own, such as ImageNet-R or HANS);
- ``SHIFTS``: shift kind -> :class:`ShiftKind` (a function ``(x, params, image_shape) -> x`` of an in-memory
  test split, the parameters it takes, and the datasets it applies to).

Inputs are float32 tensors of shape (N, *input_shape) flattened to (N, D) for vector datasets; labels are
int64 tensors of shape (N,).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import TensorDataset

from sharpbench.data import shifts
from sharpbench.data.digits import load_digits
from sharpbench.data.fashion_mnist import HUB_ID as FASHION_MNIST_HUB_ID, load_fashion_mnist
from sharpbench.data import cifar10, imagenet, mnist1d, mnli, synthetic_nli
from sharpbench.data.sparse_regression import load_sparse_regression
from sharpbench.cards.schema import Param, at_least, in_range, length, non_negative, one_of, positive
from sharpbench.data.locate import DataPaths
from sharpbench.data.sets import TRAIN_EVAL_SIZE, DatasetSplits, EvalSet

Tensor = torch.Tensor
Split = tuple[Tensor, Tensor, Tensor, Tensor]
OodRequest = tuple[str, str, dict[str, Any]]   # (the card's name for the set, its kind, its params)


@dataclass(frozen=True)
class DatasetKind:
    """One dataset: its loader ``(card's dataset section, data folders) -> (x_train, y_train, x_test, y_test)`` or,
    streamed, ``stream``; the card fields it takes; its shapes, classes and task."""

    loader: Callable[[dict[str, Any], DataPaths], Split] | None
    params: dict[str, Param]
    input_shape: tuple[int, ...]    # shape of one example as the model sees it (flat for an MLP)
    image_shape: tuple[int, ...]    # (channels, height, width) for spatial shifts
    num_classes: int                # 1 for a regression target
    description: str = ""
    task: str = "classification"    # or "regression": float targets, the loss is the error
    fields: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # fields that depend on the card
    # a streamed dataset: (card's dataset section, OOD sets asked for, data folders) -> DatasetSplits
    stream: Callable[[dict[str, Any], Sequence[OodRequest], DataPaths], DatasetSplits] | None = None
    ood_sets: dict[str, dict[str, Param]] = field(default_factory=dict)  # OOD set kind -> its card params
    # an in-memory dataset's OOD sets of its own, beside the shifts of its test split (MNIST-1D's generator with
    # other arguments): (card's dataset section, the set's params) -> (inputs, labels), the kind in ``ood_sets``
    own_ood: Callable[[dict[str, Any], dict[str, Any]], tuple[Tensor, Tensor]] | None = None
    # the sha256 of each data file a build generated, by set, for the manifest: (dataset section, OOD requests)
    data_files: Callable[[dict[str, Any], Sequence[OodRequest]], dict[str, str]] | None = None

    def architecture_fields(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """Architecture fields that follow from the dataset (a card never sets them to something else)."""
        derived = {"in_features": math.prod(self.input_shape), "num_classes": self.num_classes,
                   "image_shape": list(self.image_shape)}
        return {**derived, **(self.fields(cfg) if self.fields else {})}


@dataclass(frozen=True)
class ShiftKind:
    """One shift of a test set: ``apply(x, params, image_shape)``, or ``apply(x, params, image_shape, paths)`` for a
    shift that ``reads_files`` (e.g. CIFAR-10-C's images); the parameters it takes."""

    apply: Callable[..., Tensor]
    params: dict[str, Param] = field(default_factory=dict)
    description: str = ""
    datasets: tuple[str, ...] | None = None   # the datasets it applies to; None: any with an image_shape
    reads_files: bool = False


DATASETS: dict[str, DatasetKind] = {
    "digits": DatasetKind(
        loader=lambda cfg, paths: load_digits(cfg),
        params={
            "test_fraction": Param(float, check=in_range(0, 1, closed="neither")),
            "split_seed": Param(int),
        },
        input_shape=(64,),
        image_shape=(1, 8, 8),
        num_classes=10,
        description="scikit-learn load_digits: 1797 8x8 grey images, pixels scaled to [0, 1]",
    ),
}


DATASETS["fashion-mnist"] = DatasetKind(
    loader=load_fashion_mnist,
    params={
        "train_size": Param(int, default=60000, check=positive),
        "test_size": Param(int, default=10000, check=positive),
        "split_seed": Param(int, default=0),
        "hub_id": Param(str, default=FASHION_MNIST_HUB_ID),
    },
    input_shape=(1, 28, 28),
    image_shape=(1, 28, 28),
    num_classes=10,
    description="Fashion-MNIST 28x28 grey images (local IDX files, /usr/share/datasets, or the hub), "
                "optionally a seeded random subset",
)
DATASETS["sparse-regression"] = DatasetKind(
    loader=lambda cfg, paths: load_sparse_regression(cfg),
    params={
        "num_train": Param(int, check=positive),
        "num_test": Param(int, check=positive),
        "dim": Param(int, check=positive),
        "nonzero": Param(int, check=positive),
        "noise": Param(float, default=0.0, check=non_negative),
        "seed": Param(int, default=0),
    },
    input_shape=(0,),               # in_features comes from the card's dim
    image_shape=(),
    num_classes=1,
    description="y = <beta*, x>, x ~ N(0, I), beta* sparse: the study's toy regression",
    task="regression",
    fields=lambda cfg: {"in_features": int(cfg["dim"])},
)
DATASETS["cifar10"] = DatasetKind(
    loader=cifar10.load_cifar10,
    params={
        "train_size": Param(int, default=50000, check=positive),
        "test_size": Param(int, default=10000, check=positive, note="the first images"),
        "split_seed": Param(int, default=0),
        "hub_id": Param(str, default=cifar10.HUB_ID),
    },
    input_shape=(3, 32, 32),
    image_shape=(3, 32, 32),
    num_classes=10,
    description="CIFAR-10 (binary files in a local folder, or the hub); a random training subset, the first "
                "test images",
)
DATASETS["synthetic-nli"] = DatasetKind(
    loader=lambda cfg, paths: synthetic_nli.load_synthetic_nli(cfg),
    params={
        "num_train": Param(int, check=positive),
        "num_test": Param(int, check=positive),
        "swap_fraction": Param(float, default=0.05, check=in_range(0, 1)),
        "max_length": Param(int, default=16, check=at_least(16)),
        "seed": Param(int, default=0),
    },
    input_shape=(16,),
    image_shape=(),
    num_classes=2,
    description="synthetic entailment (premise, hypothesis) pairs rewarding lexical overlap; token ids",
    fields=lambda cfg: {"in_features": int(cfg["max_length"]), "vocab_size": synthetic_nli.VOCAB_SIZE,
                        "pad_token_id": synthetic_nli.PAD},
)
DATASETS["mnist1d"] = DatasetKind(
    loader=lambda cfg, paths: mnist1d.load_mnist1d(cfg),
    params=mnist1d.DATASET_PARAMS,
    input_shape=(40,),              # final_seq_length samples; in_features follows the card's value
    image_shape=(1, 1, 40),         # a signal is a 1 x length image to the shifts that move or mask samples
    num_classes=10,
    description="MNIST-1D (the mnist1d package): 1-D digit signals generated from a seed, any number, cached; OOD "
                "sets generated with other generator arguments, or corruptions of the test set",
    fields=lambda cfg: {"in_features": int(cfg["final_seq_length"]),
                        "image_shape": [1, 1, int(cfg["final_seq_length"])]},
    ood_sets={"generator": mnist1d.OOD_PARAMS},
    own_ood=mnist1d.generated_ood_set,
    data_files=mnist1d.data_files,
)
_MEAN_STD = Param(list, check=length(3, float), note="one per RGB channel")
DATASETS["imagenet"] = DatasetKind(
    loader=None,
    params={
        "folder": Param(str, default=imagenet.NAME),
        "image_size": Param(int, default=224, check=positive),
        "crop_pct": Param(float, default=0.875, check=in_range(0, 1, closed="right")),
        "interpolation": Param(str, default="bicubic", check=one_of("bilinear", "bicubic", "nearest")),
        "mean": _MEAN_STD,
        "std": _MEAN_STD,
        "train_eval_size": TRAIN_EVAL_SIZE,
    },
    input_shape=(3, 224, 224),
    image_shape=(3, 224, 224),
    num_classes=imagenet.NUM_CLASSES,
    description="ImageNet-1k from image folders (streamed), one evaluation transform; OOD folders with their own "
                "classes (ImageNet-V2, -R, -Sketch, -A)",
    fields=lambda cfg: {"in_features": 3 * int(cfg["image_size"]) ** 2,
                        "image_shape": [3, int(cfg["image_size"]), int(cfg["image_size"])]},
    stream=imagenet.load_imagenet,
    ood_sets=imagenet.OOD_SETS,
)

DATASETS["mnli"] = DatasetKind(
    loader=None,
    params=mnli.PARAMS,
    input_shape=(2, 128),           # [input_ids, token_type_ids] of max_length tokens (default 128)
    image_shape=(),
    num_classes=3,
    description="MultiNLI sentence pairs (official jsonl files, or the hub's GLUE copy) as [input_ids, "
                "token_type_ids], tokenized when read; OOD: HANS",
    fields=mnli.architecture_fields,
    stream=mnli.load_mnli,
    ood_sets=mnli.OOD_SETS,
)


def load_dataset(cfg: dict[str, Any], paths: DataPaths | None = None) -> Split:
    """(x_train, y_train, x_test, y_test) for a validated dataset section of a card ({name, ...}) of a dataset
    held in memory; its files are looked up in ``paths`` (default: $SHARPBENCH_DATA), then the system's."""
    return DATASETS[cfg["name"]].loader(cfg, paths or DataPaths.from_env())


def load_splits(cfg: dict[str, Any], shifts: Sequence[OodRequest], paths: DataPaths | None = None) -> DatasetSplits:
    """The data of a validated dataset section of a card ({name, ...}) with the OOD sets asked for: an in-memory
    dataset's test split transformed by each shift (labels shared), or a streamed dataset's own sets."""
    kind, paths = DATASETS[cfg["name"]], paths or DataPaths.from_env()
    if kind.stream is not None:
        return kind.stream(cfg, shifts, paths)
    x_train, y_train, x_test, y_test = load_dataset(cfg, paths)
    image_shape = tuple(kind.architecture_fields(cfg)["image_shape"])
    ood = {name: EvalSet(TensorDataset(*kind.own_ood(cfg, params)) if kind.own_ood and shift in kind.ood_sets
                         else TensorDataset(apply_shift(shift, x_test, params, image_shape, paths), y_test))
           for name, shift, params in shifts}
    return DatasetSplits(TensorDataset(x_train, y_train), EvalSet(TensorDataset(x_test, y_test)), ood)


# ------------------------------------------------------------------------------------------------ shifts


SHIFTS: dict[str, ShiftKind] = {
    "gaussian_noise": ShiftKind(
        shifts.gaussian_noise,
        {"std": Param(float, check=positive), "seed": Param(int),
         "clip": Param(bool, default=True)},
        "additive Gaussian noise with a fixed seed, clipped to [0, 1]",
        datasets=(*(name for name, kind in DATASETS.items() if kind.image_shape), "sparse-regression"),  # elementwise
    ),
    "translate": ShiftKind(
        shifts.translate,
        {"dx": Param(float, default=0.0), "dy": Param(float, default=0.0)},
        "shift by (dx, dy) pixels with zero fill (fractional: bilinear)",
    ),
    "contrast": ShiftKind(
        shifts.contrast,
        {"factor": Param(float, check=in_range(0, 1))},
        "per-image contrast scaled by factor around the image mean",
    ),
    "pixel_dropout": ShiftKind(
        shifts.pixel_dropout,
        {"rate": Param(float, check=in_range(0, 1, closed="neither")), "seed": Param(int)},
        "a fixed random fraction of pixels set to 0",
    ),
    "blur": ShiftKind(
        shifts.blur,
        {"sigma": Param(float, check=positive),
         "radius": Param(int, default=1, check=positive)},
        "Gaussian blur, (2 radius + 1)^2 kernel (radius 1: 3x3)",
    ),
    "shot_noise": ShiftKind(
        shifts.shot_noise,
        {"photons": Param(float, check=positive), "seed": Param(int)},
        "Poisson noise: Poisson(x * photons) / photons (CIFAR-10-C shot noise)",
    ),
    "impulse_noise": ShiftKind(
        shifts.impulse_noise,
        {"amount": Param(float, check=in_range(0, 1, closed="neither")), "seed": Param(int)},
        "salt-and-pepper noise on a fraction amount of the pixels",
    ),
    "brightness": ShiftKind(
        shifts.brightness,
        {"delta": Param(float)},
        "add delta to every pixel, clipped to [0, 1]",
    ),
    "pixelate": ShiftKind(
        shifts.pixelate,
        {"size": Param(int, check=positive)},
        "area-downsample to size x size, upsample with nearest neighbours",
    ),
    "fog": ShiftKind(
        shifts.fog,
        {"strength": Param(float, check=positive), "seed": Param(int)},
        "smooth seeded noise added, rescaled to keep the brightest pixel",
    ),
    "cifar10_c": ShiftKind(
        cifar10.cifar10_c,
        {"corruption": Param(str, expected="a CIFAR-10-C file name without .npy, e.g. gaussian_noise"),
         "severity": Param(int, check=in_range(1, 5))},
        "cifar10 only: the test images as CIFAR-10-C corrupts them (files from --data-dir)",
        datasets=("cifar10",),
        reads_files=True,
    ),
    "nli_overlap_swap": ShiftKind(
        synthetic_nli.overlap_swap,
        {},
        "synthetic-nli only: low-overlap hypotheses become subject/object swaps (HANS-like)",
        datasets=("synthetic-nli",),
    ),
}


def apply_shift(kind: str, x: Tensor, params: dict[str, Any], image_shape: tuple[int, ...] | None = None,
                paths: DataPaths | None = None) -> Tensor:
    """The shifted copy of x (never modified in place); deterministic for the same arguments.

    ``image_shape`` (channels, height, width) is needed by spatial shifts; without it a square single-channel
    image is assumed from the flat dimension."""
    if kind not in SHIFTS:
        raise KeyError(f"unknown shift kind {kind!r}; known: {sorted(SHIFTS)}")
    if image_shape is None:
        side = int(round(math.sqrt(x[0].numel())))
        image_shape = (1, side, side)
    full = {name: p.default for name, p in SHIFTS[kind].params.items() if p.default is not ...}
    full.update(params)
    if SHIFTS[kind].reads_files:
        return SHIFTS[kind].apply(x.clone(), full, tuple(image_shape), paths or DataPaths.from_env())
    return SHIFTS[kind].apply(x.clone(), full, tuple(image_shape))
