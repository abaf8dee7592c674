"""A many-class image data set rendered offline from the DejaVu fonts that matplotlib ships.

Classes are characters across scripts (Latin, digits, Greek, Cyrillic, Armenian, Georgian, ...);
samples are font and style variants (12 DejaVu Sans / Serif / Sans Mono faces: regular, bold,
oblique, bold-oblique) with random affine jitter (rotation, shear, scale, shift), stroke-width
changes and additive noise. Characters that render identically to an earlier one (Latin ``A``,
Greek ``Α`` and Cyrillic ``А``, ...) are dropped, so no two classes share a shape.

The class split (base / val / novel) is drawn once from ``split_seed`` and does not depend on the
sample ``seed``; base-class samples are further split into train / val / test. The rendered set is
cached with :func:`~neural_attention_memory.tasks.cache.cached_dataset` (manifest + atomic build).
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .cache import cached_dataset
from .episodes import SPLITS, FewShotImages

__all__ = [
    "FONT_FILES",
    "GLYPH_VERSION",
    "SCRIPTS",
    "augment",
    "glyph_classes",
    "load_glyphs",
    "render_glyph",
]

GLYPH_VERSION = "2"

# Inclusive code point ranges per script.
SCRIPTS: dict[str, tuple[tuple[int, int], ...]] = {
    "latin": ((0x41, 0x5A), (0x61, 0x7A)),
    "digits": ((0x30, 0x39),),
    "greek": ((0x391, 0x3A9), (0x3B1, 0x3C9)),
    "cyrillic": ((0x410, 0x44F),),
    "armenian": ((0x531, 0x556), (0x561, 0x586)),
    "georgian": ((0x10D0, 0x10FA),),
    "arrows": ((0x2190, 0x21FF),),
}
DEFAULT_SCRIPTS = ("latin", "digits", "greek", "cyrillic", "armenian", "georgian")

FONT_FILES = tuple(
    f"DejaVu{family}{style}.ttf"
    for family in ("Sans", "Serif", "SansMono")
    for style in (
        ("", "-Bold", "-Oblique", "-BoldOblique")
        if family != "Serif"
        else ("", "-Bold", "-Italic", "-BoldItalic")
    )
)
_CANVAS = 64  # render at 64 px, then downsample: smooth edges at the final size
_MIN_FONTS = 8  # a character must exist in at least this many of the 12 faces


def font_dir() -> Path:
    """The folder of TrueType fonts bundled with matplotlib."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _font(path: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def render_glyph(
    char: str,
    font_path: str | os.PathLike[str],
    size: int = 32,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Render one character as a `[size, size]` uint8 image (white glyph on black).

    With ``rng`` the sample is jittered (font size, stroke width, rotation, shear, scale, shift,
    noise); without it the rendering is clean and centred (used to find duplicate shapes).
    """
    from PIL import Image, ImageDraw

    if not isinstance(char, str) or len(char) != 1:
        raise ValueError(f"char: expected a single character, got {char!r}")
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size: expected an int >= 8, got {size!r}")
    jitter = rng is not None
    font_px = round(_CANVAS * (rng.uniform(0.5, 0.65) if jitter else 0.58))
    # Bold faces are already heavy: a wide stroke on top would fill their counters.
    max_stroke = 1 if "Bold" in Path(font_path).name else 2
    stroke = int(rng.integers(0, max_stroke + 1)) if jitter else 0
    img = Image.new("L", (_CANVAS, _CANVAS), 0)
    ImageDraw.Draw(img).text(
        (_CANVAS / 2, _CANVAS / 2),
        char,
        fill=255,
        font=_font(str(font_path), font_px),
        anchor="mm",
        stroke_width=stroke,
        stroke_fill=255,
    )
    return augment(img, size, rng)


def augment(img, size: int, rng: np.random.Generator | None):
    """Random affine jitter (rotation, shear, scale, shift), downsampling and noise.

    ``img`` is a square PIL ``L`` canvas with the glyph drawn about its centre; returns a
    `[size, size]` uint8 array. Without ``rng`` it only downsamples (a clean rendering).
    """
    from PIL import Image

    side = img.size[0]
    if rng is not None:
        angle = np.deg2rad(rng.uniform(-15, 15))
        shear = rng.uniform(-0.25, 0.25)
        scale = rng.uniform(0.8, 1.1)
        tx, ty = rng.uniform(-5, 5, size=2) * (side / _CANVAS)
        # Inverse map (output -> input) about the canvas centre, as PIL's AFFINE expects.
        c, s = np.cos(angle), np.sin(angle)
        fwd = scale * np.array([[c, -s + shear * c], [s, c + shear * s]])
        inv = np.linalg.inv(fwd)
        ctr = np.array([side / 2, side / 2])
        off = ctr - inv @ (ctr + np.array([tx, ty]))
        img = img.transform(
            img.size,
            Image.Transform.AFFINE,
            (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1]),
            resample=Image.Resampling.BILINEAR,
        )
    img = img.resize((size, size), Image.Resampling.BOX)
    out = np.asarray(img, dtype=np.float32)
    if rng is not None:
        out = out + rng.normal(0.0, rng.uniform(0.0, 30.0), size=out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def glyph_classes(scripts: Sequence[str] = DEFAULT_SCRIPTS) -> list[tuple[str, str, list[str]]]:
    """The distinct characters of ``scripts``: ``[(char, script, font files that have it), ...]``.

    Kept in script then code point order; a character is dropped when it is missing from more than
    4 of the 12 faces, renders empty, or renders (clean, regular Sans) like an earlier character.
    """
    from matplotlib.ft2font import FT2Font

    unknown = [s for s in scripts if s not in SCRIPTS]
    if unknown or not scripts:
        raise ValueError(
            f"scripts: expected a non-empty subset of {sorted(SCRIPTS)}, got {scripts!r}"
        )
    fdir = font_dir()
    charmaps = {f: set(FT2Font(str(fdir / f)).get_charmap()) for f in FONT_FILES}
    regular = str(fdir / "DejaVuSans.ttf")
    kept: list[tuple[str, str, list[str]]] = []
    shapes: list[np.ndarray] = []
    for script in scripts:
        for lo, hi in SCRIPTS[script]:
            for cp in range(lo, hi + 1):
                ch = chr(cp)
                if unicodedata.category(ch)[0] not in "LNS":
                    continue
                fonts = [f for f in FONT_FILES if cp in charmaps[f]]
                if len(fonts) < _MIN_FONTS or "DejaVuSans.ttf" not in fonts:
                    continue
                shape = render_glyph(ch, regular, 24).astype(np.float32) / 255.0
                if shape.sum() < 2.0:
                    continue
                if shapes and np.abs(np.stack(shapes) - shape).mean(axis=(1, 2)).min() < 0.01:
                    continue
                shapes.append(shape)
                kept.append((ch, script, fonts))
    return kept


def _build(
    folder: Path,
    *,
    seed: int,
    image_size: int,
    samples_per_class: int,
    scripts: Sequence[str],
    split_fractions: Sequence[float],
    split_seed: int,
    base_val: int,
    base_test: int,
    base_holdout: int,
) -> dict[str, int]:
    classes = glyph_classes(scripts)
    n_cls = len(classes)
    perm = np.random.default_rng(split_seed).permutation(n_cls)
    n_base = round(split_fractions[0] * n_cls)
    n_val = round(split_fractions[1] * n_cls)
    split_of = np.empty(n_cls, dtype=object)
    split_of[perm[:n_base]] = "base"
    split_of[perm[n_base : n_base + n_val]] = "val"
    split_of[perm[n_base + n_val :]] = "novel"
    fdir = font_dir()
    images = np.empty((n_cls * samples_per_class, image_size, image_size), dtype=np.uint8)
    labels = np.repeat(np.arange(n_cls, dtype=np.int64), samples_per_class)
    subset = np.full(len(labels), -1, dtype=np.int8)
    for c, (ch, _script, fonts) in enumerate(classes):
        rng = np.random.default_rng([seed, c])  # per class: independent of the other classes
        for j in range(samples_per_class):
            font = fonts[int(rng.integers(len(fonts)))]
            images[c * samples_per_class + j] = render_glyph(ch, fdir / font, image_size, rng)
        if split_of[c] == "base":
            subset[c * samples_per_class : (c + 1) * samples_per_class] = base_subsets(
                samples_per_class, base_val, base_test, base_holdout
            )
    np.savez_compressed(folder / "glyphs.npz", images=images, labels=labels, base_subset=subset)
    meta = {
        "classes": [
            {"char": ch, "codepoint": f"U+{ord(ch):04X}", "script": sc, "split": str(split_of[c])}
            for c, (ch, sc, _f) in enumerate(classes)
        ]
    }
    (folder / "classes.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1))
    counts = {s: int((split_of == s).sum()) for s in SPLITS}
    counts["images"] = len(labels)
    return counts


def base_subsets(n: int, val: int, test: int, holdout: int) -> np.ndarray:
    """Subset codes `[n]` int8 of one base class's samples, in order: train | val | test | holdout."""
    ends = np.cumsum([val, test, holdout])
    sub = np.zeros(n, dtype=np.int8)
    first = n - int(ends[-1])
    for code, (lo, hi) in enumerate(zip([0, *ends[:-1]], ends, strict=True), start=1):
        sub[first + int(lo) : first + int(hi)] = code
    return sub


