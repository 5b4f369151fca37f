"""The study's CIFAR-10 ViT (vit-pytorch's SimpleViT as `vit_exp` builds it): its size in closed form and the
study's count, its position embeddings, and its use by the sharpness kernels with several models at once."""

from __future__ import annotations

import copy

import pytest
import torch

from sharpbench.kernels.sharpness import worst_case_sharpness, worst_case_sharpness_many
from sharpbench.models.registry import build_model


def simple_vit(**fields) -> torch.nn.Module:
    return build_model({"kind": "simple_vit", "image_shape": [3, 32, 32], "num_classes": 10, **fields})


def expected_parameters(dim: int, depth: int, heads: int, mlp_dim: int, dim_head: int, classes: int,
                        patch: int = 4, channels: int = 3) -> int:
    """Counted from SimpleViT's definition: LayerNorm, Linear, LayerNorm on the patches; per layer a pre-norm
    attention (qkv and output projections without bias) and a pre-norm MLP; a final LayerNorm; a linear head."""
    patch_dim = channels * patch * patch
    embed = 2 * patch_dim + patch_dim * dim + dim + 2 * dim
    inner = heads * dim_head
    attention = 2 * dim + dim * 3 * inner + inner * dim
    mlp = 2 * dim + dim * mlp_dim + mlp_dim + mlp_dim * dim + dim
    return embed + depth * (attention + mlp) + 2 * dim + dim * classes + classes


@pytest.mark.parametrize("fields", [{}, {"dim": 32, "depth": 2, "heads": 2, "mlp_dim": 64, "dim_head": 16}])
def test_the_parameter_count_is_the_closed_form_and_the_studys(fields):
    model = simple_vit(**fields)
    full = {"dim": 512, "depth": 6, "heads": 16, "mlp_dim": 1024, "dim_head": 64, **fields}
    assert sum(p.numel() for p in model.parameters()) == expected_parameters(**full, classes=10)
    if not fields:
        assert sum(p.numel() for p in model.parameters()) == 18_928_234      # the study's vit_exp
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_patches_carry_their_position_a_transposed_image_gives_other_logits():
    torch.manual_seed(0)
    model = simple_vit(dim=32, depth=1, heads=2, mlp_dim=64, dim_head=16).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x.transpose(2, 3)), atol=1e-4)


def test_the_kernels_give_a_model_alone_and_in_a_group_the_same_sharpness():
    torch.manual_seed(0)
    model = simple_vit(dim=32, depth=2, heads=2, mlp_dim=64, dim_head=16).eval()
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.1)
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 3, 32, 32, generator=generator), torch.randint(0, 10, (8,), generator=generator))
               for _ in range(2)]
    alone = [worst_case_sharpness(m, batches, rho=0.01, steps=3) for m in (model, other)]
    together = worst_case_sharpness_many([model, other], batches, rho=0.01, steps=3)
    assert together == pytest.approx(alone, rel=1e-5) and alone[0] > 0 and alone[0] != alone[1]
