"""Glyph data set: determinism by seed, distinct classes, fixed disjoint splits, cache reuse."""

import numpy as np
import pytest

from neural_attention_memory.tasks.glyphs import (
    FONT_FILES,
    font_dir,
    glyph_classes,
    load_glyphs,
    render_glyph,
)

SMALL = dict(
    image_size=16,
    samples_per_class=6,
    scripts=("digits", "greek"),
    base_val=1,
    base_test=2,
    base_holdout=1,
)


def test_fonts_present():
    for f in FONT_FILES:
        assert (font_dir() / f).is_file(), f


def test_classes_distinct_and_deduplicated():
    classes = glyph_classes(("latin", "greek", "cyrillic"))
    chars = [c for c, _, _ in classes]
    assert len(set(chars)) == len(chars)
    # Latin A is kept; Greek Alpha and Cyrillic A look the same and are dropped.
    assert "A" in chars and "\u0391" not in chars and "\u0410" not in chars
    # Shapes that differ across scripts stay (Greek lambda, Cyrillic zhe).
    assert "\u03bb" in chars and "\u0436" in chars
    with pytest.raises(ValueError, match="scripts"):
        glyph_classes(("klingon",))


def test_render_glyph_deterministic_by_rng():
    path = font_dir() / "DejaVuSans.ttf"
    a = render_glyph("g", path, 32, np.random.default_rng(5))
    b = render_glyph("g", path, 32, np.random.default_rng(5))
    c = render_glyph("g", path, 32, np.random.default_rng(6))
    assert a.dtype == np.uint8 and a.shape == (32, 32)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.max() > 128  # the glyph is drawn
    with pytest.raises(ValueError, match="char"):
        render_glyph("ab", path)


def test_load_glyphs_determinism_splits_and_cache(tmp_path):
    d1 = load_glyphs(seed=3, root=tmp_path / "a", **SMALL)
    d2 = load_glyphs(seed=3, root=tmp_path / "b", **SMALL)
    d3 = load_glyphs(seed=4, root=tmp_path / "a", **SMALL)
    assert np.array_equal(d1.images, d2.images) and np.array_equal(d1.labels, d2.labels)
    assert not np.array_equal(d1.images, d3.images)
    # The class split is fixed (split_seed), not tied to the sample seed.
    for s in ("base", "val", "novel"):
        assert np.array_equal(d1.class_split[s], d3.class_split[s])
    assert d1.images.shape == (len(d1.labels), 1, 16, 16)
    all_ids = np.concatenate([d1.class_split[s] for s in ("base", "val", "novel")])
    assert sorted(all_ids.tolist()) == list(range(d1.num_classes))
    assert len(d1.class_split["base"]) == round(0.6 * d1.num_classes)
    # Base samples: 2 train, 1 val, 2 test, 1 holdout per class; others are -1.
    for c in d1.class_split["base"]:
        sub = d1.base_subset[d1.labels == c]
        assert np.bincount(sub, minlength=4).tolist() == [2, 1, 2, 1]
    non_base = ~np.isin(d1.labels, d1.class_split["base"])
    assert (d1.base_subset[non_base] == -1).all()
    subsets = [set(d1.indices("base", s).tolist()) for s in ("train", "val", "test", "holdout")]
    assert sum(len(x) for x in subsets) == len(set().union(*subsets))  # pairwise disjoint
    # Cached: a second load reads the same folder without rebuilding it.
    folder = tmp_path / "a" / "glyphs"
    mtimes = {p: p.stat().st_mtime_ns for p in folder.rglob("*.npz")}
    again = load_glyphs(seed=3, root=tmp_path / "a", **SMALL)
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.npz")} == mtimes
    assert np.array_equal(again.images, d1.images)


def test_load_glyphs_validation(tmp_path):
    with pytest.raises(ValueError, match="split_fractions"):
        load_glyphs(root=tmp_path, **{**SMALL, "split_fractions": (0.5, 0.5, 0.5)})
    with pytest.raises(ValueError, match="base_val, base_test, base_holdout"):
        load_glyphs(root=tmp_path, **{**SMALL, "base_test": 6})
    with pytest.raises(ValueError, match="samples_per_class"):
        load_glyphs(root=tmp_path, **{**SMALL, "samples_per_class": 1})