def check_split_args(
    samples_per_class: object,
    image_size: object,
    split_fractions: Sequence[float],
    base_val: int,
    base_test: int,
    base_holdout: int,
) -> tuple[float, ...]:
    """Validate the arguments shared by the glyph loaders; returns the split fractions."""
    if not isinstance(samples_per_class, int) or samples_per_class < 2:
        raise ValueError(f"samples_per_class: expected an int >= 2, got {samples_per_class!r}")
    if not isinstance(image_size, int) or image_size < 16:
        raise ValueError(f"image_size: expected an int >= 16, got {image_size!r}")
    fr = tuple(float(f) for f in split_fractions)
    if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(
            f"split_fractions: expected 3 non-negative fractions summing to 1, got {fr}"
        )
    held = (base_val, base_test, base_holdout)
    if min(held) < 0 or sum(held) >= samples_per_class:
        raise ValueError(
            f"base_val, base_test, base_holdout: expected non-negative and < samples_per_class "
            f"({samples_per_class}) together, got {held}"
        )
    return fr


def load_glyphs(
    seed: int = 0,
    image_size: int = 32,
    samples_per_class: int = 60,
    scripts: Sequence[str] = DEFAULT_SCRIPTS,
    split_fractions: Sequence[float] = (0.6, 0.15, 0.25),
    split_seed: int = 1234,
    base_val: int = 5,
    base_test: int = 15,
    base_holdout: int = 0,
    root: str | os.PathLike[str] | None = None,
    source: str = "dejavu",
    **noto: Any,
) -> FewShotImages:
    """Render (or load from the cache) the glyph data set.

    ``source="dejavu"`` (default): the DejaVu glyphs described above. ``source="noto"``: the
    Omniglot-like Noto script set, split by script
    (:func:`~neural_attention_memory.tasks.noto.load_noto`; ``scripts`` then names scripts of
    :data:`~neural_attention_memory.tasks.noto.NOTO_SCRIPTS`, all by default, and extra keyword
    arguments such as ``min_faces`` go to it).

    Args:
        seed: sample seed (the same seed gives the same images).
        image_size: side of the square grey images.
        samples_per_class: rendered variants per character.
        scripts: names from :data:`SCRIPTS`.
        split_fractions: fractions of classes in base / val / novel (sum to 1).
        split_seed: seed of the class split (fixed by default).
        base_val, base_test: per base class, samples held out for validation and for base queries.
        base_holdout: per base class, samples held out of stage 1 for stage-2 episodes.
        root: cache root (default ``$NAM_DATA_DIR`` or ``~/.cache/neural_attention_memory``).
        source: ``"dejavu"`` or ``"noto"``.
    """
    if source == "noto":
        from .noto import load_noto

        return load_noto(
            seed=seed,
            image_size=image_size,
            samples_per_class=samples_per_class,
            scripts=None if scripts is DEFAULT_SCRIPTS else scripts,
            split_fractions=split_fractions,
            split_seed=split_seed,
            base_val=base_val,
            base_test=base_test,
            base_holdout=base_holdout,
            root=root,
            **noto,
        )
    if source != "dejavu":
        raise ValueError(f"source: expected 'dejavu' or 'noto', got {source!r}")
    if noto:
        raise TypeError(f"load_glyphs: {sorted(noto)} apply to source='noto' only")
    fr = check_split_args(
        samples_per_class, image_size, split_fractions, base_val, base_test, base_holdout
    )
    scripts = tuple(scripts)
    params = {
        "seed": int(seed),
        "image_size": image_size,
        "samples_per_class": samples_per_class,
        "scripts": list(scripts),
        "split_fractions": list(fr),
        "split_seed": int(split_seed),
        "base_val": int(base_val),
        "base_test": int(base_test),
        "base_holdout": int(base_holdout),
    }
    folder = cached_dataset(
        "glyphs",
        GLYPH_VERSION,
        params,
        lambda f: _build(
            f,
            seed=int(seed),
            image_size=image_size,
            samples_per_class=samples_per_class,
            scripts=scripts,
            split_fractions=fr,
            split_seed=int(split_seed),
            base_val=int(base_val),
            base_test=int(base_test),
            base_holdout=int(base_holdout),
        ),
        root=root,
    )
    with np.load(folder / "glyphs.npz") as z:
        images, labels, subset = z["images"], z["labels"], z["base_subset"]
    meta = json.loads((folder / "classes.json").read_text())["classes"]
    split = np.array([m["split"] for m in meta])
    return FewShotImages(
        images=images[:, None],
        labels=labels,
        class_names=[f"{m['char']} ({m['codepoint']}, {m['script']})" for m in meta],
        class_split={s: np.flatnonzero(split == s).astype(np.int64) for s in SPLITS},
        base_subset=subset,
        name="glyphs",
        meta={"folder": str(folder), "params": params},
    )
