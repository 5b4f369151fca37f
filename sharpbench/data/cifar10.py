"""CIFAR-10 (Krizhevsky 2009) and CIFAR-10-C (Hendrycks & Dietterich 2019), for the study's full-scale cards.

CIFAR-10 is read from its binary version (``cifar-10-batches-bin``: records of 1 label byte and 3072 pixel
bytes, nothing to unpickle) in a local folder, else from the hub (``uoft-cs/cifar10``). CIFAR-10-C is
read from its ``.npy`` files (``np.load`` without pickles): each holds the 10,000 test images corrupted at
severities 1 to 5, in the test set's order. So that those rows line up, a test subset is always the
*first* ``test_size`` test images (the training subset is a seeded random one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from sharpbench.errors import SharpbenchError
from sharpbench.data.locate import DataNotFoundError, DataPaths, reading

NAME = "cifar10"
HUB_ID = "uoft-cs/cifar10"
CORRUPTIONS_NAME = "CIFAR-10-C"
CORRUPTIONS_URL = "https://zenodo.org/record/2535967"
_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_TEST = ("test_batch.bin",)


def _read_batches(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    parts = []
    for path in paths:
        with reading(path, "a CIFAR-10 binary batch"):
            parts.append(np.frombuffer(path.read_bytes(), dtype=np.uint8))
    raw = np.concatenate(parts)
    if raw.size % 3073:
        raise SharpbenchError(f"{paths[0].parent} holds CIFAR-10 binary files of a wrong size (records are 3073 bytes)")
    records = raw.reshape(-1, 3073)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


def _local_arrays(paths: DataPaths) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    for name in (NAME, "cifar-10-batches-bin", f"{NAME}/cifar-10-batches-bin"):
        folder = paths.find_dir(name, _TRAIN + _TEST)
        if folder is not None:
            return {"train": _read_batches([folder / f for f in _TRAIN]),
                    "test": _read_batches([folder / f for f in _TEST])}
    return None


def _hub_arrays(hub_id: str, paths: DataPaths) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import datasets

    try:
        loaded = datasets.load_dataset(hub_id)
    except Exception as error:  # offline, unknown id, no network: all mean "not here", with the reason kept
        raise DataNotFoundError(paths.not_found_message(NAME, list(_TRAIN + _TEST), (), hub_id,
                                                  f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")) from None
    out = {}
    for split in ("train", "test"):
        images = np.stack([np.asarray(image.convert("RGB"), dtype=np.uint8) for image in loaded[split]["img"]])
        out[split] = (images.transpose(0, 3, 1, 2), np.asarray(loaded[split]["label"], dtype=np.int64))
    return out


def load_cifar10(cfg: dict[str, Any], paths: DataPaths) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): images (N, 3, 32, 32) in [0, 1]; a seeded random training subset of
    ``train_size`` and the first ``test_size`` test images."""
    arrays = _local_arrays(paths) or _hub_arrays(str(cfg["hub_id"]), paths)
    train_images, train_labels = arrays["train"]
    if int(cfg["train_size"]) < len(train_labels):
        index = np.sort(np.random.default_rng(int(cfg["split_seed"])).permutation(len(train_labels))[:int(cfg["train_size"])])
        train_images, train_labels = train_images[index], train_labels[index]
    test_images, test_labels = (a[:int(cfg["test_size"])] for a in arrays["test"])

    def tensor(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images.astype(np.float32) / 255.0).contiguous()

    return tensor(train_images), torch.from_numpy(train_labels), tensor(test_images), torch.from_numpy(test_labels)


def cifar10_c(x: torch.Tensor, params: dict[str, Any], image_shape: tuple[int, ...], paths: DataPaths) -> torch.Tensor:
    """The first len(x) test images as corrupted by CIFAR-10-C's ``corruption`` at ``severity`` (1-5): rows
    [(severity - 1) * k, (severity - 1) * k + len(x)) of CORRUPTION.npy, k = its rows / 5 (10,000)."""
    file = f"{params['corruption']}.npy"
    folder = paths.find_dir(CORRUPTIONS_NAME, [file])
    if folder is None:
        raise DataNotFoundError(paths.not_found_message(CORRUPTIONS_NAME, [file]) + f"\n  (CIFAR-10-C: {CORRUPTIONS_URL})")
    with reading(folder / file, "a CIFAR-10-C array (.npy)"):
        array = np.load(folder / file, mmap_mode="r", allow_pickle=False)
    per_severity = array.shape[0] // 5
    if x.shape[0] > per_severity:
        raise SharpbenchError(f"{folder / file} has {per_severity} images per severity, fewer than the {x.shape[0]} "
                              f"test images")
    start = (int(params["severity"]) - 1) * per_severity
    rows = np.asarray(array[start:start + x.shape[0]], dtype=np.float32) / 255.0      # (N, 32, 32, 3)
    return torch.from_numpy(rows.transpose(0, 3, 1, 2).copy()).reshape(x.shape).to(x.dtype)
