"""An Omniglot-like data set rendered offline from the installed Noto fonts (``fonts-noto-core``).

Classes are the letters and digits of about forty writing systems (Armenian, Bengali, Cherokee,
Georgian, Javanese, Ol Chiki, Tibetan, ...), drawn by the Noto type designers; samples are the
character in each of its faces (regular / bold weights of the script's sans and serif designs,
plus italic and display faces for Latin, Greek and Cyrillic) with the glyph data set's random
affine, stroke-width and noise augmentation. Like Omniglot, the class split is **by script**:
base, val and novel classes come from disjoint alphabets, so novel classes at test time belong to
scripts the backbone never saw.

Every character is size-normalised before augmentation (its ink box is scaled to a fixed
fraction of the canvas), because scripts differ widely in their em-box usage. Characters whose
normalised shape matches an earlier one (Latin ``o`` and ``O``, Armenian ``օ``, Cyrillic ``А``
and Latin ``A``, ...) are dropped, so no two classes share a shape. Only scripts whose letters
are at most :data:`MAX_LETTERS` and that have at least ``min_faces`` faces are used: large
syllabaries and logographies (Yi, Ethiopic, Tangut, Cuneiform, ...) would dominate the classes.

Nothing is downloaded: the fonts are found in the usual system folders (or ``$NAM_NOTO_DIR``);
when they are missing the error names the package and its install command.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from .cache import cached_dataset
from .episodes import SPLITS, FewShotImages

__all__ = [
    "NOTO_PACKAGE",
    "NOTO_SCRIPTS",
    "NOTO_VERSION",
    "find_noto_fonts",
    "load_noto",
    "noto_classes",
    "render_noto_glyph",
]

NOTO_VERSION = "1"
NOTO_PACKAGE = "fonts-noto-core"
INSTALL_HINT = (
    f"install the Noto fonts (Debian/Ubuntu: `sudo apt-get install {NOTO_PACKAGE}`; "
    "Fedora: `sudo dnf install google-noto-sans-fonts google-noto-serif-fonts` plus the script "
    "packages) or set NAM_NOTO_DIR to a folder holding the Noto*.ttf files"
)

_SANS, _SERIF = "NotoSans", "NotoSerif"
_LGC = (_SANS, _SERIF, "NotoSansDisplay", "NotoSerifDisplay")

#: Script name -> (Unicode character-name prefix or explicit code point ranges, font families).
#: A character belongs to a script when its Unicode name starts with the prefix (or its code
#: point is in one of the ranges), it is a letter or a decimal digit, and the script's fonts
#: have it. The first family is the script's primary design (used to detect duplicates).
NOTO_SCRIPTS: dict[str, tuple[str | tuple[tuple[int, int], ...], tuple[str, ...]]] = {
    "adlam": ("ADLAM ", ("NotoSansAdlam",)),
    "arabic": (((0x0620, 0x064A),), ("NotoSansArabic", "NotoNaskhArabic", "NotoKufiArabic")),
    "armenian": ("ARMENIAN ", ("NotoSansArmenian", "NotoSerifArmenian")),
    "balinese": ("BALINESE ", ("NotoSansBalinese", "NotoSerifBalinese")),
    "bengali": ("BENGALI ", ("NotoSansBengali", "NotoSerifBengali")),
    "cham": ("CHAM ", ("NotoSansCham",)),
    "cherokee": ("CHEROKEE ", ("NotoSansCherokee",)),
    "cyrillic": (((0x0410, 0x044F),), _LGC),
    "devanagari": ("DEVANAGARI ", ("NotoSansDevanagari", "NotoSerifDevanagari")),
    "georgian": ("GEORGIAN ", ("NotoSansGeorgian", "NotoSerifGeorgian")),
    "grantha": ("GRANTHA ", ("NotoSansGrantha", "NotoSerifGrantha")),
    "greek": (((0x0391, 0x03A9), (0x03B1, 0x03C9)), _LGC),
    "gujarati": ("GUJARATI ", ("NotoSansGujarati", "NotoSerifGujarati")),
    "gurmukhi": ("GURMUKHI ", ("NotoSansGurmukhi", "NotoSerifGurmukhi")),
    "hanifi_rohingya": ("HANIFI ROHINGYA ", ("NotoSansHanifiRohingya",)),
    "hebrew": ("HEBREW ", ("NotoSansHebrew", "NotoSerifHebrew")),
    "javanese": ("JAVANESE ", ("NotoSansJavanese",)),
    "kannada": ("KANNADA ", ("NotoSansKannada", "NotoSerifKannada")),
    "kayah_li": ("KAYAH LI ", ("NotoSansKayahLi",)),
    "khmer": ("KHMER ", ("NotoSansKhmer", "NotoSerifKhmer")),
    "khojki": ("KHOJKI ", ("NotoSansKhojki", "NotoSerifKhojki")),
    "lao": ("LAO ", ("NotoSansLao", "NotoSerifLao", "NotoLoopedLao")),
    "latin": (((0x0030, 0x0039), (0x0041, 0x005A), (0x0061, 0x007A)), _LGC),
    "lisu": ("LISU ", ("NotoSansLisu",)),
    "malayalam": ("MALAYALAM ", ("NotoSansMalayalam", "NotoSerifMalayalam")),
    "medefaidrin": ("MEDEFAIDRIN ", ("NotoSansMedefaidrin",)),
    "meetei_mayek": ("MEETEI MAYEK ", ("NotoSansMeeteiMayek",)),
    "myanmar": ("MYANMAR ", ("NotoSansMyanmar", "NotoSerifMyanmar")),
    "nyiakeng_puachue_hmong": ("NYIAKENG PUACHUE HMONG ", ("NotoSerifNyiakengPuachueHmong",)),
    "ol_chiki": ("OL CHIKI ", ("NotoSansOlChiki",)),
    "oriya": ("ORIYA ", ("NotoSansOriya",)),
    "sinhala": ("SINHALA ", ("NotoSansSinhala", "NotoSerifSinhala")),
    "sora_sompeng": ("SORA SOMPENG ", ("NotoSansSoraSompeng",)),
    "sundanese": ("SUNDANESE ", ("NotoSansSundanese",)),
    "tai_tham": ("TAI THAM ", ("NotoSansTaiTham",)),
    "tamil": ("TAMIL ", ("NotoSansTamil", "NotoSerifTamil", "NotoSerifTamilSlanted")),
    "telugu": ("TELUGU ", ("NotoSansTelugu", "NotoSerifTelugu")),
    "thaana": ("THAANA ", ("NotoSansThaana",)),
    "thai": ("THAI ", ("NotoSansThai", "NotoSerifThai", "NotoLoopedThai")),
    "tibetan": ("TIBETAN ", ("NotoSerifTibetan",)),
    "yezidi": ("YEZIDI ", ("NotoSerifYezidi",)),
}
MAX_LETTERS = 200  # a script with more letters than this is left out (none in the table above)
_CATEGORIES = ("Lu", "Ll", "Lt", "Lo", "Nd")  # letters and decimal digits (no marks, no modifiers)
_CANVAS = 64
_RENDER_PX = 48  # font size of the first rendering, before the ink box is normalised
_DUP_SIZE = 24
# Mean |difference| of normalised clean renders (in [0, 1]) below which two characters are the
# same shape: 0.01 catches identical designs (Latin H / Cyrillic Н, Tamil digit one / letter ka)
# but keeps letters that differ by a small stroke or dot (Tibetan ga / ka at 0.012).
_DUP_THRESHOLD = 0.01
_CASE_THRESHOLD = 0.05


def _font_dirs() -> list[Path]:
    env = os.environ.get("NAM_NOTO_DIR")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    home = Path.home()
    return [
        Path("/usr/share/fonts"),
        Path("/usr/local/share/fonts"),
        home / ".local" / "share" / "fonts",
        home / ".fonts",
        Path("/Library/Fonts"),
        home / "Library" / "Fonts",
        Path("C:/Windows/Fonts"),
    ]


@lru_cache(maxsize=4)
def _find(dirs: tuple[Path, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        for path in sorted(d.rglob("Noto*.[to]tf")):
            found.setdefault(path.stem, path)  # first folder wins; .otf after .ttf of one name
    return found


def find_noto_fonts() -> dict[str, Path]:
    """Installed Noto faces: ``{"NotoSansArmenian-Bold": path, ...}`` (static .ttf/.otf files).

    Looks in ``$NAM_NOTO_DIR`` (``os.pathsep``-separated) when set, else in the system and user
    font folders. Raises ``FileNotFoundError`` naming the package to install when none is found.
    """
    dirs = tuple(_font_dirs())
    found = _find(dirs)
    if not found:
        raise FileNotFoundError(
            f"Noto fonts: none found in {', '.join(str(d) for d in dirs)}; {INSTALL_HINT}"
        )
    return found


def script_faces(script: str, fonts: dict[str, Path]) -> list[str]:
    """The installed faces of ``script``'s font families, primary family first."""
    _sel, families = NOTO_SCRIPTS[script]
    faces = []
    for fam in families:
        faces += sorted(
            (f for f in fonts if f.split("-", 1)[0] == fam),
            key=lambda f: (f.split("-", 1)[1] != "Regular", f),  # Regular first
        )
    return faces


