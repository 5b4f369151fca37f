"""ImageNet-1k and its OOD test sets, read from image folders (too large to hold in memory: streamed).

Folders, found under ``--data-dir`` / ``$SHARPBENCH_DATA``:
- ``imagenet/train`` and ``imagenet/val``: one sub-folder per class, named by WordNet id (n01440764, ...), as
  torchvision's ImageFolder expects (the validation images sorted into class folders);
- OOD sets, kind ``imagenet_folder``: a folder of WordNet-id sub-folders (ImageNet-Sketch, ImageNet-R,
  ImageNet-A); kind ``imagenet_v2``: ImageNetV2's release format, one sub-folder per class *index* (0 ... 999).

Labels are ImageNet-1k's class indices in the standard order (timm's ``ImageNetInfo``: sorted WordNet ids). A
set with ``mask: true`` is scored on the classes it holds only (the other logits masked), as Hendrycks et al.
score ImageNet-R and -A, whose 200 classes are a subset by design. Every image goes
through one evaluation transform, given by the card (resize, center crop, normalization: timm's
``create_transform``), the same for every model of a collection.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

from sharpbench.cards.schema import Param
from sharpbench.data.locate import DataNotFoundError, DataPaths
from sharpbench.data.sets import EvalSet, DatasetSplits, groups_for

NAME = "imagenet"
NUM_CLASSES = 1000


@lru_cache(maxsize=1)
def wordnet_index() -> dict[str, int]:
    """The 1000 ImageNet-1k WordNet ids -> their class index."""
    from timm.data import ImageNetInfo

    return {wnid: i for i, wnid in enumerate(ImageNetInfo().label_names())}


def eval_transform(cfg: dict[str, Any]) -> Callable[[Any], Any]:
    """The card's evaluation transform: resize to image_size / crop_pct, center crop, to tensor, normalize."""
    from timm.data import create_transform

    size = int(cfg["image_size"])
    return create_transform(input_size=(3, size, size), interpolation=cfg["interpolation"], mean=tuple(cfg["mean"]),
                            std=tuple(cfg["std"]), crop_pct=float(cfg["crop_pct"]), is_training=False)


def _folder(name: str, what: str, paths: DataPaths) -> Path:
    """DIR/NAME of the first user data folder that has it; else an error saying where to put it."""
    folder = paths.find_folder(name)
    if folder is None:
        searched = ", ".join(str(root / name) for root in paths.folders) or "no data folder given"
        raise DataNotFoundError(
            f"image folder '{name}' not found (searched: {searched}). Put its images in DIR/{name}/, one sub-folder "
            f"per class ({what}), in a data folder DIR. ImageNet and its OOD sets are "
            f"not downloaded by sharpbench: ImageNet needs an account at image-net.org")
    return folder


def _image_folder(root: Path, class_of_folder: Callable[[str], int | None]) -> tuple[Any, list[int]]:
    """torchvision's ImageFolder over ``root`` with labels = ImageNet indices; the sorted indices it holds.

    A sub-folder that is not a class (class_of_folder gives None) is an error naming it."""
    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(str(root))
    index = []
    for folder in dataset.classes:
        label = class_of_folder(folder)
        if label is None:
            raise DataNotFoundError(f"{root / folder} is not an ImageNet class folder (expected a WordNet id such as "
                                    f"n01440764, or a class index 0-999 for ImageNetV2)")
        index.append(label)
    dataset.target_transform = index.__getitem__     # ImageFolder's folder position -> ImageNet index
    return dataset, sorted(index)


def _by_wordnet_id(folder: str) -> int | None:
    return wordnet_index().get(folder)


def _by_index(folder: str) -> int | None:
    return int(folder) if folder.isdigit() and int(folder) < NUM_CLASSES else None


class _Relabelled:
    """A dataset whose labels (ImageNet indices) are replaced by their position among ``classes``."""

    def __init__(self, dataset: Any, classes: Sequence[int]) -> None:
        self.dataset, self.position = dataset, {c: k for k, c in enumerate(classes)}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        x, y = self.dataset[i]
        return x, self.position[y]


def _eval_set(root: Path, class_of_folder: Callable[[str], int | None], transform: Callable[[Any], Any],
              mask: bool = False) -> EvalSet:
    """Labels as they are (all 1000 logits compete), or with ``mask``: labels by their position among the classes
    the folder holds, the other logits masked."""
    dataset, classes = _image_folder(root, class_of_folder)
    dataset.transform = transform
    if not mask:
        return EvalSet(dataset)
    return EvalSet(_Relabelled(dataset, classes), groups_for(classes))


# the OOD set kinds a card may name (its fields, and how a folder's class folders map to ImageNet classes)
OOD_SETS: dict[str, dict[str, Param]] = {
    "imagenet_folder": {"folder": Param(str, note="a folder name under the data dir"), "mask": Param(bool, default=False)},
    "imagenet_v2": {"folder": Param(str, default="imagenetv2-matched-frequency-format-val")},
}
_CLASS_FOLDERS = {"imagenet_folder": (_by_wordnet_id, "WordNet ids"), "imagenet_v2": (_by_index, "class indices 0-999")}


def load_imagenet(cfg: dict[str, Any], ood: Sequence[tuple[str, str, dict[str, Any]]], paths: DataPaths) -> DatasetSplits:
    """ImageNet train and validation folders and the OOD folders the card names, all through one transform."""
    transform = eval_transform(cfg)
    train_root = _folder(f"{cfg['folder']}/train", "WordNet ids", paths)
    val_root = _folder(f"{cfg['folder']}/val", "WordNet ids", paths)
    train, _ = _image_folder(train_root, _by_wordnet_id)
    train.transform = transform
    sets = {}
    for name, kind, params in ood:
        class_of_folder, what = _CLASS_FOLDERS[kind]
        sets[name] = _eval_set(_folder(params["folder"], what, paths), class_of_folder, transform, params.get("mask", False))
    return DatasetSplits(train=train, test=_eval_set(val_root, _by_wordnet_id, transform), ood=sets)
