"""Few-shot experiment: metrics, verdict, stage-2 episodes and a tiny end-to-end reproduce run."""

import json

import numpy as np
import pytest
import torch

from neural_attention_memory.experiments import fewshot as fs
from neural_attention_memory.experiments.registry import get_reproducer, get_task, list_tasks
from neural_attention_memory.experiments.runner import job_run_dir

# A tiny glyph set and short runs: the whole pipeline in a few seconds.
TINY = (
    "stage1:+data.glyphs.scripts=[digits, greek, latin]",
    "stage1:data.glyphs.samples_per_class=30",
    "stage1:data.glyphs.base_test=6",
    "stage1:data.glyphs.base_holdout=10",
    "stage1:data.glyphs.image_size=16",
    "stage1:model.widths=[8, 16]",
    "stage1:trainer.max_epochs=1",
    "stage2:trainer.max_epochs=1",
    "stage2:data.train_episodes=20",
    "stage2:data.val_episodes=10",
    "stage2:data.n_query_base=20",
    "stage2:data.n_query_novel=5",
    "trainer.progress_bar=false",
)


def test_registered():
    assert {fs.STAGE1, fs.STAGE2} <= set(list_tasks("fewshot"))
    assert get_task(fs.STAGE2).models == ("cosine", "cosine_att", "nam", "nam_tied")
    assert get_task(fs.STAGE1).models == ("convnet", "resnet12")
    assert get_reproducer("fewshot") is fs.reproduce_fewshot


def test_episode_metrics_by_hand():
    # 2 base columns, 2 novel columns; queries: two base, two novel.
    scores = torch.tensor(
        [
            [5.0, 1.0, 0.0, 0.0],  # base 0 -> base 0 (right)
            [0.0, 1.0, 3.0, 0.0],  # base 1 -> novel 2 (cross); among base: 1 (right)
            [0.0, 0.0, 1.0, 2.0],  # novel 2 -> novel 3 (wrong novel)
            [4.0, 0.0, 1.0, 0.0],  # novel 2 -> base 0 (cross); among novel: 2 (right)
        ]
    )
    labels = torch.tensor([0, 1, 2, 2])
    is_novel = torch.tensor([False, False, True, True])
    m = {
        k: (int(a), int(b)) for k, (a, b) in fs.episode_metrics(scores, labels, is_novel, 2).items()
    }
    assert m["joint_acc"] == (1, 4)
    assert m["base_acc"] == (2, 2)
    assert m["novel_acc"] == (1, 2)
    assert m["fp_base_to_novel"] == (1, 2)
    assert m["fp_novel_to_base"] == (1, 2)
    assert m["conf_base_right"] == (1, 2) and m["conf_base_wrong"] == (0, 2)
    assert m["conf_novel_right"] == (0, 2) and m["conf_novel_wrong"] == (1, 2)


def test_summarize_and_verdict():
    s = fs.summarize({"x": np.array([0.5, 0.7, 0.6, 0.6])})
    assert s["x"]["mean"] == pytest.approx(60.0)
    assert s["x"]["ci95"] == pytest.approx(100 * 1.96 * np.std([0.5, 0.7, 0.6, 0.6], ddof=1) / 2)
    d = {
        "joint_acc": {"mean": 0.5, "ci95": 1.0},
        "fp_base_to_novel": {"mean": -3.0, "ci95": 1.0},
        "fp_novel_to_base": {"mean": -2.0, "ci95": 1.0},
    }
    assert fs.verdict(d).startswith("yes")
    d["fp_novel_to_base"] = {"mean": 2.0, "ci95": 1.0}
    assert fs.verdict(d) == "no: FP b→n lower, FP n→b higher, joint not worse"
    d["joint_acc"] = {"mean": -3.0, "ci95": 1.0}
    assert fs.verdict(d).endswith("joint worse")


def test_overrides_for():
    ov = ("stage1:a=1", "stage2:b=2", "c=3")
    assert fs.overrides_for(fs.STAGE1, ov) == ["a=1", "c=3"]
    assert fs.overrides_for(fs.STAGE2, ov) == ["b=2", "c=3"]


