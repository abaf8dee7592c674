"""Noto script data set: font discovery, class rules, split by script, determinism, cache reuse."""

import numpy as np
import pytest

from neural_attention_memory.tasks import noto
from neural_attention_memory.tasks.glyphs import load_glyphs


def _have_noto() -> bool:
    try:
        return "NotoSansArmenian-Regular" in noto.find_noto_fonts()
    except FileNotFoundError:
        return False


needs_noto = pytest.mark.skipif(
    not _have_noto(), reason="Noto fonts not installed (apt-get install fonts-noto-core)"
)
SCRIPTS = ("latin", "greek", "cyrillic", "armenian", "hebrew", "thaana")
SMALL = dict(image_size=16, samples_per_class=5, base_val=1, base_test=1, base_holdout=1)


def test_missing_fonts_name_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("NAM_NOTO_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="apt-get install fonts-noto-core"):
        noto.find_noto_fonts()
    with pytest.raises(FileNotFoundError, match="fonts-noto-core"):
        load_glyphs(source="noto", root=tmp_path / "data")
    # A folder with only some scripts: the others are skipped, an empty selection is an error.
    (tmp_path / "NotoSansThaana-Regular.ttf").write_bytes(b"")
    noto._find.cache_clear()
    with pytest.raises(FileNotFoundError, match="fonts-noto-core"):
        noto.noto_classes(("armenian", "latin"))


def test_split_scripts():
    counts = {f"s{i}": n for i, n in enumerate([40, 10, 70, 30, 55, 25, 60, 45, 35, 50])}
    a = noto.split_scripts(counts, (0.6, 0.15, 0.25), seed=3)
    assert a == noto.split_scripts(counts, (0.6, 0.15, 0.25), seed=3)
    assert set(a) == set(counts) and set(a.values()) == {"base", "val", "novel"}
    total = sum(counts.values())
    frac = {s: sum(counts[k] for k, v in a.items() if v == s) / total for s in ("base", "val")}
    assert 0.6 <= frac["base"] <= 0.6 + 70 / total  # base stops once it holds 60% of classes
    assert frac["val"] > 0
    # Three scripts: one per split, whatever the fractions.
    three = noto.split_scripts({"a": 100, "b": 1, "c": 1}, (0.9, 0.05, 0.05), seed=0)
    assert sorted(three.values()) == ["base", "novel", "val"]
    with pytest.raises(ValueError, match="at least 3 scripts"):
        noto.split_scripts({"a": 1, "b": 2}, (0.6, 0.2, 0.2), seed=0)


@needs_noto
def test_classes_rules():
    classes = noto.noto_classes(("latin", "greek", "cyrillic", "armenian"))
    chars = [c for c, _, _ in classes]
    assert len(set(chars)) == len(chars)
    assert all(len(faces) >= 2 for _, _, faces in classes)
    # Identical designs across scripts are dropped (the first script listed keeps them).
    assert "H" in chars and "\u041d" not in chars  # Cyrillic EN looks like Latin H
    assert "A" in chars and "\u0391" not in chars and "\u0410" not in chars
    assert "\u0421" not in chars  # Cyrillic ES is Latin C
    # Case partners that differ only in size: one class.
    assert ("o" in chars) != ("O" in chars)
    # Distinct shapes stay.
    assert {"\u03bb", "\u0416", "\u0531"} <= set(chars)  # Greek lambda, Cyrillic Zhe, Armenian Ayb
    assert all(noto.unicodedata.category(c) in ("Lu", "Ll", "Lt", "Lo", "Nd") for c in chars)
    with pytest.raises(ValueError, match="scripts"):
        noto.noto_classes(("klingon",))
    with pytest.raises(ValueError, match="min_faces"):
        noto.noto_classes(("latin",), min_faces=0)
    # Only one design installed for Thaana (sans, two weights): min_faces 3 skips it.
    with pytest.raises(FileNotFoundError, match="min_faces|face"):
        noto.noto_classes(("thaana",), min_faces=3)


@needs_noto
def test_render_deterministic_and_normalised():
    fonts = noto.find_noto_fonts()
    path = fonts["NotoSansArmenian-Regular"]
    a = noto.render_noto_glyph("\u0531", path, 32, np.random.default_rng(5))
    b = noto.render_noto_glyph("\u0531", path, 32, np.random.default_rng(5))
    c = noto.render_noto_glyph("\u0531", path, 32, np.random.default_rng(6))
    assert a.dtype == np.uint8 and a.shape == (32, 32)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # Clean renders fill the same fraction of the image whatever the script's em box usage.
    for name, ch in (("NotoSans-Regular", "x"), ("NotoSerifTibetan-Regular", "\u0f40")):
        img = noto.render_noto_glyph(ch, fonts[name], 64)
        ys, xs = np.nonzero(img > 64)
        assert max(np.ptp(ys), np.ptp(xs)) + 1 == pytest.approx(0.68 * 64, abs=3)
    with pytest.raises(ValueError, match="char"):
        noto.render_noto_glyph("ab", path)


@needs_noto
def test_load_noto_split_by_script_determinism_and_cache(tmp_path):
    d1 = load_glyphs(source="noto", seed=3, scripts=SCRIPTS, root=tmp_path / "a", **SMALL)
    d2 = load_glyphs(source="noto", seed=3, scripts=SCRIPTS, root=tmp_path / "b", **SMALL)
    d3 = load_glyphs(source="noto", seed=4, scripts=SCRIPTS, root=tmp_path / "a", **SMALL)
    assert d1.name == "noto" and d1.images.shape == (len(d1.labels), 1, 16, 16)
    assert np.array_equal(d1.images, d2.images) and np.array_equal(d1.labels, d2.labels)
    assert not np.array_equal(d1.images, d3.images)
    script_of = [n.rsplit(", ", 1)[1].rstrip(")") for n in d1.class_names]
    by_split = {s: {script_of[c] for c in d1.class_split[s]} for s in ("base", "val", "novel")}
    assert all(by_split.values())
    assert not (by_split["base"] & by_split["val"] or by_split["base"] & by_split["novel"])
    assert not by_split["val"] & by_split["novel"]
    assert set().union(*by_split.values()) == set(SCRIPTS)
    assert {s: m["split"] for s, m in d1.meta["scripts"].items()} == {
        s: next(k for k, v in by_split.items() if s in v) for s in SCRIPTS
    }
    for s in ("base", "val", "novel"):  # fixed by split_seed, not by the sample seed
        assert np.array_equal(d1.class_split[s], d3.class_split[s])
    for c in d1.class_split["base"]:
        assert np.bincount(d1.base_subset[d1.labels == c], minlength=4).tolist() == [2, 1, 1, 1]
    assert (d1.base_subset[~np.isin(d1.labels, d1.class_split["base"])] == -1).all()
    # Cached with a manifest that records the fonts it was built from.
    folder = next((tmp_path / "a" / "noto").glob("*/manifest.json")).parent
    manifest = noto.json.loads((folder / "manifest.json").read_text())
    assert [
        "NotoSansArmenian-Regular",
        noto.find_noto_fonts()["NotoSansArmenian-Regular"].stat().st_size,
    ] in manifest["params"]["fonts"]
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "a" / "noto").rglob("*.npz")}
    again = load_glyphs(source="noto", seed=3, scripts=SCRIPTS, root=tmp_path / "a", **SMALL)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "a" / "noto").rglob("*.npz")} == mtimes
    assert np.array_equal(again.images, d1.images)


def test_load_glyphs_source_validation(tmp_path):
    with pytest.raises(ValueError, match="source"):
        load_glyphs(source="comic-sans", root=tmp_path)
    with pytest.raises(TypeError, match="min_faces"):
        load_glyphs(min_faces=2, root=tmp_path)
    with pytest.raises(ValueError, match="scripts"):
        load_glyphs(source="noto", scripts=("latin", "klingon", "greek"), root=tmp_path)
