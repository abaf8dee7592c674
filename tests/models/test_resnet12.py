"""ResNet-12 backbone: block structure, shapes, gradients, input validation."""

import pytest
import torch
from torch import nn

from neural_attention_memory.models.resnet12 import ResNet12, ResNet12Config


def test_shapes_structure_and_gradients():
    torch.manual_seed(0)
    net = ResNet12(ResNet12Config(in_channels=1, widths=(4, 6, 8, 10)))
    x = torch.randn(3, 1, 32, 32, requires_grad=True)
    out = net(x)
    assert out.shape == (3, 10) and net.out_dim == 10
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # Four residual blocks of three 3x3 convs + a 1x1 shortcut each: 12 weighted 3x3 layers.
    convs3 = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    convs1 = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert len(convs3) == 12 and len(convs1) == 4
    # Non-square and colour inputs; each block halves the resolution (16 px -> 1 x 1).
    net3 = ResNet12(ResNet12Config(in_channels=3, widths=(2, 2, 2, 2)))
    assert net3(torch.randn(2, 3, 16, 24)).shape == (2, 2)


def test_block_is_residual():
    # With the body's last BatchNorm scaled to zero, a block is shortcut -> LeakyReLU -> pool.
    net = ResNet12(ResNet12Config(widths=(3, 3, 3, 3))).eval()
    block = net.blocks[0]
    with torch.no_grad():
        block.body[-1].weight.zero_()
        block.body[-1].bias.zero_()
    x = torch.randn(2, 1, 16, 16)
    ref = nn.functional.max_pool2d(nn.functional.leaky_relu(block.shortcut(x), 0.1), 2)
    torch.testing.assert_close(block(x), ref)


def test_default_size_and_validation():
    net = ResNet12()
    assert net.config.widths == (32, 64, 128, 256)
    assert 1_900_000 < sum(p.numel() for p in net.parameters()) < 2_100_000
    with pytest.raises(ValueError, match="x"):
        net(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="H, W >= 16"):
        net(torch.randn(2, 1, 8, 8))
    with pytest.raises(TypeError, match="x"):
        net(torch.zeros(2, 1, 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="widths"):
        ResNet12Config(widths=(8, 8, 8))
    with pytest.raises(ValueError, match="in_channels"):
        ResNet12Config(in_channels=0)
    with pytest.raises(ValueError, match="negative_slope"):
        ResNet12Config(negative_slope=1.5)