def test_stage2_needs_stage1_run():
    from neural_attention_memory.training import resolve_config

    cfg = resolve_config(get_task(fs.STAGE2), "quick", model="nam")
    with pytest.raises(ValueError, match="data.stage1_run"):
        fs.build_stage2_head(cfg)


def test_reproduce_end_to_end_and_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("NAM_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "out"
    report = fs.reproduce_fewshot("quick", out, test_episodes=20, overrides=TINY)
    text = report.read_text()
    assert "| 1shot | nam |" in text and "| 5shot | cosine |" in text
    assert (out / "glyphs.png").is_file()
    res = json.loads((out / "results.json").read_text())
    setting = res["datasets"]["glyphs"]["settings"]["5shot"]
    assert set(setting["heads"]) == {"cosine", "nam", "nam_pe0.5"}
    assert (out / "glyphs_tradeoff.png").is_file()
    for head in ("cosine", "nam", "nam_pe0.5"):
        s = setting["heads"][head]["summary"]
        for m in ("novel_acc", "base_acc", "joint_acc", "fp_base_to_novel", "fp_novel_to_base"):
            assert 0.0 <= s[m]["mean"] <= 100.0 and s[m]["ci95"] >= 0.0
        # The confusion summary partitions base and novel queries.
        for g in ("base", "novel"):
            total = sum(s[f"conf_{g}_{c}"]["mean"] for c in ("right", "wrong", "cross"))
            assert total == pytest.approx(100.0)
    assert "nam_minus_cosine" in setting
    # The offset sweep at offset 0 reproduces the plain metrics.
    zero = setting["offsets"].index(0.0)
    for head, r in setting["heads"].items():
        c0 = r["curve"][zero]
        for j, m in enumerate(("joint_acc", "fp_base_to_novel", "fp_novel_to_base")):
            assert c0[j] == pytest.approx(r["summary"][m]["mean"], abs=2e-3), (head, m)
    # The stage-2 head starts from the stage-1 base weights.
    s1_dir = res["datasets"]["glyphs"]["stage1"]["run_dir"]
    net, _ = fs.load_stage1(s1_dir)
    cfg = json.loads(json.dumps(fs.STAGE2_PRESETS["quick"]))
    cfg["data"]["stage1_run"] = s1_dir
    cfg["model"]["name"] = "cosine_att"
    head = fs.build_stage2_head(cfg)
    assert torch.equal(head.weight_base, net.head.weight_base)
    # Features are cached in the stage-1 run and reused.
    feats = fs.stage1_features(s1_dir)
    assert (tmp_path / "out").exists() and feats.shape[1] == net.head.dim
    # Re-running reuses every finished run and gives the same figures.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("best.ckpt")}
    fs.reproduce_fewshot("quick", out, test_episodes=20, overrides=TINY)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("best.ckpt")} == before
    again = json.loads((out / "results.json").read_text())
    assert again["datasets"]["glyphs"]["settings"] == res["datasets"]["glyphs"]["settings"]


def test_episode_splits_use_the_right_pools(tmp_path, monkeypatch):
    monkeypatch.setenv("NAM_DATA_DIR", str(tmp_path / "data"))
    glyphs = dict(fs.presets.GLYPHS_QUICK, samples_per_class=30, base_holdout=10, base_test=6)
    glyphs.update(image_size=16, scripts=["digits", "greek"])
    data = fs.load_fewshot_data({"dataset": "glyphs", "glyphs": glyphs})
    d = dict(fs.STAGE2_PRESETS["quick"]["data"], n_query_novel=5, n_query_base=10, k_shot=5)
    pools = {s: set(data.indices("base", s).tolist()) for s in ("holdout", "val", "test")}
    novel, val = set(data.indices("novel").tolist()), set(data.indices("val").tolist())
    for split in ("train", "val", "test"):
        sampler = fs.episode_sampler(data, d, split, 0, 5)
        for i in range(5):
            ep = sampler[i]
            sup, q_nov, q_base = (
                set(x.tolist()) for x in (ep.support, ep.query[ep.is_novel], ep.query[~ep.is_novel])
            )
            if split == "train":  # fake-novel episodes on images stage 1 never saw
                assert sup | q_nov | q_base <= pools["holdout"]
            else:
                assert sup | q_nov <= (val if split == "val" else novel)
                assert q_base <= pools[split]


