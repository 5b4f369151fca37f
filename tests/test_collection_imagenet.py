"""The full-scale `imagenet-vit` card, end to end on a tiny local stand-in, with the hub offline: image folders
written by the test (ImageNet train/val, ImageNet-V2's class-index folders, a 2-class ImageNet-R) and tiny
timm weights placed in a Hugging Face cache under the card's own model names, which timm's real hub loader
reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import timm
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file

from sharpbench.cli.main import main
from sharpbench.collection.sources import PretrainedFetch
from sharpbench.collection.collection import open_collection
from sharpbench.collection.spec import load_collection_spec
from sharpbench.data.imagenet import wordnet_index
from sharpbench.collection.pull import pull_collection
from legacy import strip_outcomes

REPO = Path(__file__).resolve().parents[1]
TINY = {"img_size": 32, "embed_dim": 32, "depth": 1, "num_heads": 2}
WNIDS = ["n01440764", "n01443537", "n01484850"]          # ImageNet classes 0, 1 and 2


def _images(folder: Path, count: int, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def _stand_in_data(root: Path) -> None:
    rng = np.random.default_rng(0)
    for wnid in WNIDS:
        _images(root / "imagenet" / "train" / wnid, 4, rng)
        _images(root / "imagenet" / "val" / wnid, 3, rng)
        _images(root / "sketch" / wnid, 2, rng)
    for index in range(3):
        _images(root / "imagenetv2-matched-frequency-format-val" / str(index), 2, rng)
    for wnid in (WNIDS[0], WNIDS[2]):                       # ImageNet-R/A hold a subset of the classes
        _images(root / "imagenet-r" / wnid, 3, rng)
        _images(root / "imagenet-a" / wnid, 2, rng)


def _stand_in_hub(cache: Path, name: str, seed: int) -> dict[str, torch.Tensor]:
    """A tiny model's weights where huggingface_hub keeps a download of timm/NAME (refs/main -> snapshot)."""
    torch.manual_seed(seed)
    state = timm.create_model(name, pretrained=False, num_classes=1000, **TINY).state_dict()
    repo = cache / f"models--timm--{name}"
    commit = f"{seed:040d}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(repo / "snapshots" / commit / "model.safetensors"))
    return state


