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