@lru_cache(maxsize=512)
def _font(path: str):
    from PIL import ImageFont

    # BASIC layout: one character needs no shaping, and the output must not depend on whether
    # PIL was built with libraqm.
    return ImageFont.truetype(path, _RENDER_PX, layout_engine=ImageFont.Layout.BASIC)


def _ink(char: str, font_path: str, stroke: int):
    """The character drawn large, cropped to its ink box (a PIL ``L`` image, or None if empty)."""
    from PIL import Image, ImageDraw

    side = 4 * _RENDER_PX
    img = Image.new("L", (side, side), 0)
    ImageDraw.Draw(img).text(
        (side / 2, side / 2),
        char,
        fill=255,
        font=_font(str(font_path)),
        anchor="mm",
        stroke_width=stroke,
        stroke_fill=255,
    )
    box = img.getbbox()
    return None if box is None else img.crop(box)


def render_noto_glyph(
    char: str,
    font_path: str | os.PathLike[str],
    size: int = 32,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Render one character as a `[size, size]` uint8 image (white glyph on black).

    The ink box is scaled so its longer side is a fixed fraction of the image (0.68; 0.55-0.8 with
    ``rng``), then, with ``rng``, the glyph data set's augmentation follows (stroke width,
    rotation, shear, scale, shift, noise). Without ``rng`` the rendering is clean and centred.
    """
    from PIL import Image

    from .glyphs import augment

    if not isinstance(char, str) or len(char) != 1:
        raise ValueError(f"char: expected a single character, got {char!r}")
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size: expected an int >= 8, got {size!r}")
    jitter = rng is not None
    max_stroke = 1 if "Bold" in Path(font_path).name else 2
    stroke = int(rng.integers(0, max_stroke + 1)) if jitter else 0
    frac = rng.uniform(0.55, 0.8) if jitter else 0.68
    canvas = Image.new("L", (_CANVAS, _CANVAS), 0)
    ink = _ink(char, str(font_path), stroke)
    if ink is not None:
        w, h = ink.size
        f = frac * _CANVAS / max(w, h)
        nw, nh = max(1, round(w * f)), max(1, round(h * f))
        ink = ink.resize((nw, nh), Image.Resampling.BOX if f < 1 else Image.Resampling.BILINEAR)
        canvas.paste(ink, ((_CANVAS - nw) // 2, (_CANVAS - nh) // 2))
    return augment(canvas, size, rng)


def _in_script(script: str, cp: int) -> bool:
    sel, _fam = NOTO_SCRIPTS[script]
    ch = chr(cp)
    if unicodedata.category(ch) not in _CATEGORIES:
        return False
    # Composed and compatibility forms (Hebrew presentation forms, nukta letters) are a base
    # letter plus a mark, not letters of their own.
    if unicodedata.normalize("NFKC", ch) != ch:
        return False
    if isinstance(sel, str):
        return unicodedata.name(ch, "").startswith(sel)
    return any(lo <= cp <= hi for lo, hi in sel)


@lru_cache(maxsize=256)
def _charmap(path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(path).get_charmap())


def noto_classes(
    scripts: Sequence[str] | None = None, min_faces: int = 2
) -> list[tuple[str, str, list[str]]]:
    """The distinct characters of ``scripts``: ``[(char, script, face names that have it), ...]``.

    Scripts in the order given (all of :data:`NOTO_SCRIPTS`, alphabetically, by default), code
    point order within a script. A character is kept when it is a letter or decimal digit of the
    script, is in the primary face and in at least ``min_faces`` installed faces, draws some ink,
    and its normalised clean shape differs from every character kept before it (and clearly
    from its case partner). A script with
    fewer than ``min_faces`` installed faces, or more than :data:`MAX_LETTERS` letters, is
    skipped; raises ``FileNotFoundError`` when no requested script is installed.
    """
    names = tuple(NOTO_SCRIPTS) if scripts is None else tuple(scripts)
    unknown = [s for s in names if s not in NOTO_SCRIPTS]
    if unknown or not names:
        raise ValueError(
            f"scripts: expected a non-empty subset of {sorted(NOTO_SCRIPTS)}, got {scripts!r}"
        )
    if not isinstance(min_faces, int) or min_faces < 1:
        raise ValueError(f"min_faces: expected an int >= 1, got {min_faces!r}")
    fonts = find_noto_fonts()
    kept: list[tuple[str, str, list[str]]] = []
    index: dict[str, int] = {}
    shapes = np.zeros((0, _DUP_SIZE * _DUP_SIZE), dtype=np.float32)
    for script in names:
        faces = script_faces(script, fonts)
        if len(faces) < min_faces:
            continue
        cmaps = {f: _charmap(str(fonts[f])) for f in faces}
        cps = sorted(cp for cp in set().union(*cmaps.values()) if _in_script(script, cp))
        if len(cps) > MAX_LETTERS:
            continue
        for cp in cps:
            have = [f for f in faces if cp in cmaps[f]]
            if len(have) < min_faces or have[0] != faces[0]:
                continue
            ch = chr(cp)
            shape = render_noto_glyph(ch, fonts[faces[0]], _DUP_SIZE).astype(np.float32) / 255.0
            if shape.sum() < 2.0:
                continue
            flat = shape.reshape(1, -1)
            if len(shapes):
                dist = np.abs(shapes - flat).mean(axis=1)
                if dist.min() < _DUP_THRESHOLD:
                    continue
                # A case partner (Latin ``c`` / ``C``, Cherokee small / capital letters) differs
                # only in size, which the normalisation removes: a looser match suffices.
                partners = [index[p] for p in {ch.upper(), ch.lower()} - {ch} if p in index]
                if partners and dist[partners].min() < _CASE_THRESHOLD:
                    continue
            index[ch] = len(kept)
            shapes = np.concatenate([shapes, flat])
            kept.append((ch, script, have))
    if not kept:
        raise FileNotFoundError(
            f"Noto fonts: none of the scripts {list(names)} has {min_faces} installed face(s); "
            f"{INSTALL_HINT}"
        )
    return kept


def split_scripts(counts: dict[str, int], fractions: Sequence[float], seed: int) -> dict[str, str]:
    """Assign whole scripts to base / val / novel: ``{script: split}``.

    Scripts are shuffled with ``seed`` and taken in turn into base until it holds
    ``fractions[0]`` of the classes, then into val until base + val hold
    ``fractions[0] + fractions[1]``; the rest are novel. Each split gets at least one script.
    """
    names = sorted(counts)
    if len(names) < 3:
        raise ValueError(f"scripts: expected at least 3 scripts to split, got {names}")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    total = sum(counts.values())
    bounds = (fractions[0] * total, (fractions[0] + fractions[1]) * total)
    out, acc = {}, 0
    for i, s in enumerate(order):
        left = len(order) - i
        placed = set(out.values())
        if "base" not in placed or (acc < bounds[0] and left > 2):
            split = "base"
        elif "val" not in placed or (acc < bounds[1] and left > 1):
            split = "val"
        else:
            split = "novel"
        out[s] = split
        acc += counts[s]
    return out


def _build(
    folder: Path,
    *,
    seed: int,
    image_size: int,
    samples_per_class: int,
    scripts: Sequence[str] | None,
    min_faces: int,
    split_fractions: Sequence[float],
    split_seed: int,
    base_val: int,
    base_test: int,
    base_holdout: int,
) -> dict[str, int]:
    from .glyphs import base_subsets

    fonts = find_noto_fonts()
    classes = noto_classes(scripts, min_faces)
    per_script: dict[str, int] = {}
    for _ch, sc, _f in classes:
        per_script[sc] = per_script.get(sc, 0) + 1
    script_split = split_scripts(per_script, split_fractions, split_seed)
    split_of = np.array([script_split[sc] for _ch, sc, _f in classes], dtype=object)
    n_cls = len(classes)
    images = np.empty((n_cls * samples_per_class, image_size, image_size), dtype=np.uint8)
    labels = np.repeat(np.arange(n_cls, dtype=np.int64), samples_per_class)
    subset = np.full(len(labels), -1, dtype=np.int8)
    held = (base_val, base_test, base_holdout)
    for c, (ch, _script, faces) in enumerate(classes):
        rng = np.random.default_rng([seed, c])  # per class: independent of the other classes
        # Every face equally often (then shuffled), so each class shows all its styles.
        order = rng.permutation(np.resize(np.arange(len(faces)), samples_per_class))
        for j in range(samples_per_class):
            path = fonts[faces[int(order[j])]]
            images[c * samples_per_class + j] = render_noto_glyph(ch, path, image_size, rng)
        if split_of[c] == "base":
            subset[c * samples_per_class : (c + 1) * samples_per_class] = base_subsets(
                samples_per_class, *held
            )
    np.savez_compressed(folder / "glyphs.npz", images=images, labels=labels, base_subset=subset)
    meta = {
        "classes": [
            {
                "char": ch,
                "codepoint": f"U+{ord(ch):04X}",
                "script": sc,
                "split": str(split_of[c]),
                "faces": faces,
            }
            for c, (ch, sc, faces) in enumerate(classes)
        ],
        "scripts": {s: {"classes": per_script[s], "split": script_split[s]} for s in per_script},
    }
    (folder / "classes.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1))
    counts = {s: int((split_of == s).sum()) for s in SPLITS}
    counts.update({f"{s}_scripts": sum(v == s for v in script_split.values()) for s in SPLITS})
    counts["images"] = len(labels)
    return counts


def _face_key(fonts: dict[str, Path], scripts: Sequence[str] | None) -> list[list]:
    """Name and size of every face the data set can use: the cache key follows the installed fonts."""
    names = tuple(NOTO_SCRIPTS) if scripts is None else tuple(scripts)
    faces = sorted({f for s in names if s in NOTO_SCRIPTS for f in script_faces(s, fonts)})
    return [[f, fonts[f].stat().st_size] for f in faces]


def load_noto(
    seed: int = 0,
    image_size: int = 32,
    samples_per_class: int = 20,
    scripts: Sequence[str] | None = None,
    min_faces: int = 2,
    split_fractions: Sequence[float] = (0.6, 0.15, 0.25),
    split_seed: int = 1234,
    base_val: int = 2,
    base_test: int = 4,
    base_holdout: int = 4,
    root: str | os.PathLike[str] | None = None,
) -> FewShotImages:
    """Render (or load from the cache) the Noto script data set (see the module docstring).

    Args: as :func:`~neural_attention_memory.tasks.glyphs.load_glyphs`, plus ``min_faces`` (a
    character must exist in at least this many installed faces of its script); ``scripts`` are
    names from :data:`NOTO_SCRIPTS` (all by default) and ``split_fractions`` are the fractions of
    *classes* in base / val / novel, met as closely as whole scripts allow.
    """
    from .glyphs import check_split_args

    fr = check_split_args(
        samples_per_class, image_size, split_fractions, base_val, base_test, base_holdout
    )
    if scripts is not None:
        scripts = tuple(scripts)
        unknown = [s for s in scripts if s not in NOTO_SCRIPTS]
        if unknown or len(scripts) < 3:
            raise ValueError(
                f"scripts: expected at least 3 names from {sorted(NOTO_SCRIPTS)}, got {scripts!r}"
            )
    if not isinstance(min_faces, int) or min_faces < 1:
        raise ValueError(f"min_faces: expected an int >= 1, got {min_faces!r}")
    fonts = find_noto_fonts()
    params = {
        "seed": int(seed),
        "image_size": image_size,
        "samples_per_class": samples_per_class,
        "scripts": None if scripts is None else list(scripts),
        "min_faces": min_faces,
        "split_fractions": list(fr),
        "split_seed": int(split_seed),
        "base_val": int(base_val),
        "base_test": int(base_test),
        "base_holdout": int(base_holdout),
        "fonts": _face_key(fonts, scripts),
    }
    folder = cached_dataset(
        "noto",
        NOTO_VERSION,
        params,
        lambda f: _build(
            f,
            seed=int(seed),
            image_size=image_size,
            samples_per_class=samples_per_class,
            scripts=scripts,
            min_faces=min_faces,
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
    meta = json.loads((folder / "classes.json").read_text())
    classes = meta["classes"]
    split = np.array([m["split"] for m in classes])
    return FewShotImages(
        images=images[:, None],
        labels=labels,
        class_names=[f"{m['char']} ({m['codepoint']}, {m['script']})" for m in classes],
        class_split={s: np.flatnonzero(split == s).astype(np.int64) for s in SPLITS},
        base_subset=subset,
        name="noto",
        meta={"folder": str(folder), "params": params, "scripts": meta["scripts"]},
    )
