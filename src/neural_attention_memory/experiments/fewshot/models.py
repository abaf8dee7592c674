"""Few-shot models: the stage-1 network (backbone + cosine classifier) and the stage-2 heads.

Stage 1 trains a ConvNet or ResNet-12 with a cosine classifier on the base classes; stage 2 trains
a head (``cosine``, ``cosine_att``, ``nam``, ``nam_tied``) that starts from the stage-1 base
weights. :func:`erase_ablation` turns a trained NAM head into one with a constant erase gate.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...models.convnet import ConvNet, ConvNetConfig
from ...models.few_shot import (
    ConstantGate,
    CosineClassifier,
    FewShotNetwork,
    NAMFewShotClassifier,
)
from ...models.resnet12 import ResNet12, ResNet12Config
from ...training.rundir import read_config
from .data import load_fewshot_data
from .paper import STAGE1

__all__ = [
    "BACKBONES",
    "HEADS",
    "MODEL_DESCRIPTIONS",
    "build_stage1_model",
    "build_stage2_head",
    "erase_ablation",
    "load_head",
    "load_stage1",
    "stage1_run_of",
]

BACKBONES = ("convnet", "resnet12")
HEADS = ("cosine", "cosine_att", "nam", "nam_tied")

#: Model name -> one line for ``nam list models``.
MODEL_DESCRIPTIONS = {
    "cosine": "cosine classifier (Gidaris & Komodakis 2018), novel weights = mean features",
    "cosine_att": "cosine classifier + attention-based weight generator",
    "nam": "NAM head, separate write and erase gates",
    "nam_tied": "the authors' NAM head: one tied gate (p_w = p_e), batched erase",
}


def build_stage1_model(config: Mapping[str, Any]) -> FewShotNetwork:
    """``model.name`` (``convnet``/``resnet12``) with ``model.widths`` + a cosine classifier
    (scale ``model.scale``) over the base classes of ``config["data"]``."""
    data = load_fewshot_data(config["data"])
    m = config["model"]
    channels = int(data.images.shape[1])
    backbone: ConvNet | ResNet12
    if m["name"] == "resnet12":
        widths = tuple(m.get("widths", (32, 64, 128, 256)))
        backbone = ResNet12(ResNet12Config(in_channels=channels, widths=widths))
    elif m["name"] == "convnet":
        widths = tuple(m.get("widths", (32, 64, 64, 128)))
        backbone = ConvNet(ConvNetConfig(in_channels=channels, widths=widths))
    else:
        raise ValueError(f"model.name: expected one of {', '.join(BACKBONES)}, got {m['name']!r}")
    head = CosineClassifier(
        len(data.class_split["base"]), backbone.out_dim, scale=float(m.get("scale", 10.0))
    )
    return FewShotNetwork(backbone, head)


def _load_state(model: nn.Module, ckpt: Path) -> None:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})


def load_stage1(run_dir: str | os.PathLike[str]) -> tuple[FewShotNetwork, dict[str, Any]]:
    """The trained stage-1 network (selected epoch, eval mode) and its config."""
    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    if not ckpt.is_file():
        ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise FileNotFoundError(
            f"data.stage1_run: expected a finished {STAGE1} run folder with checkpoints/best.ckpt, "
            f"got {run_dir}"
        )
    config = read_config(run_dir)
    if config.get("task") != STAGE1:
        raise ValueError(
            f"data.stage1_run: expected a {STAGE1} run, got task {config.get('task')!r}"
        )
    net = build_stage1_model(config)
    _load_state(net, ckpt)
    return net.eval(), config


def stage1_run_of(config: Mapping[str, Any]) -> Path:
    """The stage-1 run folder a stage-2 config names in ``data.stage1_run``."""
    run = config["data"].get("stage1_run")
    if not run:
        raise ValueError(
            f"data.stage1_run: expected the run folder of a finished {STAGE1} run "
            f"(nam train {STAGE1} ...), got {run!r}"
        )
    return Path(run)


def build_stage2_head(config: Mapping[str, Any]) -> CosineClassifier | NAMFewShotClassifier:
    """The head named by ``model.name``, initialised from the stage-1 base weights."""
    net, _ = load_stage1(stage1_run_of(config))
    m = config["model"]
    num_base, dim = net.head.num_base, net.head.dim
    name = m["name"]
    if name in ("cosine", "cosine_att"):
        head: CosineClassifier | NAMFewShotClassifier = CosineClassifier(
            num_base, dim, generator="att" if name == "cosine_att" else "avg"
        )
    elif name in ("nam", "nam_tied"):
        head = NAMFewShotClassifier(
            num_base,
            dim,
            gate_hidden=int(m.get("gate_hidden", 64)),
            write_mode=str(m.get("write_mode", "batched")),
            value_scale=str(m.get("value_scale", "mean")),
            p_w_init=float(m.get("p_w_init", 0.9)),
            p_e_init=float(m.get("p_e_init", 0.2)),
            gate="tied" if name == "nam_tied" else "separate",
            p_init=float(m.get("p_init", 0.5)),
            erase=str(m.get("erase", "episode")),
        )
    else:
        raise ValueError(f"model.name: expected one of {', '.join(HEADS)}, got {name!r}")
    with torch.no_grad():
        head.weight_base.copy_(net.head.weight_base)
        head.gamma.copy_(net.head.gamma)
        head.beta.copy_(net.head.beta)
        if name == "cosine_att":
            head.att_keys.copy_(net.head.weight_base)
    return head


def load_head(run_dir: Path) -> nn.Module:
    """The trained stage-2 head of a run folder (selected epoch, eval mode)."""
    head = build_stage2_head(read_config(run_dir))
    _load_state(head, run_dir / "checkpoints" / "best.ckpt")
    return head.eval()


def erase_ablation(
    head: NAMFewShotClassifier, p_e: float, write_mode: str = "sequential"
) -> NAMFewShotClassifier:
    """A copy of a trained NAM head whose erase gate is the constant ``p_e`` (no retraining).

    The write gate stays the trained one (for a tied head: its one gate, now used for writing
    only). ``p_e = 0`` switches the erase off. Sequential writes by default: with K similar keys
    the batched sum erases up to ``K * p_e`` of a direction (overshooting past zero), whereas
    repeated ``nam_write`` never does.
    """
    if not 0.0 <= p_e < 1.0:
        raise ValueError(f"p_e: expected a probability in [0, 1), got {p_e}")
    ablated = copy.deepcopy(head)
    ablated.write_mode = write_mode
    if ablated.gate_mode == "tied":
        ablated.gate_w = ablated.gate
        del ablated.gate
        ablated.gate_mode = "separate"
    ablated.gate_e = ConstantGate(p_e)
    return ablated