def test_stage2_step_on_a_batch_of_episodes():
    # The batch-averaged erase ablation trains on batches of episodes (trainer.batch_size > 1).
    from neural_attention_memory.models.few_shot import NAMFewShotClassifier
    from neural_attention_memory.tasks.episodes import (
        EpisodeDataset,
        GeneralizedEpisodeSampler,
        collate_episode,
    )

    torch.manual_seed(0)
    labels = np.repeat(np.arange(12), 8)
    sampler = GeneralizedEpisodeSampler(
        labels=labels,
        base_classes=np.arange(12),
        novel_classes=np.arange(12),
        novel_pool=np.arange(len(labels)),
        base_pool=np.arange(len(labels)),
        n_way=3,
        k_shot=2,
        n_query_novel=2,
        n_query_base=6,
        num_episodes=4,
        seed=0,
        fake_novel=True,
    )
    ds = EpisodeDataset(sampler, torch.randn(len(labels), 8))
    head = NAMFewShotClassifier(12, 8, erase="batch_mean")
    batch = collate_episode([ds[i] for i in range(4)])
    out = fs.stage2_compute(head, batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and head.gate_e.net[2].weight.grad.abs().sum() > 0
    _num, den = out.metrics["joint_acc"]
    assert int(den) == 4 * (3 * 2 + 6)  # every query of the 4 episodes
    # With per-episode erase the batched step is the mean of the single-episode losses.
    head = NAMFewShotClassifier(12, 8)
    single = [fs.stage2_compute(head, ds[i]).loss for i in range(4)]
    torch.testing.assert_close(fs.stage2_compute(head, batch).loss, torch.stack(single).mean())


def test_equal_error_point_and_erase_ablation():
    offsets = np.array([-0.1, 0.0, 0.1])
    curve = np.array([[90.0, 1.0, 9.0], [92.0, 3.0, 5.0], [91.0, 7.0, 1.0]])
    t = fs.equal_error_point(curve, offsets)
    # b->n - n->b: -8, -2, 6: crosses a quarter of the way from 0.0 to 0.1.
    assert t["offset"] == pytest.approx(0.025)
    assert t["fp"] == pytest.approx(4.0) and t["joint_acc"] == pytest.approx(91.75)
    assert t["best_joint_acc"] == 92.0 and t["best_offset"] == 0.0
    assert np.isnan(fs.equal_error_point(curve[:1], offsets[:1])["fp"])
    from neural_attention_memory.models.few_shot import NAMFewShotClassifier

    head = NAMFewShotClassifier(4, 8)
    with torch.no_grad():
        head.gate_e.net[2].weight.normal_()
    ablated = fs.erase_ablation(head, 0.5)
    _, p_e = ablated.gates(torch.randn(6, 8))
    torch.testing.assert_close(p_e, torch.full((6,), 0.5))
    assert head.gate_e.net[2].weight.abs().sum() > 0  # the original is untouched
    with pytest.raises(ValueError, match="p_e"):
        fs.erase_ablation(head, 1.0)
    # p_e = 0 switches the erase off: the base rows stay the unit stage-1 weights.
    f, labels = torch.randn(4, 8), torch.tensor([0, 0, 1, 1])
    M = fs.erase_ablation(head, 0.0).process_support_set(f, labels)
    torch.testing.assert_close(M[:4], torch.nn.functional.normalize(head.weight_base, dim=-1))
    # A tied head keeps its one gate for writing; only the erase becomes the constant.
    tied = NAMFewShotClassifier(4, 8, gate="tied")
    with torch.no_grad():
        tied.gate.net[2].weight.normal_()
    k = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    ab = fs.erase_ablation(tied, 0.5)
    p_w, p_e = ab.gates(k)
    torch.testing.assert_close(p_w, tied.gate(k))
    torch.testing.assert_close(p_e, torch.full((6,), 0.5))
    assert tied.gate_mode == "tied" and ab.write_mode == "sequential"
    assert fs.head_label("nam_tied_pe0.5") == "nam_tied, p_e fixed 0.5, sequential (ablation)"


@pytest.mark.parametrize("preset", ["quick", "medium", "paper"])
def test_presets_resolve(preset):
    from neural_attention_memory.training import resolve_config

    s1 = resolve_config(get_task(fs.STAGE1), preset)
    assert s1["model"]["name"] == "convnet" and s1["data"]["dataset"] == "glyphs"
    r12 = resolve_config(get_task(fs.STAGE1), preset, ["data.dataset=noto"], model="resnet12")
    assert r12["model"]["name"] == "resnet12" and len(r12["model"]["widths"]) == 4
    assert r12["data"]["noto"]["samples_per_class"] >= 20
    for head in fs.HEADS:
        cfg = resolve_config(get_task(fs.STAGE2), preset, ["data.k_shot=5"], model=head)
        assert cfg["model"]["name"] == head and cfg["data"]["k_shot"] == 5
        assert cfg["trainer"]["batch_size"] == 1  # one episode per step


def test_reproduce_on_an_omniglot_layout(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("NAM_DATA_DIR", str(tmp_path / "data"))
    root = tmp_path / "user-data" / "omniglot"  # --data-root user-data
    rng = np.random.default_rng(0)
    layout = {"images_background": ["A", "B"], "images_evaluation": ["C", "D", "E"]}
    for sub, alphabets in layout.items():
        for a in alphabets:
            for c in range(6):
                folder = root / sub / a / f"character{c + 1:02d}"
                folder.mkdir(parents=True)
                pattern = rng.random((6, 6)) > 0.5  # one shape per character, jittered below
                for i in range(20):
                    img = np.full((28, 28), 255, dtype=np.uint8)
                    big = np.kron(pattern, np.ones((4, 4), dtype=bool))
                    y, x = rng.integers(0, 4, size=2)
                    img[y : y + 24, x : x + 24][big] = 0
                    Image.fromarray(img).save(folder / f"{i}.png")
    tiny = tuple(o for o in TINY if "glyphs" not in o)
    with pytest.raises(ValueError, match="datasets"):
        fs.reproduce_fewshot("quick", tmp_path / "x", datasets=("miniimagenet",), overrides=tiny)
    report = fs.reproduce_fewshot(
        "quick",
        tmp_path / "out",
        shots=(1,),
        test_episodes=10,
        data_root=tmp_path / "user-data",
        datasets=("omniglot",),
        overrides=tiny,
    )
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(res["datasets"]) == ["omniglot"]
    # By default: the glyphs, plus the user sets found under the data root.
    plan = fs.plan_fewshot("quick", tmp_path / "x", data_root=tmp_path / "user-data")
    assert [d.name for d in plan.datasets] == ["glyphs", "omniglot"]
    assert res["datasets"]["omniglot"]["classes"] == {"base": 12, "val": 6, "novel": 12}
    assert "## omniglot" in report.read_text()


def test_reproduce_on_mini_imagenet_pickles(tmp_path, monkeypatch):
    import pickle

    monkeypatch.setenv("NAM_DATA_DIR", str(tmp_path / "data"))
    root = tmp_path / "mini"
    root.mkdir()
    rng = np.random.default_rng(1)
    for split, n_cls in (("train", 8), ("val", 6), ("test", 6)):
        colours = rng.integers(0, 256, size=(n_cls, 1, 1, 3))
        noise = rng.integers(0, 40, size=(n_cls * 30, 84, 84, 3))
        images = np.clip(np.repeat(colours, 30, axis=0) + noise, 0, 255).astype(np.uint8)
        class_dict = {f"{split}{c}": list(range(30 * c, 30 * c + 30)) for c in range(n_cls)}
        with open(root / f"mini-imagenet-cache-{split}.pkl", "wb") as fh:
            pickle.dump({"image_data": images, "class_dict": class_dict}, fh)
    # 2 base val images per class (5%): 10 base queries per validation episode.
    tiny = (*(o for o in TINY if "glyphs" not in o), "stage2:data.n_query_base=10")
    fs.reproduce_fewshot(
        "quick",
        tmp_path / "out",
        shots=(5,),
        test_episodes=10,
        miniimagenet=str(root),
        datasets=("miniimagenet",),
        overrides=tiny,
    )
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    ds = res["datasets"]["miniimagenet"]
    assert ds["classes"] == {"base": 8, "val": 6, "novel": 6}
    # The quick preset reads mini-ImageNet at 32 px (colour): features from a 3-channel ConvNet.
    net, cfg = fs.load_stage1(ds["stage1"]["run_dir"])
    assert cfg["data"]["image_size"] == 32 and net.backbone.config.in_channels == 3


def test_medium_preset_sizes():
    """The verdict preset: every head, fixed-erase ablations, 1,000 test episodes, ResNet-12 on
    Noto with 20 held-out images per base class (5 shots + 15 queries per fake-novel class)."""
    from neural_attention_memory.training import resolve_config

    d = fs.PRESET_DEFAULTS["medium"]
    assert d["heads"] == fs.HEADS and d["test_episodes"] == 1000
    assert 0.0 in d["ablate_erase"] and d["backbone"]["noto"] == "resnet12"
    s1 = resolve_config(get_task(fs.STAGE1), "medium", ["data.dataset=noto"], model="resnet12")
    noto = s1["data"]["noto"]
    assert noto["base_holdout"] >= 5 + 15
    assert (
        noto["samples_per_class"] - noto["base_val"] - noto["base_test"] - noto["base_holdout"]
        >= 10
    )
    s2 = resolve_config(get_task(fs.STAGE2), "medium", model="nam_tied")
    assert s2["data"]["n_query_novel"] == 15 and s2["data"]["n_way"] == 5


def test_reproduce_with_every_head_on_noto(tmp_path, monkeypatch):
    from neural_attention_memory.tasks import noto

    try:
        noto.find_noto_fonts()["NotoSansArmenian-Regular"]
    except (FileNotFoundError, KeyError):
        pytest.skip("Noto fonts not installed (apt-get install fonts-noto-core)")
    monkeypatch.setenv("NAM_DATA_DIR", str(tmp_path / "data"))
    tiny = (
        "stage1:+data.noto.scripts=[latin, greek, cyrillic, armenian, hebrew, thaana]",
        "stage1:data.noto.samples_per_class=16",
        "stage1:data.noto.base_holdout=6",
        "stage1:data.noto.image_size=16",
        "stage1:model.widths=[4, 8, 8, 8]",
        "stage1:trainer.max_epochs=1",
        "stage2:trainer.max_epochs=1",
        "stage2:data.train_episodes=6",
        "stage2:data.val_episodes=4",
        "stage2:data.n_query_base=10",
        "stage2:data.n_query_novel=1",
        "trainer.progress_bar=false",
    )
    out = tmp_path / "out"
    report = fs.reproduce_fewshot(
        "medium", out, test_episodes=8, overrides=tiny, datasets=("noto",)
    )
    res = json.loads((out / "results.json").read_text())
    ds = res["datasets"]["noto"]
    assert ds["stage1"]["backbone"] == "resnet12" and list(res["datasets"]) == ["noto"]
    setting = ds["settings"]["1shot"]
    expected = {*fs.HEADS, "nam_pe0", "nam_pe0.5", "nam_tied_pe0", "nam_tied_pe0.5"}
    assert set(setting["heads"]) == expected
    assert set(setting["minus_cosine"]) == expected - {"cosine"}
    assert set(setting["gates_on_novel"]) == {"nam", "nam_tied"}
    g = setting["gates_on_novel"]["nam_tied"]
    assert g["p_w"] == g["p_e"]  # one gate
    assert setting["heads"]["nam_tied_pe0"]["run_dir"].endswith("nam_tied_1shot")
    text = report.read_text()
    assert "| 5shot | nam_tied |" in text and "resnet12" in text
    assert "| 1shot | nam_tied, p_e fixed 0, sequential (ablation) |" in text
    # A given stage-1 run is reused as it is (no stage-1 training in the new folder).
    s1_dir = ds["stage1"]["run_dir"]
    again = tmp_path / "again"
    fs.reproduce_fewshot(
        "medium",
        again,
        shots=(1,),
        models=("cosine", "nam_tied"),
        test_episodes=4,
        overrides=tiny,
        datasets=("noto",),
        stage1_runs={"noto": s1_dir},
    )
    res2 = json.loads((again / "results.json").read_text())["datasets"]["noto"]
    assert res2["stage1"]["run_dir"] == s1_dir and not (again / "runs" / "noto" / "stage1").exists()
    assert set(res2["settings"]["1shot"]["heads"]) == {
        "cosine",
        "nam_tied",
        "nam_tied_pe0",
        "nam_tied_pe0.5",
    }
    from neural_attention_memory.training import ConfigError

    with pytest.raises(ConfigError, match="stage1_runs"):
        fs.reproduce_fewshot(
            "medium", tmp_path / "x", datasets=("glyphs",), stage1_runs={"glyphs": s1_dir}
        )


def test_cli_user_errors_write_nothing(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from neural_attention_memory.cli import app
    from neural_attention_memory.tasks import noto

    monkeypatch.setenv("NAM_NOTO_DIR", str(tmp_path / "no-fonts"))
    noto._find.cache_clear()
    runner = CliRunner()
    out = tmp_path / "out"
    cases = [
        (["--datasets", "noto"], "fonts-noto-core"),
        (["--datasets", "klingon"], "datasets"),
        (["--models", "nam,bogus"], "models"),
        (["--set", "optim.lr=abc"], "optim.lr: expected a float > 0, got 'abc'"),
        (["--set", "stage2:data.k_shot=0"], "data.k_shot: expected an integer >= 1, got 0"),
        (["--set", "data.k_shot=5"], "stage2:KEY=VALUE to one"),
        (
            ["--set", "stage2:model.erase=batch_mean", "--set", "stage2:model.write_mode=memorize"],
            "model.erase",
        ),
        (["--tasks", "fewshot_stage1"], "--tasks: the fewshot family does not take this option"),
        (["--data-root", str(tmp_path / "none")], "data_root: expected a folder"),
        (["--data-root", str(tmp_path)], "found neither"),
        (["--shots", "0"], "--shots"),
        (["--preset", "huge"], "--preset"),
    ]
    for extra, message in cases:
        res = runner.invoke(app, ["reproduce", "fewshot", "--out", str(out), *extra])
        assert res.exit_code == 2, (extra, res.output)
        assert message in res.output
        assert len(res.output.strip().splitlines()) == 1, res.output
        assert not out.exists()
    noto._find.cache_clear()


def test_cli_dry_run_lists_the_plan_and_writes_nothing(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from neural_attention_memory.cli import app

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["reproduce", "fewshot", "--shots", "5", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "3 runs into nam_runs/fewshot-quick" in res.output
    for run in ("stage1/fewshot_stage1/convnet", "stage2/fewshot_stage2/nam_5shot"):
        assert f"runs/glyphs/{run}" in res.output
    assert not any(tmp_path.iterdir())


def test_python_api_rejects_misspelled_options(tmp_path):
    with pytest.raises(TypeError, match="task"):
        fs.reproduce_fewshot("quick", tmp_path / "out", task=["x"])
    with pytest.raises(ValueError, match="stage1_runs"):
        fs.plan_fewshot("quick", tmp_path / "out", stage1_runs={"noto": tmp_path})
    assert not (tmp_path / "out").exists()


def test_plan_matches_the_run_folders_of_earlier_versions(tmp_path):
    """Run folders and stage-2 configs keep their layout, so older reproductions resume."""
    plan = fs.plan_fewshot("medium", tmp_path / "out", datasets=("glyphs",), shots=(1,))
    s1 = tmp_path / "out" / "runs" / "glyphs" / "stage1" / fs.STAGE1 / "convnet"
    dirs = [str(job_run_dir(j, tmp_path / "out")) for j in plan.jobs]
    assert dirs[0] == str(s1)
    stage2 = tmp_path / "out" / "runs" / "glyphs" / "stage2" / fs.STAGE2
    assert dirs[1:] == [str(stage2 / f"{h}_1shot") for h in fs.HEADS]
    assert plan.jobs[1].overrides[:2] == (f"data.stage1_run={s1.resolve()}", "data.k_shot=1")
