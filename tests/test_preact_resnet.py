"""The study's pre-activation ResNet: its size in closed form, the pre-activation residual structure, the card."""

from __future__ import annotations

import pytest
import torch

from sharpbench.models.preact_resnet import PreActBlock
from sharpbench.models.registry import ARCHITECTURES, build_model


def preact_resnet18(**fields) -> torch.nn.Module:
    return build_model({"kind": "preact_resnet", "image_shape": [3, 32, 32], "num_classes": 10, **fields})


def expected_parameters(width: int, blocks: list[int], classes: int, channels: int = 3) -> int:
    """Counted from the architecture's definition: convolutions without bias, affine BatchNorms, a linear head."""
    total, in_planes = channels * width * 9, width
    for index, count in enumerate(blocks):
        planes = width * 2 ** index
        for block in range(count):
            changes = block == 0 and (index > 0 or in_planes != planes)
            total += 2 * in_planes + in_planes * planes * 9 + 2 * planes + planes * planes * 9
            total += in_planes * planes if changes else 0
            in_planes = planes
    return total + 2 * in_planes + in_planes * classes + classes


@pytest.mark.parametrize("width,blocks,classes", [(64, [2, 2, 2, 2], 10), (16, [1, 1, 1, 1], 100), (8, [2, 1, 3, 1], 2)])
def test_the_parameter_count_is_the_closed_form_and_the_studys_for_preact_resnet18(width, blocks, classes):
    model = preact_resnet18(width=width, blocks=blocks, num_classes=classes)
    assert sum(p.numel() for p in model.parameters()) == expected_parameters(width, blocks, classes)
    if (width, blocks, classes) == (64, [2, 2, 2, 2], 10):
        assert sum(p.numel() for p in model.parameters()) == 11_172_170     # the study's PreActResNet-18
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def identity_batchnorms(block: PreActBlock) -> PreActBlock:
    """Eval-mode BatchNorms that pass their input through (mean 0, variance 1 - eps, scale 1, shift 0)."""
    for bn in (block.bn1, block.bn2):
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
    return block.eval()


def test_a_block_with_a_zero_second_conv_is_the_identity_on_the_residual_path():
    block = identity_batchnorms(PreActBlock(8, 8, stride=1))
    with torch.no_grad():
        block.conv2.weight.zero_()
        x = torch.randn(4, 8, 6, 6)
        assert torch.equal(block(x), x)                     # the raw input, not its activation, is added


def test_a_projection_shortcut_reads_the_first_activation_not_the_raw_input():
    block = identity_batchnorms(PreActBlock(8, 16, stride=2))
    with torch.no_grad():
        block.conv2.weight.zero_()
        x = torch.randn(4, 8, 6, 6)
        assert torch.allclose(block(x), block.shortcut(torch.relu(x)), atol=1e-6)
        assert not torch.allclose(block(x), block.shortcut(x), atol=1e-3)


def test_a_card_may_name_it_and_flat_inputs_are_reshaped():
    assert ARCHITECTURES["preact_resnet"].params["blocks"].default == [2, 2, 2, 2]
    model = build_model({"kind": "preact_resnet", "image_shape": [1, 8, 8], "num_classes": 10, "width": 4})
    assert model(torch.randn(5, 64)).shape == (5, 10)
