"""clip_classifier: OpenAI CLIP / model-soups checkpoints load into CLIP's image tower + model-soups' head and
give the logits of CLIP's own definition, written out here independently of timm."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional as F

from sharpbench.cli.main import render_error
from sharpbench.errors import CollectionError
from sharpbench.models.registry import ARCHITECTURES, build_model

IMAGE, PATCH, WIDTH, DEPTH, HEADS, EMBED, CLASSES = 8, 4, 16, 2, 2, 8, 5
ARCH = {"kind": "clip_classifier", "image_shape": [3, IMAGE, IMAGE], "num_classes": CLASSES, "embed_dim": EMBED,
        "kwargs": {"img_size": IMAGE, "patch_size": PATCH, "embed_dim": WIDTH, "depth": DEPTH, "num_heads": HEADS}}


def openai_clip_state(seed: int = 0, classes: int = CLASSES) -> dict[str, torch.Tensor]:
    """A tiny model-soups checkpoint: OpenAI CLIP's VisionTransformer keys under `model.`, a few text-tower keys
    (dropped on loading) and the classification head; random values, layer-norm scales around 1."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.3) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    def norm(name: str) -> dict[str, torch.Tensor]:
        return {f"{name}.weight": 1 + rand(WIDTH, scale=0.1), f"{name}.bias": rand(WIDTH, scale=0.1)}

    tokens = (IMAGE // PATCH) ** 2 + 1
    visual = {"conv1.weight": rand(WIDTH, 3, PATCH, PATCH), "class_embedding": rand(WIDTH),
              "positional_embedding": rand(tokens, WIDTH), **norm("ln_pre"), **norm("ln_post"),
              "proj": rand(WIDTH, EMBED)}
    for i in range(DEPTH):
        block = f"transformer.resblocks.{i}"
        visual.update({**norm(f"{block}.ln_1"), **norm(f"{block}.ln_2"),
                       f"{block}.attn.in_proj_weight": rand(3 * WIDTH, WIDTH),
                       f"{block}.attn.in_proj_bias": rand(3 * WIDTH),
                       f"{block}.attn.out_proj.weight": rand(WIDTH, WIDTH), f"{block}.attn.out_proj.bias": rand(WIDTH),
                       f"{block}.mlp.c_fc.weight": rand(4 * WIDTH, WIDTH), f"{block}.mlp.c_fc.bias": rand(4 * WIDTH),
                       f"{block}.mlp.c_proj.weight": rand(WIDTH, 4 * WIDTH), f"{block}.mlp.c_proj.bias": rand(WIDTH)})
    text = {"token_embedding.weight": rand(10, EMBED), "positional_embedding": rand(4, EMBED),
            "ln_final.weight": rand(EMBED), "ln_final.bias": rand(EMBED), "text_projection": rand(EMBED, EMBED),
            "logit_scale": rand(()), "transformer.resblocks.0.ln_1.weight": rand(EMBED)}
    return {**{f"model.visual.{k}": v for k, v in visual.items()}, **{f"model.{k}": v for k, v in text.items()},
            "classification_head.weight": rand(classes, EMBED, scale=1.0),
            "classification_head.bias": rand(classes, scale=1.0)}


def reference_features(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The L2-normalized image embedding of OpenAI CLIP's VisionTransformer (clip/model.py), by hand."""
    def p(name: str) -> torch.Tensor:
        return state[f"model.visual.{name}"]

    def layer_norm(h: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(h, (WIDTH,), p(f"{name}.weight"), p(f"{name}.bias"), eps=1e-5)

    n = x.shape[0]
    h = F.conv2d(x, p("conv1.weight"), stride=PATCH).flatten(2).transpose(1, 2)     # (n, patches, width)
    h = torch.cat([p("class_embedding").expand(n, 1, WIDTH), h], dim=1) + p("positional_embedding")
    h = layer_norm(h, "ln_pre")
    for i in range(DEPTH):
        block = f"transformer.resblocks.{i}"
        q, k, v = (layer_norm(h, f"{block}.ln_1") @ p(f"{block}.attn.in_proj_weight").T
                   + p(f"{block}.attn.in_proj_bias")).chunk(3, dim=-1)
        q, k, v = (t.reshape(n, -1, HEADS, WIDTH // HEADS).transpose(1, 2) for t in (q, k, v))
        attention = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(WIDTH // HEADS), dim=-1)
        out = (attention @ v).transpose(1, 2).reshape(n, -1, WIDTH)
        h = h + out @ p(f"{block}.attn.out_proj.weight").T + p(f"{block}.attn.out_proj.bias")
        hidden = layer_norm(h, f"{block}.ln_2") @ p(f"{block}.mlp.c_fc.weight").T + p(f"{block}.mlp.c_fc.bias")
        hidden = hidden * torch.sigmoid(1.702 * hidden)                                  # QuickGELU
        h = h + hidden @ p(f"{block}.mlp.c_proj.weight").T + p(f"{block}.mlp.c_proj.bias")
    features = layer_norm(h[:, 0], "ln_post") @ p("proj")
    return features / features.norm(dim=-1, keepdim=True)


def reference_logits(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """model-soups' ModelWrapper: the classification head on the normalized CLIP features."""
    return reference_features(state, x) @ state["classification_head.weight"].T + state["classification_head.bias"]


def save(state: dict[str, torch.Tensor], path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def clip_classifier(pretrained: str | Path = "", **fields) -> torch.nn.Module:
    return build_model({**ARCH, "pretrained": str(pretrained), **fields}).eval()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_model_soups_checkpoint_gives_clip_logits(tmp_path: Path, suffix: str):
    state = openai_clip_state()
    model = clip_classifier(save(state, tmp_path / f"soup{suffix}"))
    x = torch.randn(4, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, expected = model(x), reference_logits(state, x)
        assert torch.allclose(model(x.flatten(1)), logits)                         # flat inputs are reshaped
    assert logits.dtype == torch.float32
    assert torch.allclose(logits, expected, atol=1e-5, rtol=0), (logits - expected).abs().max()


def test_plain_openai_clip_checkpoint_keeps_the_fresh_head(tmp_path: Path):
    state = openai_clip_state()
    plain = {key.removeprefix("model."): value for key, value in state.items() if key.startswith("model.visual.")}
    torch.manual_seed(0)
    fresh = clip_classifier()
    torch.manual_seed(0)
    model = clip_classifier(save(plain, tmp_path / "clip.pt"))
    assert torch.equal(model.head.weight, fresh.head.weight) and torch.equal(model.head.bias, fresh.head.bias)
    x = torch.randn(3, 3, IMAGE, IMAGE)
    with torch.no_grad():
        assert torch.allclose(model(x), fresh.head(reference_features(state, x)), atol=1e-5, rtol=0)


def test_pickled_objects_are_refused_and_never_run(tmp_path: Path):
    marker = tmp_path / "ran"

    class Payload:                                        # unpickling it would create `marker`
        def __reduce__(self):
            return open, (str(marker), "w")

    path = tmp_path / "evil.pt"
    torch.save({**openai_clip_state(), "payload": Payload()}, path)
    with pytest.raises(CollectionError, match="weights_only=True") as error:
        clip_classifier(path)
    assert str(path) in str(error.value) and not marker.exists()


def test_missing_unexpected_and_misshapen_keys_name_the_file(tmp_path: Path):
    state = openai_clip_state()
    del state["model.visual.ln_post.weight"]
    state["model.visual.extra"] = torch.zeros(1)
    path = save(state, tmp_path / "broken.safetensors")
    with pytest.raises(CollectionError) as error:
        clip_classifier(path)
    message = str(error.value)
    assert str(path) in message and "missing ['visual.ln_post.weight']" in message
    assert "unexpected ['visual.extra']" in message

    path = save(openai_clip_state(), tmp_path / "other-classes.safetensors")
    shapes = r"(?s)other-classes.safetensors.*size mismatch for head.weight.*num_classes"
    with pytest.raises(CollectionError, match=shapes):
        clip_classifier(path, num_classes=CLASSES + 1)


def test_relative_path_is_found_in_sharpbench_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data = tmp_path / "data"
    (data / "soups").mkdir(parents=True)
    save(openai_clip_state(), data / "soups" / "soup.safetensors")
    monkeypatch.setenv("SHARPBENCH_DATA", str(data))
    monkeypatch.chdir(tmp_path)
    model = clip_classifier("soups/soup.safetensors")
    assert torch.equal(model.head.bias, openai_clip_state()["classification_head.bias"])
    with pytest.raises(CollectionError) as error:
        clip_classifier("soups/absent.pt")
    message = str(error.value)
    assert f"searched: {data / 'soups' / 'absent.pt'}, soups/absent.pt)" in message   # every place, in order
    assert "SHARPBENCH_DATA" in message and "--data-dir DIR" in render_error(error.value)


def test_parameters_are_float32_proj_has_no_bias_and_the_tower_is_openai(tmp_path: Path):
    half = {key: value.half() for key, value in openai_clip_state().items()}       # OpenAI's files are fp16
    model = clip_classifier(save(half, tmp_path / "half.safetensors"))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.proj.bias is None and "proj.bias" not in dict(model.named_parameters())
    assert ARCHITECTURES["clip_classifier"].params["model"].default == "vit_base_patch32_clip_quickgelu_224"
    tower = model.tower                                       # the default name's config, shrunk by the kwargs
    assert type(tower.blocks[0].mlp.act).__name__ == "QuickGELU"
    assert isinstance(tower.norm_pre, torch.nn.LayerNorm) and tower.patch_embed.proj.bias is None


def test_the_card_records_each_fine_tunes_hyperparameters_from_model_soups():
    """model-soups' hparam_info.json, transcribed: spot values, the linear-probe start as no fine-tuning, and
    every column numeric (so that Psi, conditional MI and the sign error are defined on the collection)."""
    from sharpbench.cards.discovery import Registry
    from sharpbench.scoring.scores import numeric_hparams

    spec = Registry.discover().collection("clip-imagenet-finetuned")
    hparams = {point.id: point.hparams for point in spec.model_points()}
    assert len(hparams) == 72
    assert hparams["model-01"] == {"pretrained": "model-soups/model_1.pt", "learning_rate": 6.229787713239867e-06,
                                   "weight_decay": 0.0008694458412822906, "epochs": 4,
                                   "label_smoothing": 0.10939680281567313, "mixup_alpha": 0.38128931940501426,
                                   "randaugment_ops": 1, "randaugment_magnitude": 12}      # "rand-m12-n1"
    assert hparams["model-00"]["epochs"] == 0 and hparams["model-00"]["learning_rate"] == 0.0
    assert {k: v for k, v in hparams["model-04"].items() if k != "pretrained"} == \
        {k: v for k, v in hparams["model-05"].items() if k != "pretrained"}          # identical in model-soups
    recorded = [{k: v for k, v in h.items() if k not in spec.weight_fields} for h in hparams.values()]
    columns = numeric_hparams(recorded, {})
    assert sorted(columns) == sorted(["learning_rate", "weight_decay", "epochs", "label_smoothing", "mixup_alpha",
                                      "randaugment_ops", "randaugment_magnitude"])
    assert columns["learning_rate"] == [float(h["learning_rate"]) for h in recorded]   # numbers, not grid positions