def _tiny_card(cards: Path) -> dict:
    card = yaml.safe_load((REPO / "registry" / "collections" / "imagenet-vit.yaml").read_text())
    card["name"] = "tiny-imagenet-vit"
    card["checkpoints"] = [card["checkpoints"][0], card["checkpoints"][-1]]   # one from scratch, one fine-tuned
    card["architecture"]["kwargs"] = TINY
    card["dataset"].update({"image_size": 32, "train_eval_size": 6})
    card["sharpness_data"] = {"n": 8, "m": 4, "seed": 0}
    (cards / "collections").mkdir(parents=True)
    (cards / "collections" / "tiny-imagenet-vit.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return card


def test_imagenet_card_fetches_by_name_and_scores_ood_sets_on_their_own_classes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    data, cards, cache = tmp_path / "data", tmp_path / "cards", tmp_path / "hf"
    _stand_in_data(data)
    card = _tiny_card(cards)
    names = [entry["hparams"]["model"] for entry in card["checkpoints"]]
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    common = ["--include-path", str(cards), "--no-progress", "--data-dir", str(data)]

    # nothing in the cache and the hub offline: a clear error, nothing written as a finished model
    assert main(["collection", "build", card["name"], *common]) != 0
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    hub = {name: _stand_in_hub(cache, name, seed) for seed, name in enumerate(names)}
    assert main(["collection", "build", card["name"], "--workers", "2", *common]) == 0   # 2 data-loading processes
    root = Path(os.environ["SHARPBENCH_HOME"]) / "collections" / card["name"]
    manifest = json.loads((root / "manifest.json").read_text())
    # an interrupted build (one record and the manifest lost) fetches only the model it lacks
    kept = root / "records" / f"{card['checkpoints'][0]['id']}.json"
    stamp = kept.stat().st_mtime_ns
    (root / "records" / f"{card['checkpoints'][1]['id']}.json").unlink()
    (root / "manifest.json").unlink()
    assert main(["collection", "build", card["name"], *common]) == 0
    rebuilt = json.loads((root / "manifest.json").read_text())
    assert kept.stat().st_mtime_ns == stamp and rebuilt["models"] == manifest["models"]   # the same bits and errors
    assert [m["id"] for m in manifest["models"]] == [c["id"] for c in card["checkpoints"]]
    assert manifest["dataset"]["num_train"] == 12 and manifest["dataset"]["num_test"] == 9
    # outcomes on the seeded train-evaluation subset, the test split and each OOD set at its own size
    built = open_collection(load_collection_spec(cards / "collections" / "tiny-imagenet-vit.yaml"))
    assert manifest["set_sizes"] == built.set_sizes() == {
        "train": 6, "test": 9, "ood/imagenet-v2": 6, "ood/imagenet-r": 6, "ood/imagenet-sketch": 6, "ood/imagenet-a": 4}
    sets = built.outcome_sets()
    assert [float(sets["ood/imagenet-r"]["error"][row].mean(dtype=np.float64)) for row in range(2)] == \
           [entry["ood_error"]["imagenet-r"] for entry in manifest["models"]]
    # built before outcomes: `collection build` scores the stored checkpoints (nothing fetched) and adds them
    strip_outcomes(built)
    with monkeypatch.context() as patch:
        patch.setattr(PretrainedFetch, "_fetch", lambda *args: pytest.fail("adding outcomes must not fetch"))
        assert main(["collection", "build", card["name"], *common]) == 0
    assert json.loads((root / "manifest.json").read_text()) == rebuilt

    transform = timm.data.create_transform(input_size=(3, 32, 32), interpolation="bicubic", mean=(0.5,) * 3,
                                           std=(0.5,) * 3, crop_pct=0.9)
    for entry, name in zip(manifest["models"], names):
        saved = load_file(str(root / entry["file"]))
        assert all(torch.equal(saved[f"1.{k}"], v) for k, v in hub[name].items())   # the hub's weights, untouched
        assert entry["init_file"] == ""                                           # not known for these models
        net = timm.create_model(name, pretrained=False, num_classes=1000, **TINY).eval()
        net.load_state_dict(hub[name])

        def logits(folder: Path) -> torch.Tensor:
            files = sorted(folder.glob("*.png"))
            with torch.no_grad():
                return net(torch.stack([transform(Image.open(f).convert("RGB")) for f in files]))

        # ImageNet-R: only classes 0 and 2 exist, so the prediction is the larger of those two logits
        wrong = sum(int((logits(data / "imagenet-r" / wnid)[:, [0, 2]].argmax(1) != k).sum())
                    for k, wnid in enumerate((WNIDS[0], WNIDS[2])))
        assert entry["ood_error"]["imagenet-r"] == pytest.approx(wrong / 6)
        # ImageNet-V2's folder "2" holds class 2; all 1000 logits compete
        wrong = sum(int((logits(data / "imagenetv2-matched-frequency-format-val" / str(k)).argmax(1) != k).sum())
                    for k in range(3))
        assert entry["ood_error"]["imagenet-v2"] == pytest.approx(wrong / 6)
        wrong = sum(int((logits(data / "imagenet" / "val" / wnid).argmax(1) != wordnet_index()[wnid]).sum())
                    for wnid in WNIDS)
        assert entry["test_error"] == pytest.approx(wrong / 9)

    # a published copy pulls without initial weights to fetch
    copy = open_collection(load_collection_spec(cards / "collections" / "tiny-imagenet-vit.yaml"), tmp_path / "copy")
    assert pull_collection(copy, str(root)) == 4                  # two checkpoints and their outcomes
    assert [m.sha256 for m in copy.models] == [m["sha256"] for m in manifest["models"]]

    capsys.readouterr()
    assert main(["evaluate", "--measure", "sharpness-worst-linf-adaptive", "--collection", card["name"],
                 "--set", "steps=2", "--json", str(tmp_path / "report.json"), *common]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["models"]) == {c["id"] for c in card["checkpoints"]}
    assert all(entry["value"] >= 0 for entry in report["models"].values())
    assert set(report["tau_vs_hparams"]) == {"pretraining", "recipe", "width", "params_millions"}   # not `model`
    assert main(["evaluate", "--measure", "distance-from-init", "--collection", card["name"], *common]) != 0
    assert "initialization" in capsys.readouterr().err


def test_imagenet_folders_missing_name_the_folder_to_provide(tmp_path: Path, capsys: pytest.CaptureFixture):
    card = _tiny_card(tmp_path / "cards")
    (tmp_path / "data").mkdir()
    assert main(["collection", "build", card["name"], "--include-path", str(tmp_path / "cards"), "--no-progress",
                 "--data-dir", str(tmp_path / "data")]) != 0
    err = capsys.readouterr().err
    assert "imagenet/train" in err and "--data-dir" in err


def test_clip_card_imports_model_soups_checkpoints_and_scores_them_like_clip(
        tmp_path: Path, capsys: pytest.CaptureFixture):
    """clip-imagenet-finetuned, cut to two checkpoints of a tiny CLIP: model-soups files in the data dir, scored with
    CLIP's preprocessing; the errors match OpenAI CLIP's forward written out by hand in test_clip."""
    from test_clip import EMBED, IMAGE, PATCH, WIDTH, DEPTH, HEADS, openai_clip_state, reference_logits

    data, cards = tmp_path / "data", tmp_path / "cards"
    _stand_in_data(data)
    card = yaml.safe_load((REPO / "registry" / "collections" / "clip-imagenet-finetuned.yaml").read_text())
    card["name"] = "tiny-clip"
    card["checkpoints"] = card["checkpoints"][:2]
    card["architecture"].update({"embed_dim": EMBED, "kwargs": {"img_size": IMAGE, "patch_size": PATCH,
                                                                "embed_dim": WIDTH, "depth": DEPTH, "num_heads": HEADS}})
    card["dataset"].update({"image_size": IMAGE, "train_eval_size": 6})
    card["sharpness_data"] = {"n": 8, "m": 4, "seed": 0}
    (cards / "collections").mkdir(parents=True)
    (cards / "collections" / "tiny-clip.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    states = {}
    for seed, entry in enumerate(card["checkpoints"]):
        states[entry["id"]] = openai_clip_state(seed, classes=1000)
        (data / "model-soups").mkdir(exist_ok=True)
        torch.save(states[entry["id"]], data / entry["hparams"]["pretrained"])
    common = ["--include-path", str(cards), "--no-progress", "--data-dir", str(data)]
    assert main(["collection", "build", card["name"], *common]) == 0
    manifest = json.loads((Path(os.environ["SHARPBENCH_HOME"]) / "collections" / card["name"] /
                           "manifest.json").read_text())
    assert [m["id"] for m in manifest["models"]] == ["model-00", "model-01"]
    mean, std = tuple(card["dataset"]["mean"]), tuple(card["dataset"]["std"])
    transform = timm.data.create_transform(input_size=(3, IMAGE, IMAGE), interpolation="bicubic", mean=mean,
                                           std=std, crop_pct=1.0)

    def images(folder: Path) -> torch.Tensor:
        return torch.stack([transform(Image.open(f).convert("RGB")) for f in sorted(folder.glob("*.png"))])

    for entry in manifest["models"]:
        state = states[entry["id"]]
        wrong = sum(int((reference_logits(state, images(data / "imagenet" / "val" / w)).argmax(1) != k).sum())
                    for k, w in enumerate(WNIDS))
        assert entry["test_error"] == pytest.approx(wrong / 9)
        wrong = sum(int((reference_logits(state, images(data / "imagenet-a" / w))[:, [0, 2]].argmax(1) != k).sum())
                    for k, w in enumerate((WNIDS[0], WNIDS[2])))
        assert entry["ood_error"]["imagenet-a"] == pytest.approx(wrong / 4)
    capsys.readouterr()
    assert main(["evaluate", "--measure", "sharpness-avg-l2-adaptive", "--collection", card["name"],
                 "--set", "samples=2", *common]) == 0
