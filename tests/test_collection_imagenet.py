"""The full-scale ImageNet cards, end to end on a tiny local stand-in, with the hub offline: image folders written
by the test (ImageNet train/val, ImageNet-V2's class-index folders, a 2-class ImageNet-R); `imagenet-vit`'s AugReg
checkpoints as .npz files in Google's layout, written here from tiny timm ViTs under the card's own file names
and read by timm's loader; and timm models by name, their tiny weights placed in a Hugging Face cache, which
timm's real hub loader reads."""

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

from sharpbench.cards.include import load_card
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


# two ImageNet-1k classifiers of timm by name: one trained from scratch, one fine-tuned from ImageNet-21k
HUB_CHECKPOINTS = [
    {"id": "vit-small-patch16-augreg-in1k", "hparams": {
        "model": "vit_small_patch16_224.augreg_in1k", "pretraining": "in1k", "recipe": "augreg", "width": 384,
        "params_millions": 22.1}},
    {"id": "vit-base-patch16-orig-in21k-ft-in1k", "hparams": {
        "model": "vit_base_patch16_224.orig_in21k_ft_in1k", "pretraining": "in21k", "recipe": "orig", "width": 768,
        "params_millions": 86.6}},
]


def _tiny_card(cards: Path, hub: bool = True, name: str = "imagenet-vit") -> dict:
    """The registered card at a tiny size: its first and last checkpoints (AugReg files), or with ``hub`` two
    timm models by name."""
    card = load_card(REPO / "registry" / "collections" / f"{name}.yaml").fields    # includes resolved
    card["name"] = f"tiny-{name}"
    card["checkpoints"] = HUB_CHECKPOINTS if hub else [card["checkpoints"][0], card["checkpoints"][-1]]
    card["architecture"] = {"kind": "timm", "pretrained": True} if hub else dict(card["architecture"])
    card["architecture"]["kwargs"] = TINY
    card["dataset"].update({"image_size": 32, "train_eval_size": 6})
    card["sharpness_data"] = {"n": 8, "m": 4, "seed": 0}
    (cards / "collections").mkdir(parents=True, exist_ok=True)
    (cards / "collections" / f"{card['name']}.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return card


def test_timm_models_by_name_are_fetched_from_the_hub_cache_and_scored_on_ood_sets_of_their_own_classes(
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


def _big_vision_npz(net: torch.nn.Module, path: Path, **extra: np.ndarray) -> None:
    """A timm ViT's weights in the layout of Google's original ViT and AugReg .npz files (flax names, kernels as
    HWIO / (in, out), attention kernels split into heads): the inverse of what timm's reader does."""
    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    heads = net.blocks[0].attn.num_heads
    w = {"embedding/kernel": state["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
         "embedding/bias": state["patch_embed.proj.bias"], "cls": state["cls_token"],
         "Transformer/posembed_input/pos_embedding": state["pos_embed"],
         "Transformer/encoder_norm/scale": state["norm.weight"], "Transformer/encoder_norm/bias": state["norm.bias"],
         "head/kernel": state["head.weight"].T, "head/bias": state["head.bias"]}
    for i in range(len(net.blocks)):
        b, out = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        width = state[b + "norm1.weight"].shape[0]
        w[out + "LayerNorm_0/scale"], w[out + "LayerNorm_0/bias"] = state[b + "norm1.weight"], state[b + "norm1.bias"]
        w[out + "LayerNorm_2/scale"], w[out + "LayerNorm_2/bias"] = state[b + "norm2.weight"], state[b + "norm2.bias"]
        for k, name in enumerate(("query", "key", "value")):
            rows = slice(k * width, (k + 1) * width)
            w[out + f"MultiHeadDotProductAttention_1/{name}/kernel"] = \
                state[b + "attn.qkv.weight"][rows].T.reshape(width, heads, -1)
            w[out + f"MultiHeadDotProductAttention_1/{name}/bias"] = state[b + "attn.qkv.bias"][rows].reshape(heads, -1)
        w[out + "MultiHeadDotProductAttention_1/out/kernel"] = \
            state[b + "attn.proj.weight"].reshape(width, heads, -1).transpose(1, 2, 0)
        w[out + "MultiHeadDotProductAttention_1/out/bias"] = state[b + "attn.proj.bias"]
        for r in range(2):
            w[out + f"MlpBlock_3/Dense_{r}/kernel"] = state[b + f"mlp.fc{r + 1}.weight"].T
            w[out + f"MlpBlock_3/Dense_{r}/bias"] = state[b + f"mlp.fc{r + 1}.bias"]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **w, **extra)


@pytest.mark.parametrize("name", ["imagenet-vit", "imagenet-vit-in21k"])
def test_augreg_npz_checkpoints_are_read_by_their_released_names_into_the_same_function(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture):
    """The card's first and last AugReg files, written from tiny timm ViTs: the collection's checkpoints hold the
    ViTs' weights bit for bit and its test errors are theirs; a file with a head of another size, or with a
    representation layer timm would drop, or none at all, stops the build with the reason."""
    data, cards = tmp_path / "data", tmp_path / "cards"
    _stand_in_data(data)
    card = _tiny_card(cards, hub=False, name=name)
    assert all(c["hparams"]["pretrained_file"].startswith("augreg/B_16-i") for c in card["checkpoints"])
    common = ["--include-path", str(cards), "--no-progress", "--data-dir", str(data)]
    assert main(["collection", "build", card["name"], *common]) != 0
    err = capsys.readouterr().err
    assert card["checkpoints"][0]["hparams"]["pretrained_file"] in err and "not found" in err

    def tiny_vit(seed: int, classes: int = 1000) -> torch.nn.Module:
        torch.manual_seed(seed)
        return timm.create_model(card["architecture"]["model"], num_classes=classes, **TINY).eval()

    files = [data / c["hparams"]["pretrained_file"] for c in card["checkpoints"]]
    _big_vision_npz(tiny_vit(0, classes=10), files[0])                          # a head for another dataset
    _big_vision_npz(tiny_vit(1), files[1])
    assert main(["collection", "build", card["name"], *common]) != 0
    assert "head for 10 classes" in capsys.readouterr().err
    _big_vision_npz(tiny_vit(0), files[0], **{"pre_logits/kernel": np.zeros((32, 32), np.float32)})
    assert main(["collection", "build", card["name"], *common]) != 0
    assert "pre_logits" in capsys.readouterr().err
    nets = [tiny_vit(0), tiny_vit(1)]
    _big_vision_npz(nets[0], files[0])
    assert main(["collection", "build", card["name"], *common]) == 0
    root = Path(os.environ["SHARPBENCH_HOME"]) / "collections" / card["name"]
    manifest = json.loads((root / "manifest.json").read_text())
    transform = timm.data.create_transform(input_size=(3, 32, 32), interpolation="bicubic", mean=(0.5,) * 3,
                                           std=(0.5,) * 3, crop_pct=0.9)
    for entry, net in zip(manifest["models"], nets):
        saved = load_file(str(root / entry["file"]))
        assert all(torch.equal(saved[f"1.{k}"], v) for k, v in net.state_dict().items())
        with torch.no_grad():
            wrong = sum(int((net(torch.stack([transform(Image.open(f).convert("RGB")) for f in
                                              sorted((data / "imagenet" / "val" / wnid).glob("*.png"))])).argmax(1)
                             != wordnet_index()[wnid]).sum()) for wnid in WNIDS)
        assert entry["test_error"] == pytest.approx(wrong / 9)
    capsys.readouterr()
    assert main(["evaluate", "--measure", "sharpness-avg-l2-adaptive", "--collection", card["name"],
                 "--set", "samples=2", "--json", str(tmp_path / "report.json"), *common]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    varied = {"augmentation", "weight_decay", "dropout", "stochastic_depth"}    # not the file name
    assert set(report["tau_vs_hparams"]) == varied | ({"finetune_learning_rate"} if "in21k" in name else set())


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
