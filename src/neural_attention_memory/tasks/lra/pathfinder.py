"""Pathfinder (Linsley et al. 2018; LRA's image-reasoning task): our generator and an LRA reader.

Each image shows two marker dots and several dashed, smoothly curving contours on a black
background. The label is 1 when the two markers sit at the two ends of the same contour and 0 when
they sit at one end each of two different contours. Both classes draw the same things (two target
contours of ``contour_length`` dashes, the same distractors, two markers), so only the connectivity
tells them apart. Difficulty is the contour length (LRA: 6, 9, 14 dashes).

Geometry that makes the label checkable on the pixels: along a contour, consecutive dashes are at
most ``bridge`` pixels apart (Chebyshev distance), while different contours (markers included) are
kept at least ``bridge + 1`` pixels apart. So a flood fill that jumps gaps of up to ``bridge`` pixels
connects the markers exactly when the label is 1 (:func:`connected` and the tests check it).

Sizes scale from 32 px: dash 2 px, gap 1 px, lines 1 px, markers 3x3 px; x2 at 64 px, x4 at 128 px.

The LRA release layout read by :func:`read_pathfinder_release`::

    <root>/pathfinder32/curv_baseline/imgs/<batch>/sample_<i>.png
    <root>/pathfinder32/curv_baseline/metadata/<batch>.npy   # text lines: subdir file index label ...

with ``curv_contour_length_9`` and ``curv_contour_length_14`` for the harder levels.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DIFFICULTIES",
    "DIFFICULTY_DIRS",
    "PathfinderConfig",
    "connected",
    "generate_pathfinder",
    "read_pathfinder_release",
    "sample_pathfinder",
    "write_pathfinder_release",
]

DIFFICULTIES = {"easy": 6, "medium": 9, "hard": 14}
DIFFICULTY_DIRS = {
    "easy": "curv_baseline",
    "medium": "curv_contour_length_9",
    "hard": "curv_contour_length_14",
}
SIZES = (32, 64, 128)


@dataclass(frozen=True)
class PathfinderConfig:
    """Generator parameters.

    Attributes:
        size: image side in pixels (32, 64 or 128).
        contour_length: dashes per target contour (difficulty; LRA uses 6, 9, 14).
        num_distractors: extra contours without markers.
        distractor_length: dashes per distractor (default: half the contour length, at least 2).
        max_turn_deg: largest change of direction between consecutive dashes (curvature).
    """

    size: int = 32
    contour_length: int = 6
    num_distractors: int = 2
    distractor_length: int | None = None
    max_turn_deg: float = 30.0

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"size: expected one of {SIZES}, got {self.size!r}")
        if not 2 <= self.contour_length <= 30:
            raise ValueError(f"contour_length: expected 2..30 dashes, got {self.contour_length!r}")
        if not 0 <= self.num_distractors <= 20:
            raise ValueError(f"num_distractors: expected 0..20, got {self.num_distractors!r}")
        if self.distractor_length is not None and not 1 <= self.distractor_length <= 30:
            raise ValueError(
                f"distractor_length: expected None or 1..30, got {self.distractor_length!r}"
            )
        if not 0.0 <= self.max_turn_deg <= 90.0:
            raise ValueError(f"max_turn_deg: expected 0..90 degrees, got {self.max_turn_deg!r}")

    @classmethod
    def for_difficulty(cls, difficulty: str, size: int = 32, **kw) -> PathfinderConfig:
        if difficulty not in DIFFICULTIES:
            raise ValueError(
                f"difficulty: expected one of {tuple(DIFFICULTIES)}, got {difficulty!r}"
            )
        return cls(size=size, contour_length=DIFFICULTIES[difficulty], **kw)

    @property
    def scale(self) -> int:
        return self.size // 32

    @property
    def bridge(self) -> int:
        """Largest gap (Chebyshev pixels) the connectivity test jumps; dashes are closer than this."""
        return self.scale + 1

    def to_dict(self) -> dict:
        return asdict(self)


class _Failed(Exception):
    pass


def _stamp(points: np.ndarray, half: int, size: int) -> np.ndarray:
    """Integer pixels `[P, 2]` (may repeat) covered by squares of half-width ``half`` at ``points``."""
    p = np.rint(points).astype(np.int64)
    if half:
        off = np.arange(-half, half + 1)
        dy, dx = np.meshgrid(off, off, indexing="ij")
        p = (p[:, None, :] + np.stack([dy.ravel(), dx.ravel()], 1)[None]).reshape(-1, 2)
    if (p < 0).any() or (p >= size).any():
        raise _Failed
    return p


def _contour(
    rng: np.random.Generator, cfg: PathfinderConfig, n_dashes: int, forbidden: np.ndarray
) -> tuple[list, np.ndarray]:
    """A dashed curve that avoids ``forbidden`` pixels: per-dash pixel arrays and its ends `[2, 2]`.

    A smooth random walk: each dash turns by at most ``max_turn_deg`` from the previous one. Each
    step tries a few random turns that keep the dash inside the canvas (with room for a marker)
    and off ``forbidden``; when none fits, the walk backtracks (depth-first, bounded), so long
    contours fold inside small canvases instead of failing at the first dead end.
    """
    s = cfg.scale
    dash, gap = 2.0 * s, 1.5 * s
    half = (s - 1) // 2 if s > 1 else 0  # line thickness ~ scale
    margin = s + 1  # room for a marker blob at an end
    lo, hi = margin, cfg.size - 1 - margin
    max_turn = math.radians(cfg.max_turn_deg)
    t = np.linspace(0.0, 1.0, int(4 * dash) + 2)[:, None]
    for _ in range(20):
        start = rng.uniform(lo, hi, size=2)
        if not forbidden[tuple(np.rint(start).astype(int))]:
            break
    else:
        raise _Failed
    # path[i] = (pixels, end point, heading); frames[i] = untried headings for dash i.
    path: list[tuple[np.ndarray, np.ndarray, float]] = []
    frames = [list(rng.uniform(0, 2 * math.pi, 8))]
    budget = 40 * n_dashes
    while len(path) < n_dashes:
        if not frames[-1]:
            frames.pop()
            if not path or not frames:
                raise _Failed
            path.pop()
            continue
        budget -= 1
        if budget < 0:
            raise _Failed
        a = frames[-1].pop()
        if path:
            prev_pix, prev_end, prev_a = path[-1]
            pos = prev_end + gap * np.array([math.sin(prev_a), math.cos(prev_a)])
        else:
            prev_pix, pos = None, start
        end = pos + dash * np.array([math.sin(a), math.cos(a)])
        if not (lo <= end[0] <= hi and lo <= end[1] <= hi):
            continue
        pix = _stamp(pos + t * (end - pos), half, cfg.size)
        if forbidden[pix[:, 0], pix[:, 1]].any():
            continue
        # Rounding may open the gap too wide; the contour must stay bridgeable. Pixels run in
        # order along a dash, so the closest pair lies in the last / first quarter.
        q = max(1, len(pix) // 4)
        if prev_pix is not None and (
            np.abs(prev_pix[-q:, None, :] - pix[None, :q]).max(-1).min() > cfg.bridge
        ):
            continue
        path.append((pix, end, a))
        frames.append(list(a + rng.uniform(-max_turn, max_turn, 4)))
    return [p[0] for p in path], np.stack([start, path[-1][1]])


def _marker(point: np.ndarray, cfg: PathfinderConfig) -> np.ndarray:
    return _stamp(point[None], cfg.scale, cfg.size)  # (2 * scale + 1)^2 blob


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    S = mask.shape[0]
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            ys, yd = (
                (slice(0, S - dy), slice(dy, S)) if dy >= 0 else (slice(-dy, S), slice(0, S + dy))
            )
            xs, xd = (
                (slice(0, S - dx), slice(dx, S)) if dx >= 0 else (slice(-dx, S), slice(0, S + dx))
            )
            out[yd, xd] |= mask[ys, xs]
    return out


def sample_pathfinder(
    rng: np.random.Generator, cfg: PathfinderConfig, label: int, max_tries: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """One image with the given label.

    Returns:
        ``image`` `[size, size]` uint8 (0 background, 255 strokes) and ``markers`` `[2, 2]`
        (row, col of the two marker centres).
    """
    if label not in (0, 1):
        raise ValueError(f"label: expected 0 or 1, got {label!r}")
    d_len = cfg.distractor_length or max(2, cfg.contour_length // 2)
    lengths = [cfg.contour_length, cfg.contour_length] + [d_len] * cfg.num_distractors
    S = cfg.size
    for _ in range(max_tries):
        try:
            occupied = np.zeros((S, S), dtype=bool)
            forbidden = np.zeros((S, S), dtype=bool)
            markers = []
            for c, n in enumerate(lengths):
                for _attempt in range(100):
                    try:
                        dashes, ends = _contour(rng, cfg, n, forbidden)
                    except _Failed:
                        continue
                    pix = [*dashes]
                    marks = []
                    if c == 0:  # target contour A: both ends (label 1) or one end (label 0)
                        marks = [ends[0], ends[1]] if label == 1 else [ends[0]]
                    elif c == 1 and label == 0:  # contour B holds the second marker
                        marks = [ends[int(rng.integers(2))]]
                    try:
                        pix += [_marker(m, cfg) for m in marks]
                    except _Failed:
                        continue
                    pix = np.concatenate(pix)
                    if forbidden[pix[:, 0], pix[:, 1]].any():
                        continue
                    layer = np.zeros((S, S), dtype=bool)
                    layer[pix[:, 0], pix[:, 1]] = True
                    occupied |= layer
                    forbidden |= _dilate(layer, cfg.bridge)
                    markers += marks
                    break
                else:
                    raise _Failed
            image = np.where(occupied, 255, 0).astype(np.uint8)
            return image, np.rint(np.stack(markers)).astype(np.int64)
        except _Failed:
            continue
    raise RuntimeError(
        f"could not place the contours of {cfg} in {max_tries} tries; use fewer or shorter ones"
    )


def generate_pathfinder(
    n: int, seed: int, cfg: PathfinderConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images with balanced labels (exactly ``n // 2`` positives, shuffled).

    Returns:
        ``images`` `[n, size, size]` uint8 and ``labels`` `[n]` int64.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected a non-negative int, got {n!r}")
    cfg = cfg or PathfinderConfig()
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=np.int64)
    labels[: n // 2] = 1
    rng.shuffle(labels)
    images = np.zeros((n, cfg.size, cfg.size), dtype=np.uint8)
    for i, y in enumerate(labels):
        images[i] = sample_pathfinder(rng, cfg, int(y))[0]
    return images, labels


def connected(image: np.ndarray, a: tuple[int, int], b: tuple[int, int], bridge: int) -> bool:
    """Whether stroke pixels ``a`` and ``b`` are joined by a chain of stroke pixels whose steps are
    at most ``bridge`` pixels (Chebyshev), i.e. a flood fill that jumps the dash gaps."""
    on = np.asarray(image) > 0
    if not (on[tuple(a)] and on[tuple(b)]):
        return False
    S0, S1 = on.shape
    seen = np.zeros_like(on)
    seen[tuple(a)] = True
    stack = [tuple(a)]
    while stack:
        y, x = stack.pop()
        if (y, x) == tuple(b):
            return True
        y0, y1, x0, x1 = (
            max(0, y - bridge),
            min(S0, y + bridge + 1),
            max(0, x - bridge),
            min(S1, x + bridge + 1),
        )
        nb = on[y0:y1, x0:x1] & ~seen[y0:y1, x0:x1]
        for dy, dx in zip(*np.nonzero(nb), strict=True):
            p = (y0 + int(dy), x0 + int(dx))
            seen[p] = True
            stack.append(p)
    return False


def write_pathfinder_release(
    root: str | os.PathLike[str],
    images: np.ndarray,
    labels: np.ndarray,
    difficulty: str = "easy",
    per_batch: int = 1000,
) -> Path:
    """Write images in the LRA release layout (PNG files + text metadata); returns the level folder."""
    from PIL import Image

    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2] or images.dtype != np.uint8:
        raise ValueError(f"images: expected uint8 [N, S, S], got {images.dtype} {images.shape}")
    if difficulty not in DIFFICULTY_DIRS:
        raise ValueError(
            f"difficulty: expected one of {tuple(DIFFICULTY_DIRS)}, got {difficulty!r}"
        )
    level = Path(root) / f"pathfinder{images.shape[1]}" / DIFFICULTY_DIRS[difficulty]
    (level / "metadata").mkdir(parents=True, exist_ok=True)
    for start in range(0, len(images), per_batch):
        batch = start // per_batch
        (level / "imgs" / str(batch)).mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(start, min(start + per_batch, len(images))):
            name = f"sample_{i - start}.png"
            Image.fromarray(images[i], mode="L").save(level / "imgs" / str(batch) / name)
            lines.append(f"imgs/{batch} {name} {i - start} {int(labels[i])}")
        (level / "metadata" / f"{batch}.npy").write_text("\n".join(lines) + "\n")
    return level


def read_pathfinder_release(
    root: str | os.PathLike[str], size: int = 32, difficulty: str = "easy", limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read the LRA Pathfinder release (see the module docstring for the layout).

    ``root`` is the folder that holds ``pathfinder<size>/`` (e.g. ``lra_release/``). Metadata
    files are text lines ``<subdir> <file> <index> <label> ...`` (named ``*.npy`` in the release).

    Returns:
        ``images`` `[N, size, size]` uint8 and ``labels`` `[N]` int64, in metadata order.
    """
    from PIL import Image

    if difficulty not in DIFFICULTY_DIRS:
        raise ValueError(
            f"difficulty: expected one of {tuple(DIFFICULTY_DIRS)}, got {difficulty!r}"
        )
    level = Path(root) / f"pathfinder{size}" / DIFFICULTY_DIRS[difficulty]
    meta_dir = level / "metadata"
    metas = (
        sorted(meta_dir.glob("*.npy"), key=lambda p: (len(p.stem), p.stem))
        if meta_dir.is_dir()
        else []
    )
    if not metas:
        raise FileNotFoundError(
            f"Pathfinder release not found: expected metadata files {meta_dir}/<n>.npy and images "
            f"{level}/imgs/<n>/sample_<i>.png (unpack LRA's lra_release so that "
            f"'{root}/pathfinder{size}/{DIFFICULTY_DIRS[difficulty]}' exists), or use the generator "
            "(task lra-pathfinder32 generates its data)."
        )
    images, labels = [], []
    for meta in metas:
        for lineno, line in enumerate(meta.read_text().splitlines(), start=1):
            f = line.split()
            if not f:
                continue
            if len(f) < 4:
                raise ValueError(
                    f"{meta}:{lineno}: expected '<subdir> <file> <index> <label> ...', got {line!r}"
                )
            path = level / f[0] / f[1]
            if not path.is_file():
                raise FileNotFoundError(
                    f"{meta}:{lineno}: image {path} listed in the metadata is missing"
                )
            img = np.asarray(Image.open(path).convert("L"), dtype=np.uint8)
            if img.shape != (size, size):
                raise ValueError(f"{path}: expected a {size}x{size} image, got {img.shape}")
            try:
                label = int(float(f[3]))
            except ValueError:
                raise ValueError(
                    f"{meta}:{lineno}: expected an integer label, got {f[3]!r}"
                ) from None
            if label not in (0, 1):
                raise ValueError(f"{meta}:{lineno}: expected label 0 or 1, got {label}")
            images.append(img)
            labels.append(label)
            if limit is not None and len(images) >= limit:
                return np.stack(images), np.asarray(labels, dtype=np.int64)
    return np.stack(images), np.asarray(labels, dtype=np.int64)
