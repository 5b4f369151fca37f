"""Fashion-MNIST (Xiao et al. 2017): 28x28 grey images of 10 clothing classes, 60k train / 10k test.

Read from the original IDX files (gzipped or not) in a local or system folder, else from the Hugging Face
hub with ``datasets``; then optionally subsampled (a seeded, stratified-by-chance random subset) so that
small collections train in seconds.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sharpbench.errors import SharpbenchError
from sharpbench.data.locate import DataNotFoundError, DataPaths, reading

NAME = "fashion-mnist"
SYSTEM_DIRS = ("/usr/share/datasets/fashion-mnist",)
DEBIAN_PACKAGE = "dataset-fashion-mnist"
HUB_ID = "zalando-datasets/fashion_mnist"
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _read_idx(path: Path) -> np.ndarray:
    """An IDX array (the MNIST file format: magic, dims as big-endian int32, then uint8 data)."""
    with reading(path, "an IDX file" + (" (gzip)" if path.suffix == ".gz" else "")):
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise SharpbenchError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise SharpbenchError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {data.size}")
    return data.reshape(shape)


def _local_arrays(paths: DataPaths) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    for suffix in (".gz", ""):
        required = [f + suffix for pair in _FILES.values() for f in pair]
        folder = paths.find_dir(NAME, required, SYSTEM_DIRS)
        if folder is not None:
            return {split: (_read_idx(folder / (images + suffix)), _read_idx(folder / (labels + suffix)))
                    for split, (images, labels) in _FILES.items()}
    return None


def _hub_arrays(hub_id: str, paths: DataPaths) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The train and test splits from the hub (or a local copy in its format: columns image and label)."""
    import datasets

    required = [f + ".gz" for pair in _FILES.values() for f in pair]
    try:
        loaded = datasets.load_dataset(hub_id)
    except Exception as error:  # offline, unknown id, no network: all mean "not here", with the reason kept
        raise DataNotFoundError(paths.not_found_message(NAME, required, SYSTEM_DIRS, hub_id, f"{type(error).__name__}: "
                                                  f"{str(error).splitlines()[0] if str(error) else ''}",
                                                  DEBIAN_PACKAGE)) from None
    out = {}
    for split in ("train", "test"):
        if split not in loaded:
            raise DataNotFoundError(f"the hub dataset '{hub_id}' has no '{split}' split (it has {list(loaded)})")
        images = np.stack([np.asarray(image, dtype=np.uint8) for image in loaded[split]["image"]])
        out[split] = (images.reshape(-1, 28, 28), np.asarray(loaded[split]["label"], dtype=np.int64))
    return out


def _subsample(images: np.ndarray, labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if size >= len(labels):
        return images, labels
    index = np.sort(np.random.default_rng(seed).permutation(len(labels))[:size])
    return images[index], labels[index]


def load_fashion_mnist(cfg: dict[str, Any], paths: DataPaths) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): images (N, 1, 28, 28) in [0, 1], labels int64; ``train_size`` and
    ``test_size`` keep a random subset drawn with ``split_seed`` (all when they are at least the split)."""
    arrays = _local_arrays(paths) or _hub_arrays(str(cfg["hub_id"]), paths)
    out = []
    for split, size, seed in (("train", cfg["train_size"], cfg["split_seed"]),
                              ("test", cfg["test_size"], cfg["split_seed"] + 1)):
        images, labels = _subsample(*arrays[split], int(size), int(seed))
        out += [torch.from_numpy(images.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28).contiguous(),
                torch.from_numpy(labels.astype(np.int64)).contiguous()]
    return out[0], out[1], out[2], out[3]
