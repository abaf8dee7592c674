"""Few-shot experiment (docs/paper.md §6): generalised N-way K-shot with the cosine and NAM heads.

Protocol (after Gidaris & Komodakis 2018):

- **Stage 1** (task ``fewshot_stage1``, model ``convnet`` or ``resnet12``): a backbone + cosine
  classifier trained on the base classes' ``train`` samples; selected on their held-out ``val``
  samples.
- **Stage 2** (task ``fewshot_stage2``, models ``cosine``, ``cosine_att``, ``nam``, ``nam_tied``):
  the backbone is frozen (its features are computed once and cached in the stage-1 run folder,
  which is exactly equivalent); the head starts from the stage-1 base weights and is trained on
  fake-novel episodes drawn from the base classes (from their ``holdout`` images, which stage 1
  never saw, when the source has them); selected on episodes whose novel classes are the ``val``
  classes.
- **Test**: many episodes with novel classes from the ``novel`` split and base queries from the
  base classes' held-out ``test`` samples; every head of one setting sees the same episodes, so
  differences between heads come with paired confidence intervals.

Metrics per episode: novel accuracy (N-way, among novel columns), base accuracy (among base
columns), joint accuracy (all columns, all queries), the false-positive rates across the boundary
(base queries predicted as a novel class, novel queries predicted as a base class) and a 2x3
confusion summary; means come with 95% confidence intervals over episodes.

The pieces: :mod:`.paper` (names, reference numbers), :mod:`.data`, :mod:`.models`,
:mod:`.features` (frozen-backbone cache, stage-2 episodes), :mod:`.step`, :mod:`.evaluate`
(test episodes, CIs, verdict), :mod:`.presets`, :mod:`.schema`, :mod:`.report` and
:mod:`.reproduce` (``nam reproduce fewshot`` on the shared reproducer).
"""

from __future__ import annotations

from ...tasks.episodes import collate_episode
from ...training.spec import TaskSpec
from ..registry import register_reproducer, register_task
from .data import DATASETS, RENDERED, episode_sampler, load_fewshot_data, stage1_datasets
from .evaluate import (
    OFFSETS,
    SUMMARY_METRICS,
    equal_error_point,
    evaluate_heads,
    summarize,
    verdict,
)
from .features import stage1_features, stage2_datasets
from .models import (
    BACKBONES,
    HEADS,
    MODEL_DESCRIPTIONS,
    build_stage1_model,
    build_stage2_head,
    erase_ablation,
    load_head,
    load_stage1,
)
from .paper import PAPER_REFERENCE, STAGE1, STAGE2, TASKS, TEST_SEED
from .presets import GRIDS, PRESET_DEFAULTS, PRESET_DESCRIPTIONS, STAGE1_PRESETS, STAGE2_PRESETS
from .report import head_label, report_lines
from .reproduce import FAMILY, overrides_for, plan_fewshot, reproduce_fewshot
from .schema import Stage1Config, Stage2Config
from .step import episode_metrics, stage1_compute, stage2_compute

__all__ = [
    "BACKBONES",
    "DATASETS",
    "FAMILY",
    "GRIDS",
    "HEADS",
    "OFFSETS",
    "PAPER_REFERENCE",
    "PRESET_DEFAULTS",
    "RENDERED",
    "STAGE1",
    "STAGE1_PRESETS",
    "STAGE2",
    "STAGE2_PRESETS",
    "SUMMARY_METRICS",
    "TASKS",
    "TEST_SEED",
    "build_stage1_model",
    "build_stage2_head",
    "episode_metrics",
    "episode_sampler",
    "equal_error_point",
    "erase_ablation",
    "evaluate_heads",
    "head_label",
    "load_fewshot_data",
    "load_head",
    "load_stage1",
    "overrides_for",
    "plan_fewshot",
    "report_lines",
    "reproduce_fewshot",
    "stage1_compute",
    "stage1_features",
    "stage2_compute",
    "summarize",
    "verdict",
]

register_task(
    TaskSpec(
        name=STAGE1,
        family="fewshot",
        build_datasets=stage1_datasets,
        build_model=build_stage1_model,
        compute=stage1_compute,
        models=BACKBONES,
        presets=STAGE1_PRESETS,
        selection_metric="val/acc",
        schema=Stage1Config,
        description="few-shot stage 1: ConvNet or ResNet-12 + cosine classifier on the base classes",
    )
)
register_task(
    TaskSpec(
        name=STAGE2,
        family="fewshot",
        build_datasets=stage2_datasets,
        build_model=build_stage2_head,
        compute=stage2_compute,
        models=HEADS,
        presets=STAGE2_PRESETS,
        collate_fn=collate_episode,
        selection_metric="val/joint_acc",
        schema=Stage2Config,
        description="few-shot stage 2: frozen backbone, head trained on fake-novel episodes",
    )
)

register_reproducer(
    "fewshot",
    reproduce_fewshot,
    description=FAMILY.description,
    models=MODEL_DESCRIPTIONS,
    presets=PRESET_DESCRIPTIONS,
    datasets={
        "glyphs": "rendered from matplotlib's DejaVu fonts (230 classes)",
        "noto": "rendered from the Noto fonts (fonts-noto-core): 2,407 classes, 41 scripts",
        "miniimagenet": "user files: <data root>/miniimagenet/ (pickles, split files or images)",
        "omniglot": "user files: <data root>/omniglot/ (images_background/, images_evaluation/)",
    },
    family_spec=FAMILY,
    plan=plan_fewshot,
    set_help="config override (repeatable): KEY=VALUE for both stages, "
    "stage1:KEY=VALUE or stage2:KEY=VALUE for one",
)
