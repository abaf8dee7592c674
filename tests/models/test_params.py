"""The one parameter-count helper."""

import pytest
from torch import nn

from neural_attention_memory.models._params import count_parameters


def test_count_parameters_trainable_and_all():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    net[0].weight.requires_grad_(False)
    assert count_parameters(net) == 4 + 4 * 2 + 2
    assert count_parameters(net, trainable_only=False) == 3 * 4 + 4 + 4 * 2 + 2
    with pytest.raises(TypeError, match="module"):
        count_parameters([1, 2])


def test_every_layer_uses_the_same_helper():
    from neural_attention_memory.models import baselines, sequence
    from neural_attention_memory.training import count_parameters as from_training

    assert baselines.count_parameters is sequence.count_parameters is count_parameters
    assert from_training is count_parameters


def test_one_padding_mask_validator():
    """functional, layers and models check padding masks with one function (named per caller)."""
    import torch

    from neural_attention_memory.functional._validate import check_padding_mask
    from neural_attention_memory.layers._common import check_padding_mask as layers_check
    from neural_attention_memory.models._checks import check_padding_mask as models_check

    for check in (layers_check, models_check):
        assert check.func is check_padding_mask
        with pytest.raises(TypeError, match=r"^padding_mask: expected a bool tensor"):
            check(torch.zeros(2, 3), 2, 3)
        with pytest.raises(ValueError, match=r"^padding_mask: expected shape \[B, T\]"):
            check(torch.zeros(2, 4, dtype=torch.bool), 2, 3)
    mask = torch.zeros(2, 3, dtype=torch.bool)
    assert check_padding_mask(mask, 2, 3) is mask and check_padding_mask(None, 2, 3) is None
