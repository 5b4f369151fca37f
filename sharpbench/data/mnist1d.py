"""MNIST-1D (Greydanus and Kobak, ICML 2024; the `mnist1d` package, Apache-2.0): ten 1-D digit templates padded,
dilated, scaled, translated, noised and sheared into signals of 40 samples, generated from a seed, so that a
population of thousands of models can be trained and tested on a CPU with test sets of any size and no download.

The examples come from the package's own per-example ``transform`` and ``get_templates``; the loop that calls
them follows its ``make_dataset`` (each class in turn, then one shuffle), with two differences, both needed here:
each set is generated from its own seed and size, and no set is standardized by its own statistics
(``make_dataset`` divides by the generated set's mean and standard deviation, which would undo part of a shift
of the noise or the scale and put train and test on different scales). Every set is standardized by the
training set's mean and standard deviation instead.

Generated sets are cached under ``$SHARPBENCH_HOME/data/mnist1d/`` as safetensors named by the digest of what
decides them (the generator's arguments, the size, the seed, the package's version), with their sha256 beside
them; a cached file whose bytes no longer match its sha256 is generated again.

An OOD set of kind ``generator`` is a fresh sample drawn with some of the generator's arguments changed (more
correlated noise, a larger shear, ...): a shift of the distribution that the generator names, with labels of its
own. Corruptions of the test set (the shifts of :mod:`sharpbench.data.shifts`) apply as to any signal.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sharpbench.cards.schema import Param, length, non_negative, positive
from sharpbench.paths import atomic_write, home_path

Tensor = torch.Tensor
LENGTH_FIELD = "final_seq_length"

# The generator's arguments a card may change, with the package's defaults (mnist1d.data.get_dataset_args).
GENERATOR_PARAMS: dict[str, Param] = {
    "template_len": Param(int, default=12, check=positive),
    "padding": Param(list, default=[36, 60], check=length(2, int, non_negative)),
    "scale_coeff": Param(float, default=0.4, check=non_negative),
    "max_translation": Param(int, default=48, check=positive),
    "corr_noise_scale": Param(float, default=0.25, check=non_negative),
    "iid_noise_scale": Param(float, default=0.02, check=non_negative),
    "shear_scale": Param(float, default=0.75, check=non_negative),
    LENGTH_FIELD: Param(int, default=40, check=positive),
}


def generator_args(overrides: dict[str, Any]) -> dict[str, Any]:
    """The generator's full arguments: the package's defaults, then ``overrides``."""
    args = {name: param.default for name, param in GENERATOR_PARAMS.items()}
    args.update(overrides)
    return args


def generate(args: dict[str, Any], size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``size`` raw (unstandardized) examples and labels, ``size // 10`` per class, as ``make_dataset`` draws them
    from numpy's global generator seeded ``seed`` (the package's per-example transform reads it)."""
    from mnist1d.data import get_templates
    from mnist1d.transform import transform
    from mnist1d.utils import ObjectView, set_seed

    if size % 10:
        raise ValueError(f"an MNIST-1D set holds the same number of examples of each of the 10 classes; {size} is "
                         f"not a multiple of 10")
    templates = get_templates()
    view = ObjectView(dict(args))
    state = np.random.get_state()
    set_seed(int(seed))
    try:
        xs, ys = [], []
        for label in templates["y"]:
            for _ in range(size // 10):
                x, _ = transform(templates["x"][label], templates["t"], view)
                xs.append(x)
                ys.append(label)
        order = np.random.permutation(len(ys))
    finally:
        np.random.set_state(state)
    return np.stack(xs)[order].astype(np.float64), np.asarray(ys, dtype=np.int64)[order]


def _version() -> str:
    return metadata.version("mnist1d")


def cache_folder() -> Path:
    return home_path() / "data" / "mnist1d"


def cached_set(args: dict[str, Any], size: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(raw inputs, labels, sha256 of the cached file) of a generated set, generated once and then read from the
    cache (a file that fails its sha256 is generated again)."""
    from safetensors.numpy import load, save

    key = json.dumps({"args": args, "size": int(size), "seed": int(seed), "mnist1d": _version()}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    path = cache_folder() / f"{digest}.safetensors"
    checksum = path.with_suffix(".sha256")
    if path.is_file() and checksum.is_file():
        blob = path.read_bytes()
        sha256 = hashlib.sha256(blob).hexdigest()
        if sha256 == checksum.read_text().strip():
            arrays = load(blob)
            return arrays["x"], arrays["y"], sha256
    x, y = generate(args, size, seed)
    blob = save({"x": x, "y": y}, metadata={"sharpbench": key})
    sha256 = hashlib.sha256(blob).hexdigest()
    atomic_write(path, blob)
    atomic_write(checksum, (sha256 + "\n").encode())
    return x, y, sha256


class Standardizer:
    """The training set's mean and standard deviation (over every example and position), applied to every set."""

    def __init__(self, train: np.ndarray) -> None:
        self.mean, self.std = float(train.mean()), float(train.std())

    def __call__(self, x: np.ndarray) -> Tensor:
        return torch.from_numpy(((x - self.mean) / self.std).astype(np.float32)).contiguous()


DATASET_PARAMS: dict[str, Param] = {
    "num_train": Param(int, check=positive, note="a multiple of 10"),
    "num_test": Param(int, check=positive, note="a multiple of 10"),
    "seed": Param(int, default=0, note="the training set's; the test set's is seed + 1"),
    **GENERATOR_PARAMS,
}
# An OOD set of kind `generator`: a fresh sample with some of the generator's arguments changed (None: as the
# card's dataset section has it).
OOD_PARAMS: dict[str, Param] = {
    **{name: Param(param.kind, default=None, check=param.check) for name, param in GENERATOR_PARAMS.items()},
    "num_examples": Param(int, default=None, check=positive, note="default: the test set's size"),
    "seed": Param(int, note="its own, unlike the training set's and the test set's"),
}


Request = tuple[dict[str, Any], int, int]   # (generator arguments, number of examples, seed) of one set


def _card_args(cfg: dict[str, Any]) -> dict[str, Any]:
    return generator_args({name: cfg[name] for name in GENERATOR_PARAMS if name in cfg})


def split_requests(cfg: dict[str, Any]) -> dict[str, Request]:
    """The training set (from ``seed``) and the test set (from ``seed + 1``) of a card's dataset section."""
    args, seed = _card_args(cfg), int(cfg["seed"])
    return {"train": (args, int(cfg["num_train"]), seed), "test": (args, int(cfg["num_test"]), seed + 1)}


def ood_request(cfg: dict[str, Any], params: dict[str, Any]) -> Request:
    """An OOD set of kind ``generator``: the card's generator arguments changed by ``params``, ``num_examples``
    (default: the test set's size) from its own seed."""
    changed = {name: value for name, value in params.items() if name in GENERATOR_PARAMS and value is not None}
    return (generator_args({**_card_args(cfg), **changed}), int(params.get("num_examples") or cfg["num_test"]),
            int(params["seed"]))


def _standardizer(cfg: dict[str, Any]) -> Standardizer:
    return Standardizer(cached_set(*split_requests(cfg)["train"])[0])


def load_mnist1d(cfg: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_train, y_train, x_test, y_test), both standardized by the training set's mean and standard deviation."""
    requests = split_requests(cfg)
    (x_train, y_train, _), (x_test, y_test, _) = cached_set(*requests["train"]), cached_set(*requests["test"])
    standardize = Standardizer(x_train)
    return standardize(x_train), torch.from_numpy(y_train), standardize(x_test), torch.from_numpy(y_test)


def generated_ood_set(cfg: dict[str, Any], params: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """An OOD set of kind ``generator`` (:func:`ood_request`), standardized as the training set is."""
    x, y, _ = cached_set(*ood_request(cfg, params))
    return _standardizer(cfg)(x), torch.from_numpy(y)


def data_files(cfg: dict[str, Any], ood: list[tuple[str, str, dict[str, Any]]]) -> dict[str, str]:
    """{set: sha256 of its cached file}: the generated data a manifest names (train, test, each generated OOD
    set)."""
    requests = {**split_requests(cfg),
                **{f"ood/{name}": ood_request(cfg, params) for name, kind, params in ood if kind == "generator"}}
    return {name: cached_set(*request)[2] for name, request in requests.items()}
