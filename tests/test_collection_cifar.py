"""The full-scale CIFAR-10 cards, end to end on a tiny local stand-in (binary CIFAR-10 files and CIFAR-10-C .npy
files written by the test), with the hub offline: the cards' code runs wherever the data exist."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sharpbench.cli.main import main
from sharpbench.data.registry import apply_shift, load_dataset
from sharpbench.data.locate import DataNotFoundError

REPO = Path(__file__).resolve().parents[1]


def _stand_in(root: Path, n_train: int = 24, n_test: int = 8, per_severity: int = 10) -> dict[str, np.ndarray]:
    """DATA/cifar10/*.bin (records: label byte + 3072 pixel bytes) and DATA/CIFAR-10-C/*.npy for the card's shifts."""
    rng = np.random.default_rng(0)
    (root / "cifar10").mkdir(parents=True)
    train = [rng.integers(0, 256, (n_train // 5, 3073)).astype(np.uint8) for _ in range(5)]
    test = rng.integers(0, 256, (n_test, 3073)).astype(np.uint8)
    for records in train + [test]:
        records[:, 0] %= 10
    for i, records in enumerate(train, start=1):
        (root / "cifar10" / f"data_batch_{i}.bin").write_bytes(records.tobytes())
    (root / "cifar10" / "test_batch.bin").write_bytes(test.tobytes())
    card = yaml.safe_load((REPO / "registry" / "collections" / "cifar10-resnet18.yaml").read_text())
    (root / "CIFAR-10-C").mkdir()
    corrupted = {}
    for shift in card["ood_shifts"]:
        name = shift["params"]["corruption"]
        corrupted[name] = rng.integers(0, 256, (5 * per_severity, 32, 32, 3)).astype(np.uint8)
        np.save(root / "CIFAR-10-C" / f"{name}.npy", corrupted[name])
    return {"test": test, **corrupted}


def test_cifar10_reads_binary_files_and_cifar10c_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    arrays = _stand_in(tmp_path / "data")
    monkeypatch.setenv("SHARPBENCH_DATA", str(tmp_path / "data"))
    cfg = {"name": "cifar10", "train_size": 50000, "test_size": 5, "split_seed": 0, "hub_id": "uoft-cs/cifar10"}
    x_train, y_train, x_test, y_test = load_dataset(cfg)
    assert x_train.shape == (20, 3, 32, 32) and x_test.shape == (5, 3, 32, 32)        # the first 5 test images
    assert torch.equal(x_test, torch.from_numpy(arrays["test"][:5, 1:].reshape(5, 3, 32, 32) / 255.0).float())
    assert torch.equal(y_test, torch.from_numpy(arrays["test"][:5, 0].astype(np.int64)))
    frost = apply_shift("cifar10_c", x_test, {"corruption": "frost", "severity": 5}, (3, 32, 32))
    expected = arrays["frost"][40:45].transpose(0, 3, 1, 2) / 255.0                     # severity 5: the last block
    assert torch.equal(frost, torch.from_numpy(expected).float())
    with pytest.raises(DataNotFoundError, match="zenodo"):
        apply_shift("cifar10_c", x_test, {"corruption": "no_such_corruption", "severity": 1}, (3, 32, 32))


@pytest.mark.parametrize("card_name", ["cifar10-resnet18", "cifar10-vit"])
def test_full_scale_cifar_card_builds_on_a_stand_in(card_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture):
    _stand_in(tmp_path / "data")
    monkeypatch.setenv("SHARPBENCH_DATA", str(tmp_path / "nothing"))   # --data-dir's export is undone after the test
    card = yaml.safe_load((REPO / "registry" / "collections" / f"{card_name}.yaml").read_text())
    card["name"] = "tiny-" + card_name
    card["grid"] = {key: values[-1:] for key, values in card["grid"].items()}          # one model, the last point
    card["training"].update({"epochs": 1})
    card["convergence"] = {"max_train_error": 1.0}
    card["sharpness_data"] = {"n": 16, "m": 8, "seed": 0}
    # the card's own architecture at a tiny width: the same code as at full size
    assert card["architecture"]["kind"] == {"cifar10-resnet18": "preact_resnet", "cifar10-vit": "simple_vit"}[card_name]
    card["architecture"].update({"width": 8} if card_name == "cifar10-resnet18" else
                                {"dim": 32, "depth": 1, "heads": 2, "mlp_dim": 64, "dim_head": 16})
    (tmp_path / "cards" / "collections").mkdir(parents=True)
    (tmp_path / "cards" / "collections" / f"{card['name']}.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    assert main(["collection", "build", card["name"], "--include-path", str(tmp_path / "cards"), "--no-progress",
                 "--data-dir", str(tmp_path / "data")]) == 0
    manifest = json.loads((Path(os.environ["SHARPBENCH_HOME"]) / "collections" / card["name"] /
                           "manifest.json").read_text())
    assert len(manifest["models"]) == 1 and len(manifest["models"][0]["ood_error"]) == 15
    assert main(["evaluate", "--measure", "sharpness-worst-linf-adaptive", "--collection", card["name"],
                 "--include-path", str(tmp_path / "cards"), "--set", "steps=2", "--no-progress",
                 "--data-dir", str(tmp_path / "data")]) == 0
    capsys.readouterr()
