"""Readers for few-shot data sets that users already have on disk (nothing is downloaded).

- **mini-ImageNet** (:func:`load_mini_imagenet`), in any of three widely used layouts under one
  folder: the ``mini-imagenet-cache-{train,val,test}.pkl`` pickles (``image_data`` `[n, 84, 84, 3]`
  + ``class_dict``); the ``miniImageNet_category_split_*.pickle`` files of Gidaris & Komodakis
  (``data`` + ``labels``, with ``train_phase_{train,val,test}`` giving the base classes' held-out
  images); or an image folder ``{train,val,test}/<class>/<image>``.
- **Omniglot** (:func:`load_omniglot`): the ``images_background`` / ``images_evaluation`` folders
  of ``<alphabet>/<character>/<png>``. Background characters are the base classes; evaluation
  alphabets are split (sorted, deterministic) into val and novel alphabets.

All return :class:`~neural_attention_memory.tasks.episodes.FewShotImages` with ``train`` -> base,
``val`` -> val, ``test`` -> novel classes; when a layout has no held-out base images, the last
images of every base class (in file order) become its ``val`` / ``test`` subsets. Folder layouts
are decoded once and cached with :func:`~neural_attention_memory.tasks.cache.cached_dataset`.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .cache import cached_dataset
from .episodes import SPLITS, FewShotImages

__all__ = ["IMAGE_SUFFIXES", "load_mini_imagenet", "load_omniglot"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_L2L = "mini-imagenet-cache-{}.pkl"
_GIDARIS = "miniImageNet_category_split_{}.pickle"
_READER_VERSION = "1"


def _check_root(root: str | os.PathLike[str] | None, what: str) -> Path:
    if root is None or str(root) == "":
        raise ValueError(f"root: expected the folder holding {what}, got {root!r}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"root: {what} not found: {path} is not a folder")
    return path


def _load_pickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        try:
            return pickle.load(fh)
        except UnicodeDecodeError:  # the Gidaris pickles were written by Python 2
            fh.seek(0)
            return pickle.load(fh, encoding="latin1")


def _holdout(
    labels: np.ndarray, classes: np.ndarray, val_frac: float, test_frac: float
) -> np.ndarray:
    """``base_subset``: per base class the last images (file order) become val, then test."""
    subset = np.full(len(labels), -1, dtype=np.int8)
    for c in classes:
        idx = np.flatnonzero(labels == c)
        n = len(idx)
        n_test = max(1, round(test_frac * n)) if n >= 3 else 0
        n_val = max(1, round(val_frac * n)) if n >= 3 else 0
        sub = np.zeros(n, dtype=np.int8)
        sub[n - n_test - n_val : n - n_test] = 1
        sub[n - n_test :] = 2
        subset[idx] = sub
    return subset


def _resize(images: np.ndarray, size: int | None) -> np.ndarray:
    """`[n, H, W, C]` or `[n, H, W]` uint8 -> `[n, C, size, size]` uint8."""
    from PIL import Image

    if images.ndim == 3:
        images = images[..., None]
    if size is not None and images.shape[1:3] != (size, size):
        mode = "L" if images.shape[3] == 1 else "RGB"
        out = np.empty((len(images), size, size, images.shape[3]), dtype=np.uint8)
        for i, im in enumerate(images):
            pil = Image.fromarray(im[..., 0] if mode == "L" else im, mode)
            arr = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR))
            out[i] = arr[..., None] if mode == "L" else arr
        images = out
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _assemble(
    parts: Sequence[tuple[str, np.ndarray, list[str]]],
    name: str,
    image_size: int | None,
    val_frac: float,
    test_frac: float,
    base_subsets: np.ndarray | None = None,
) -> FewShotImages:
    """``parts``: (split, images, per-image class name) -> one FewShotImages."""
    class_names: list[str] = []
    cid: dict[str, int] = {}
    images, labels, split_of = [], [], {}
    for split, imgs, names in parts:
        for n in names:
            if n not in cid:
                cid[n] = len(class_names)
                class_names.append(n)
                split_of[cid[n]] = split
            elif split_of[cid[n]] != split:
                raise ValueError(f"class {n!r} appears in both {split_of[cid[n]]!r} and {split!r}")
        images.append(_resize(imgs, image_size))
        labels.append(np.array([cid[n] for n in names], dtype=np.int64))
    if len({im.shape[1:] for im in images}) > 1:
        raise ValueError(
            f"image_size: images of different sizes {sorted({im.shape[1:] for im in images})}; "
            "pass image_size to resize them"
        )
    all_labels = np.concatenate(labels)
    class_split = {
        s: np.array(sorted(c for c, sp in split_of.items() if sp == s), dtype=np.int64)
        for s in SPLITS
    }
    subset = (
        base_subsets
        if base_subsets is not None
        else _holdout(all_labels, class_split["base"], val_frac, test_frac)
    )
    return FewShotImages(
        images=np.concatenate(images),
        labels=all_labels,
        class_names=class_names,
        class_split=class_split,
        base_subset=subset,
        name=name,
    )


def _l2l(root: Path, image_size: int | None, val_frac: float, test_frac: float) -> FewShotImages:
    parts = []
    for file_split, split in (("train", "base"), ("val", "val"), ("test", "novel")):
        blob = _load_pickle(root / _L2L.format(file_split))
        if "image_data" not in blob or "class_dict" not in blob:
            raise ValueError(
                f"{_L2L.format(file_split)}: expected keys 'image_data' and 'class_dict', "
                f"got {sorted(blob)}"
            )
        data = np.asarray(blob["image_data"], dtype=np.uint8)
        names = [""] * len(data)
        for cls, idx in blob["class_dict"].items():
            for i in idx:
                names[int(i)] = str(cls)
        if any(n == "" for n in names):
            raise ValueError(f"{_L2L.format(file_split)}: some images belong to no class")
        parts.append((split, data, names))
    return _assemble(parts, "miniimagenet", image_size, val_frac, test_frac)


def _gidaris(root: Path, image_size: int | None) -> FewShotImages:
    files = [
        ("train_phase_train", "base", 0),
        ("train_phase_val", "base", 1),
        ("train_phase_test", "base", 2),
        ("val", "val", -1),
        ("test", "novel", -1),
    ]
    parts, subsets = [], []
    for file_split, split, sub in files:
        path = root / _GIDARIS.format(file_split)
        if not path.is_file():
            raise FileNotFoundError(f"root: expected {path.name} beside the other Gidaris pickles")
        blob = _load_pickle(path)
        if "data" not in blob or "labels" not in blob:
            raise ValueError(f"{path.name}: expected keys 'data' and 'labels', got {sorted(blob)}")
        data = np.asarray(blob["data"], dtype=np.uint8)
        names = [f"{split}:{int(y)}" for y in blob["labels"]]
        parts.append((split, data, names))
        subsets.append(np.full(len(data), sub, dtype=np.int8))
    return _assemble(parts, "miniimagenet", image_size, 0, 0, base_subsets=np.concatenate(subsets))


def _list_class_folders(folder: Path) -> list[tuple[str, list[Path]]]:
    out = []
    for cls in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(f for f in cls.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            out.append((cls.name, files))
    return out


def _read_images(files: Sequence[Path], mode: str, size: int | None) -> np.ndarray:
    from PIL import Image

    arrs = []
    for f in files:
        with Image.open(f) as im:
            im = im.convert(mode)
            if size is not None:
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            arrs.append(np.asarray(im, dtype=np.uint8))
    return np.stack(arrs)


def _cached_folder(name: str, root: Path, params: dict, build) -> Path:
    """The decoded-images cache of the folder ``root``, keyed by its files (names, sizes, mtimes):
    adding, changing or deleting an image rebuilds it."""
    return cached_dataset(
        name, _READER_VERSION, {"root": str(root.resolve()), **params}, build, sources=[root]
    )


def _from_npz(folder: Path, name: str) -> FewShotImages:
    with np.load(folder / "data.npz", allow_pickle=False) as z:
        class_split = {s: z[f"split_{s}"] for s in SPLITS}
        return FewShotImages(
            images=z["images"],
            labels=z["labels"],
            class_names=[str(n) for n in z["class_names"]],
            class_split=class_split,
            base_subset=z["base_subset"],
            name=name,
        )


def _to_npz(folder: Path, d: FewShotImages) -> dict[str, int]:
    np.savez(
        folder / "data.npz",
        images=d.images,
        labels=d.labels,
        class_names=np.array(d.class_names),
        base_subset=d.base_subset,
        **{f"split_{s}": d.class_split[s] for s in SPLITS},
    )
    return {s: len(d.class_split[s]) for s in SPLITS} | {"images": len(d.labels)}


def load_mini_imagenet(
    root: str | os.PathLike[str],
    image_size: int | None = None,
    val_frac: float = 0.05,
    test_frac: float = 0.1,
) -> FewShotImages:
    """mini-ImageNet from ``root`` (pickles or image folder; see the module docstring).

    Args:
        root: the folder holding the files.
        image_size: resize to ``image_size`` square (``None``: keep; folder layouts need it or
            84 is used).
        val_frac, test_frac: per base class, fraction of images held out for validation / base
            queries when the layout has no held-out base images.
    Raises:
        FileNotFoundError: ``root`` is missing or holds none of the known layouts.
    """
    path = _check_root(root, "mini-ImageNet")
    if all((path / _L2L.format(s)).is_file() for s in ("train", "val", "test")):
        return _l2l(path, image_size, val_frac, test_frac)
    if (path / _GIDARIS.format("train_phase_train")).is_file():
        return _gidaris(path, image_size)
    if all((path / s).is_dir() for s in ("train", "val", "test")):
        size = image_size or 84

        def build(folder: Path) -> dict[str, int]:
            parts = []
            for file_split, split in (("train", "base"), ("val", "val"), ("test", "novel")):
                classes = _list_class_folders(path / file_split)
                if not classes:
                    raise FileNotFoundError(
                        f"root: no <class>/<image> folders in {path / file_split}"
                    )
                files = [f for _, fs in classes for f in fs]
                names = [c for c, fs in classes for _ in fs]
                parts.append((split, _read_images(files, "RGB", size), names))
            return _to_npz(folder, _assemble(parts, "miniimagenet", size, val_frac, test_frac))

        params = {"size": size, "val_frac": val_frac, "test_frac": test_frac}
        return _from_npz(_cached_folder("miniimagenet", path, params, build), "miniimagenet")
    raise FileNotFoundError(
        f"root: no mini-ImageNet found in {path}; expected {_L2L.format('{train,val,test}')}, "
        f"{_GIDARIS.format('*')} files, or train/, val/, test/ folders of <class>/<image>"
    )


def load_omniglot(
    root: str | os.PathLike[str],
    image_size: int = 28,
    val_alphabet_frac: float = 0.35,
    val_frac: float = 0.1,
    test_frac: float = 0.2,
) -> FewShotImages:
    """Omniglot from ``root/images_background`` and ``root/images_evaluation``.

    Characters of the background alphabets are the base classes; the evaluation alphabets
    (sorted) are split into val (the first ``val_alphabet_frac``) and novel. Strokes are made
    white on black (like the glyphs) and images resized to ``image_size``.

    Raises:
        FileNotFoundError: ``root`` or one of the two folders is missing or empty.
    """
    path = _check_root(root, "Omniglot")
    for sub in ("images_background", "images_evaluation"):
        if not (path / sub).is_dir():
            raise FileNotFoundError(
                f"root: expected {path / sub} (Omniglot's <alphabet>/<character>/<png> layout)"
            )

    def chars(sub: str) -> list[tuple[str, str, list[Path]]]:
        out = []
        for alpha in sorted(p for p in (path / sub).iterdir() if p.is_dir()):
            for cname, files in _list_class_folders(alpha):
                out.append((alpha.name, f"{alpha.name}/{cname}", files))
        if not out:
            raise FileNotFoundError(
                f"root: no <alphabet>/<character>/<png> folders in {path / sub}"
            )
        return out

    def build(folder: Path) -> dict[str, int]:
        base = chars("images_background")
        evaluation = chars("images_evaluation")
        alphabets = sorted({a for a, _, _ in evaluation})
        n_val = max(1, round(val_alphabet_frac * len(alphabets))) if len(alphabets) > 1 else 0
        val_alpha = set(alphabets[:n_val])
        parts = []
        for split, items in (
            ("base", base),
            ("val", [c for c in evaluation if c[0] in val_alpha]),
            ("novel", [c for c in evaluation if c[0] not in val_alpha]),
        ):
            if not items:
                continue
            files = [f for _, _, fs in items for f in fs]
            names = [n for _, n, fs in items for _ in fs]
            imgs = 255 - _read_images(files, "L", image_size)  # white strokes on black
            parts.append((split, imgs, names))
        return _to_npz(folder, _assemble(parts, "omniglot", image_size, val_frac, test_frac))

    params = {
        "size": image_size,
        "val_alphabet_frac": val_alphabet_frac,
        "val_frac": val_frac,
        "test_frac": test_frac,
    }
    return _from_npz(_cached_folder("omniglot", path, params, build), "omniglot")
