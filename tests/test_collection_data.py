"""Dataset sources (--data-dir, system folder, hub stand-in, the offline error) and the image corruptions."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import sharpbench.data.fashion_mnist as fashion
from sharpbench.cli.main import render_error
from sharpbench.data.registry import apply_shift, load_dataset
from sharpbench.data.locate import DataNotFoundError

REPO = Path(__file__).resolve().parents[1]
FASHION = {"name": "fashion-mnist", "train_size": 60000, "test_size": 10000, "split_seed": 0,
           "hub_id": fashion.HUB_ID}


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _fake_fashion(folder: Path, n_train: int = 30, n_test: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    """IDX files of random images in the Fashion-MNIST file layout (gzipped, as Debian ships them)."""
    rng = np.random.default_rng(seed)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(_idx(array)))
    return arrays


@pytest.fixture
def no_system_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hide /usr/share/datasets/fashion-mnist and $SHARPBENCH_DATA, so only what a test provides is found."""
    monkeypatch.setattr(fashion, "SYSTEM_DIRS", (str(tmp_path / "no-system-copy"),))
    monkeypatch.delenv("SHARPBENCH_DATA", raising=False)


def test_fashion_mnist_from_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_system_copy: None):
    arrays = _fake_fashion(tmp_path / "data" / "fashion-mnist")
    monkeypatch.setenv("SHARPBENCH_DATA", str(tmp_path / "data"))
    x_train, y_train, x_test, y_test = load_dataset(FASHION)
    assert x_train.shape == (30, 1, 28, 28) and x_test.shape == (12, 1, 28, 28)
    assert torch.equal(x_train[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"] / 255.0).float())
    assert torch.equal(y_test, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())

    small = load_dataset({**FASHION, "train_size": 10, "test_size": 5})
    again = load_dataset({**FASHION, "train_size": 10, "test_size": 5})
    other = load_dataset({**FASHION, "train_size": 10, "test_size": 5, "split_seed": 1})
    assert small[0].shape == (10, 1, 28, 28) and small[2].shape == (5, 1, 28, 28)
    assert all(torch.equal(a, b) for a, b in zip(small, again))
    assert not torch.equal(small[1], other[1]) or not torch.equal(small[0], other[0])
    rows = {tuple(r.flatten().tolist()) for r in x_train}
    assert all(tuple(r.flatten().tolist()) in rows for r in small[0])     # a subset of the training split


@pytest.mark.parametrize("damage,reason", [
    (lambda raw: raw[: len(raw) // 2], "EOFError: Compressed file ended before the end-of-stream marker"),
    (lambda raw: b"not gzip at all" + raw, "BadGzipFile: Not a gzipped file"),
    (lambda raw: raw[:10] + bytes(len(raw) - 10), "error: Error -3 while decompressing data"),
])
def test_a_damaged_gz_file_under_the_data_dir_is_one_message_naming_it(tmp_path: Path, capsys, no_system_copy: None,
                                                                       damage, reason):
    from sharpbench.cli.main import main

    _fake_fashion(tmp_path / "data" / "fashion-mnist")
    broken = tmp_path / "data" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    broken.write_bytes(damage(broken.read_bytes()))
    (tmp_path / "cards" / "collections").mkdir(parents=True)
    card = (REPO / "registry" / "collections" / "fashion-mnist-cnn.yaml").read_text()
    (tmp_path / "cards" / "collections" / "tiny-fashion.yaml").write_text(
        card.replace("name: fashion-mnist-cnn", "name: tiny-fashion").replace("train_size: 1000", "train_size: 30"))
    code = main(["collection", "build", "tiny-fashion", "--include-path", str(tmp_path / "cards"), "--no-progress",
                 "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"{broken} cannot be read as an IDX file (gzip) (" in err and reason in err
    assert "replace it with a good copy" in err and "--data-dir DIR" in err


def test_fashion_mnist_from_system_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    arrays = _fake_fashion(tmp_path / "usr-share", seed=3)
    monkeypatch.setattr(fashion, "SYSTEM_DIRS", (str(tmp_path / "usr-share"),))
    monkeypatch.setenv("SHARPBENCH_DATA", str(tmp_path / "empty"))
    y_train = load_dataset(FASHION)[1]
    assert torch.equal(y_train, torch.from_numpy(arrays["train-labels-idx1-ubyte"]).long())


def test_fashion_mnist_from_a_hub_format_stand_in(tmp_path: Path, no_system_copy: None):
    """The `datasets` path, offline: a local folder in the hub's format (parquet, columns image and label)."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(5)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    expected = {}
    for split, n in (("train", 8), ("test", 4)):
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        labels = rng.integers(0, 10, n)
        expected[split] = (images, labels)
        table = datasets.Dataset.from_dict({"image": [Image.fromarray(a) for a in images], "label": labels.tolist()},
                                           features=features)
        (tmp_path / "hub" / "data").mkdir(parents=True, exist_ok=True)
        table.to_parquet(str(tmp_path / "hub" / "data" / f"{split}-00000-of-00001.parquet"))
    x_train, y_train, x_test, y_test = load_dataset({**FASHION, "hub_id": str(tmp_path / "hub")})
    assert torch.equal(x_train[:, 0], torch.from_numpy(expected["train"][0] / 255.0).float())
    assert torch.equal(y_test, torch.from_numpy(expected["test"][1]).long())


def test_offline_without_data_names_every_way_to_provide_it(no_system_copy: None):
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset(FASHION)
    message = str(caught.value)
    for hint in ("SHARPBENCH_DATA", "no-system-copy", "apt-get install dataset-fashion-mnist",
                 fashion.HUB_ID, "HF_DATASETS_OFFLINE", "train-images-idx3-ubyte.gz"):
        assert hint in message
    assert "--data-dir" not in message and "--data-dir DIR" in render_error(caught.value)   # the CLI names its flag


def test_truncated_idx_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_system_copy: None):
    _fake_fashion(tmp_path / "fashion-mnist")
    path = tmp_path / "fashion-mnist" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-3]))
    monkeypatch.setenv("SHARPBENCH_DATA", str(tmp_path))
    with pytest.raises(Exception, match="truncated"):
        load_dataset(FASHION)


def test_sparse_regression_has_a_sparse_exact_ground_truth():
    cfg = {"name": "sparse-regression", "num_train": 30, "num_test": 200, "dim": 50, "nonzero": 5, "noise": 0.0,
           "seed": 4}
    x_train, y_train, x_test, y_test = load_dataset(cfg)
    assert x_train.shape == (30, 50) and y_train.shape == (30,) and y_train.dtype == torch.float32
    x, y = torch.cat([x_train, x_test]).double(), torch.cat([y_train, y_test]).double()
    beta = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1)        # n > dim: beta* is identified
    support = beta.abs() > 1e-4
    assert int(support.sum()) == 5
    assert torch.allclose(beta[support].abs(), torch.full((5,), 5 ** -0.5, dtype=torch.float64), atol=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(load_dataset(cfg), load_dataset(cfg)))


# ----------------------------------------------------------------------------------------------- corruptions

IMAGES = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_brightness_and_pixelate_closed_forms():
    assert torch.equal(apply_shift("brightness", IMAGES, {"delta": 0.3}, (1, 28, 28)), (IMAGES + 0.3).clamp(0, 1))
    assert torch.allclose(apply_shift("pixelate", IMAGES, {"size": 28}, (1, 28, 28)), IMAGES)
    flat = apply_shift("pixelate", IMAGES, {"size": 1}, (1, 28, 28))
    assert torch.allclose(flat, IMAGES.mean(dim=(1, 2, 3), keepdim=True).expand_as(IMAGES), atol=1e-6)
    blocks = apply_shift("pixelate", IMAGES, {"size": 14}, (1, 28, 28))
    assert torch.allclose(blocks[..., ::2, ::2], torch.nn.functional.avg_pool2d(IMAGES, 2), atol=1e-6)


def test_noises_have_their_rates_and_means():
    impulse = apply_shift("impulse_noise", IMAGES, {"amount": 0.2, "seed": 0}, (1, 28, 28))
    changed = (impulse != IMAGES).float().mean()
    assert 0.18 < float(changed) < 0.22
    assert set(impulse[impulse != IMAGES].unique().tolist()) <= {0.0, 1.0}
    shot = apply_shift("shot_noise", IMAGES, {"photons": 50.0, "seed": 0}, (1, 28, 28))
    assert abs(float(shot.mean() - IMAGES.mean())) < 0.01              # E[Poisson(lx)/l] = x (clip aside)
    assert float((shot * 50 - (shot * 50).round()).abs().max()) < 1e-4  # multiples of 1/photons


def test_blur_radius_one_is_the_3x3_blur_and_preserves_constants():
    sigma = 0.8
    taps = torch.tensor([np.exp(-1 / (2 * sigma**2)), 1.0, np.exp(-1 / (2 * sigma**2))], dtype=torch.float32)
    kernel = torch.outer(taps, taps)
    expected = torch.nn.functional.conv2d(IMAGES, (kernel / kernel.sum())[None, None], padding=1)
    assert torch.allclose(apply_shift("blur", IMAGES, {"sigma": sigma}, (1, 28, 28)), expected, atol=1e-6)
    constant = torch.full((2, 1, 28, 28), 0.7)
    wide = apply_shift("blur", constant, {"sigma": 2.0, "radius": 3}, (1, 28, 28))
    assert torch.allclose(wide[..., 3:-3, 3:-3], constant[..., 3:-3, 3:-3], atol=1e-6)


def test_fog_brightens_smoothly_and_stays_in_range():
    dark = torch.zeros(4, 1, 28, 28)
    dark[..., 10:18, 10:18] = 1.0
    fogged = apply_shift("fog", dark, {"strength": 1.0, "seed": 0}, (1, 28, 28))
    assert float(fogged.min()) >= 0 and float(fogged.max()) <= 1
    assert float(fogged[..., :5, :5].mean()) > 0.05                     # the background is no longer black
    assert float((fogged[..., :, 1:] - fogged[..., :, :-1]).abs()[..., :5, :5].max()) < 0.2   # smooth there
    assert not torch.equal(fogged, apply_shift("fog", dark, {"strength": 1.0, "seed": 1}, (1, 28, 28)))


def test_cli_build_finds_fashion_mnist_through_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        no_system_copy: None, capsys: pytest.CaptureFixture):
    from sharpbench.cli.main import main

    monkeypatch.setenv("SHARPBENCH_DATA", str(tmp_path / "nothing"))  # undone after the test, as --data-dir's is
    _fake_fashion(tmp_path / "data" / "fashion-mnist", n_train=40, n_test=20)
    card = (REPO / "registry" / "collections" / "fashion-mnist-cnn.yaml").read_text()
    card = card.replace("name: fashion-mnist-cnn", "name: tiny-fashion").replace("train_size: 1000", "train_size: 30")
    card = card.replace("learning_rate: [0.02, 0.03, 0.04, 0.05]", "learning_rate: [0.05]")
    card = card.replace("batch_size: [32, 64]", "batch_size: [16]").replace("width: [8, 16]", "width: [2]")
    card = card.replace("weight_decay: [0.0, 0.0005]", "weight_decay: [0.0]").replace("sam_rho: [0.0, 0.05]",
                                                                                       "sam_rho: [0.05]")
    card = card.replace("epochs: 100 ", "epochs: 1 ").replace("max_train_error: 0.01", "max_train_error: 1.0")
    assert "tiny-fashion" in card and "width: [2]" in card and "epochs: 1 " in card
    (tmp_path / "cards" / "collections").mkdir(parents=True)
    (tmp_path / "cards" / "collections" / "tiny-fashion.yaml").write_text(card)
    args = ["collection", "build", "tiny-fashion", "--include-path", str(tmp_path / "cards"), "--no-progress"]
    assert main(args) == 2
    assert "--data-dir" in capsys.readouterr().err                     # offline and nowhere: says what to provide
    assert main(args + ["--data-dir", str(tmp_path / "data")]) == 0
    manifest = json.loads((Path(os.environ["SHARPBENCH_HOME"]) / "collections" / "tiny-fashion" /
                           "manifest.json").read_text())
    assert manifest["dataset"]["num_train"] == 30 and manifest["dataset"]["num_test"] == 20
    assert set(manifest["models"][0]["ood_error"]) == {"gaussian-noise", "shot-noise", "impulse-noise", "blur",
                                                       "contrast", "brightness", "pixelate", "fog"}
