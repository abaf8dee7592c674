"""``data.input_loss``: the authors' autoencoding loss on every real position, metrics unchanged."""

from __future__ import annotations

import pytest
import torch

from neural_attention_memory.experiments import generalization as gen
from neural_attention_memory.experiments.registry import get_task
from neural_attention_memory.tasks import algorithmic as alg
from neural_attention_memory.training import ConfigError, fit, resolve_config

from ._helpers import TINY_SPLITS, FixedLogits

TINY = [
    *TINY_SPLITS,
    "trainer.progress_bar=false",
    "trainer.max_epochs=1",
]


def _batch(input_loss: bool):
    rng = __import__("numpy").random.default_rng(0)
    examples = [alg.make_example("fib", n, rng) for n in (3, 1)]
    ds = alg.SequenceDataset(examples, input_loss=input_loss)
    return alg.collate([ds[0], ds[1]])


def test_collate_marks_the_batch_only_when_asked():
    assert "input_loss" not in _batch(False)
    batch = _batch(True)
    assert batch["input_loss"].dtype == torch.bool and bool(batch["input_loss"])
    rng = __import__("numpy").random.default_rng(0)
    ex = alg.make_example("fib", 2, rng)
    a, b = alg.SequenceDataset([ex], input_loss=True)[0], alg.SequenceDataset([ex])[0]
    with pytest.raises(ValueError, match="all or none of the samples to carry input_loss"):
        alg.collate([a, b])


def test_loss_covers_every_real_position_and_metrics_only_the_answer():
    plain, marked = _batch(False), _batch(True)
    tokens, targets, pad = marked["tokens"], marked["targets"], marked["padding_mask"]
    torch.manual_seed(0)
    logits = torch.randn(*tokens.shape, alg.VOCAB_SIZE)
    out = gen.compute(FixedLogits(logits.clone()), marked)
    base = gen.compute(FixedLogits(logits.clone()), plain)
    # the slow twin: one cross-entropy term per real position, averaged
    terms = []
    for b in range(tokens.shape[0]):
        for t in range(tokens.shape[1]):
            if pad[b, t]:
                continue
            goal = targets[b, t] if targets[b, t] != alg.IGNORE_INDEX else tokens[b, t]
            terms.append(-torch.log_softmax(logits[b, t], -1)[goal])
    torch.testing.assert_close(out.loss, torch.stack(terms).mean())
    assert len(terms) == int((~pad).sum()) > int((targets != alg.IGNORE_INDEX).sum())
    for name in base.metrics:
        for x, y in zip(out.metrics[name], base.metrics[name], strict=True):
            torch.testing.assert_close(x, y)
    assert not torch.allclose(out.loss, base.loss)


def test_only_the_training_set_gets_the_input_loss():
    cfg = resolve_config(get_task("fib"), "quick", [*TINY, "data.input_loss=true"], model="lstm")
    assert cfg["data"]["input_loss"] is True
    sets = gen.build_datasets(cfg, 0)
    assert sets["train"].input_loss and "input_loss" in sets["train"][0]
    assert all(not ds.input_loss for name, ds in sets.items() if name != "train")
    scan = resolve_config(
        get_task("scan"),
        "quick",
        ["data.train_count=32", "data.id_count=8", "data.test_count=8", "data.input_loss=true"],
        model="lstm",
    )
    assert gen.build_datasets(scan, 0)["train"].input_loss
    default = resolve_config(get_task("fib"), "quick", TINY, model="lstm")
    assert not gen.build_datasets(default, 0)["train"].input_loss


def test_bad_value_is_a_config_error():
    with pytest.raises(ConfigError, match="data.input_loss"):
        resolve_config(get_task("fib"), "quick", ["data.input_loss=3"], model="lstm")


def test_a_run_with_the_input_loss_trains_and_records_it(tmp_path):
    over = [*TINY, "data.input_loss=true", "+model.d_embed=8", "+model.hidden=16"]
    over.append("+model.num_heads=2")
    spec = get_task("fib")
    result = fit(spec, resolve_config(spec, "quick", over, model="lstm"), tmp_path / "run")
    assert result["status"] == "finished"
    assert "input_loss: true" in (tmp_path / "run" / "config.yaml").read_text()
