"""Pathfinder: labels checked by a connectivity test on the pixels, balance, release layout."""

from collections import deque

import numpy as np
import pytest

from neural_attention_memory.tasks.lra import (
    PathfinderConfig,
    connected,
    generate_pathfinder,
    pathfinder_splits,
    read_pathfinder_release,
    sample_pathfinder,
    write_pathfinder_release,
)


def _flood(image: np.ndarray, start, bridge: int) -> np.ndarray:
    """Breadth-first flood fill over stroke pixels with steps of up to ``bridge`` pixels."""
    on = image > 0
    seen = np.zeros_like(on)
    seen[start] = True
    q = deque([start])
    S = on.shape[0]
    while q:
        y, x = q.popleft()
        for dy in range(-bridge, bridge + 1):
            for dx in range(-bridge, bridge + 1):
                p = (y + dy, x + dx)
                if 0 <= p[0] < S and 0 <= p[1] < S and on[p] and not seen[p]:
                    seen[p] = True
                    q.append(p)
    return seen


@pytest.mark.parametrize(
    "cfg",
    [
        PathfinderConfig(size=32, contour_length=6),
        PathfinderConfig(size=32, contour_length=9, num_distractors=3),
        PathfinderConfig(size=64, contour_length=9),
        PathfinderConfig.for_difficulty("hard", size=64),
    ],
)
def test_labels_agree_with_connectivity(cfg: PathfinderConfig) -> None:
    rng = np.random.default_rng(0)
    for i in range(16):
        label = i % 2
        image, markers = sample_pathfinder(rng, cfg, label)
        assert image.shape == (cfg.size, cfg.size) and image.dtype == np.uint8
        a, b = (tuple(int(v) for v in m) for m in markers)
        reach = _flood(image, a, cfg.bridge)
        assert bool(reach[b]) == bool(label)
        assert connected(image, a, b, cfg.bridge) == bool(label)
        # Markers are solid blobs on strokes.
        s = cfg.scale
        for y, x in (a, b):
            assert (image[y - s : y + s + 1, x - s : x + s + 1] == 255).all()


def test_negative_images_stay_disconnected_at_the_dash_gap_scale() -> None:
    # The gaps inside a contour are bridged at `bridge`; a smaller jump leaves dashes apart,
    # which shows that the contours really are dashed.
    cfg = PathfinderConfig(size=32, contour_length=6)
    rng = np.random.default_rng(1)
    broken = 0
    for _ in range(10):
        image, m = sample_pathfinder(rng, cfg, 1)
        a, b = (tuple(int(v) for v in p) for p in m)
        broken += not connected(image, a, b, 1)
    assert broken >= 5


def test_balanced_seeded_and_validated() -> None:
    cfg = PathfinderConfig(size=32, contour_length=6)
    images, labels = generate_pathfinder(20, seed=5, cfg=cfg)
    assert images.shape == (20, 32, 32) and labels.sum() == 10
    images2, labels2 = generate_pathfinder(20, seed=5, cfg=cfg)
    assert np.array_equal(images, images2) and np.array_equal(labels, labels2)
    # Both classes draw the same amount of ink on average (no pixel-count shortcut).
    ink = (images > 0).sum((1, 2))
    assert abs(ink[labels == 1].mean() - ink[labels == 0].mean()) < 0.25 * ink.mean()
    with pytest.raises(ValueError, match="size"):
        PathfinderConfig(size=48)
    with pytest.raises(ValueError, match="difficulty"):
        PathfinderConfig.for_difficulty("extreme")
    with pytest.raises(ValueError, match="label"):
        sample_pathfinder(np.random.default_rng(0), cfg, 2)
    assert PathfinderConfig.for_difficulty("hard", size=64).contour_length == 14


def test_release_layout_round_trip_and_errors(tmp_path) -> None:
    images, labels = generate_pathfinder(7, seed=0, cfg=PathfinderConfig(size=32))
    level = write_pathfinder_release(tmp_path, images, labels, "easy", per_batch=4)
    assert (level / "imgs" / "1" / "sample_2.png").is_file()
    first = (level / "metadata" / "0.npy").read_text().splitlines()[0].split()
    assert first[:2] == ["imgs/0", "sample_0.png"] and first[3] == str(labels[0])
    got_images, got_labels = read_pathfinder_release(tmp_path, 32, "easy")
    assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)
    assert len(read_pathfinder_release(tmp_path, 32, "easy", limit=3)[0]) == 3
    with pytest.raises(FileNotFoundError, match="curv_contour_length_14"):
        read_pathfinder_release(tmp_path, 32, "hard")
    (level / "imgs" / "1" / "sample_0.png").unlink()
    with pytest.raises(FileNotFoundError, match="sample_0.png"):
        read_pathfinder_release(tmp_path, 32, "easy")
    (level / "metadata" / "0.npy").write_text("imgs/0 sample_0.png\n")
    with pytest.raises(ValueError, match="expected '<subdir>"):
        read_pathfinder_release(tmp_path, 32, "easy")


def test_cached_splits_are_pixel_tokens(tmp_path) -> None:
    cfg = PathfinderConfig(size=32)
    splits = pathfinder_splits(cfg, {"train": 6, "test": 4}, seed=0, root=tmp_path)
    x = splits["train"][0]
    assert (
        x["tokens"].shape == (1024,)
        and 0 <= int(x["tokens"].min())
        and int(x["tokens"].max()) == 255
    )
    assert sorted(int(splits["test"][i]["label"]) for i in range(4)) == [0, 0, 1, 1]
