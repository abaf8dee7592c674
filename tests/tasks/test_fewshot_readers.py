"""mini-ImageNet and Omniglot readers on tiny fake layouts; clear errors when data are absent."""

import pickle

import numpy as np
import pytest
from PIL import Image

from neural_attention_memory.tasks.fewshot_readers import load_mini_imagenet, load_omniglot


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAM_DATA_DIR", str(tmp_path / "cache"))


def _rand_images(n, size=12, c=3, seed=0):
    shape = (n, size, size, c) if c else (n, size, size)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_mini_imagenet_l2l_pickles(tmp_path):
    root = tmp_path / "mini"
    root.mkdir()
    counts = {"train": 4, "val": 2, "test": 3}
    for split, n_cls in counts.items():
        imgs = _rand_images(n_cls * 10, seed=n_cls)
        class_dict = {f"{split}_n{c}": list(range(c * 10, c * 10 + 10)) for c in range(n_cls)}
        with open(root / f"mini-imagenet-cache-{split}.pkl", "wb") as fh:
            pickle.dump({"image_data": imgs, "class_dict": class_dict}, fh)
    d = load_mini_imagenet(root, val_frac=0.1, test_frac=0.2)
    assert d.images.shape == (90, 3, 12, 12)
    assert [len(d.class_split[s]) for s in ("base", "val", "novel")] == [4, 2, 3]
    for c in d.class_split["base"]:
        assert np.bincount(d.base_subset[d.labels == c], minlength=3).tolist() == [7, 1, 2]
    assert (d.base_subset[~np.isin(d.labels, d.class_split["base"])] == -1).all()
    # Pixels are carried over unchanged (channels first).
    first = d.images[d.labels == d.class_names.index("train_n0")][0]
    with open(root / "mini-imagenet-cache-train.pkl", "rb") as fh:
        raw = pickle.load(fh)["image_data"][0]
    assert np.array_equal(first, raw.transpose(2, 0, 1))
    assert load_mini_imagenet(root, image_size=8).images.shape == (90, 3, 8, 8)


def test_mini_imagenet_gidaris_pickles(tmp_path):
    root = tmp_path / "gid"
    root.mkdir()
    spec = {
        "train_phase_train": (np.repeat(np.arange(3), 6), 0),
        "train_phase_val": (np.repeat(np.arange(3), 2), 1),
        "train_phase_test": (np.repeat(np.arange(3), 2), 2),
        "val": (np.repeat(np.arange(3, 5), 5), 3),
        "test": (np.repeat(np.arange(5, 8), 5), 4),
    }
    for name, (labels, seed) in spec.items():
        with open(root / f"miniImageNet_category_split_{name}.pickle", "wb") as fh:
            pickle.dump({"data": _rand_images(len(labels), seed=seed), "labels": list(labels)}, fh)
    d = load_mini_imagenet(root)
    assert [len(d.class_split[s]) for s in ("base", "val", "novel")] == [3, 2, 3]
    for c in d.class_split["base"]:
        assert np.bincount(d.base_subset[d.labels == c], minlength=3).tolist() == [6, 2, 2]


def test_mini_imagenet_image_folders(tmp_path):
    root = tmp_path / "folders"
    for split, n_cls in (("train", 3), ("val", 2), ("test", 2)):
        for c in range(n_cls):
            folder = root / split / f"{split}{c}"
            folder.mkdir(parents=True)
            for i, img in enumerate(_rand_images(5, size=20, seed=c + 10 * len(split))):
                Image.fromarray(img).save(folder / f"{i}.png")
    d = load_mini_imagenet(root, image_size=16)
    assert d.images.shape == (35, 3, 16, 16)
    assert [len(d.class_split[s]) for s in ("base", "val", "novel")] == [3, 2, 2]
    again = load_mini_imagenet(root, image_size=16)  # from the cache
    assert np.array_equal(again.images, d.images)


def test_omniglot_folders(tmp_path):
    root = tmp_path / "omniglot"
    layout = {
        "images_background": ["Alpha", "Beta"],
        "images_evaluation": ["Gamma", "Delta", "Eps"],
    }
    for sub, alphabets in layout.items():
        for a in alphabets:
            for c in range(2):
                folder = root / sub / a / f"character{c + 1:02d}"
                folder.mkdir(parents=True)
                for i in range(5):
                    img = np.full((30, 30), 255, dtype=np.uint8)
                    img[5 + i : 10 + i, 5:20] = 0  # black stroke on white
                    Image.fromarray(img).save(folder / f"{i}.png")
    d = load_omniglot(root, image_size=16, val_alphabet_frac=0.34)
    assert d.images.shape == (50, 1, 16, 16)
    assert len(d.class_split["base"]) == 4
    # Evaluation alphabets sorted: Delta -> val; Eps, Gamma -> novel.
    val_names = {d.class_names[c].split("/")[0] for c in d.class_split["val"]}
    novel_names = {d.class_names[c].split("/")[0] for c in d.class_split["novel"]}
    assert val_names == {"Delta"} and novel_names == {"Eps", "Gamma"}
    # Strokes become white on black.
    assert d.images[:, 0, 0, 0].max() < 30 and d.images.max() > 200


def test_reader_errors(tmp_path):
    with pytest.raises(ValueError, match="root"):
        load_mini_imagenet(None)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_mini_imagenet(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no mini-ImageNet found"):
        load_mini_imagenet(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="images_background"):
        load_omniglot(tmp_path / "empty")
    (tmp_path / "om" / "images_background").mkdir(parents=True)
    (tmp_path / "om" / "images_evaluation").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no <alphabet>"):
        load_omniglot(tmp_path / "om")
    bad = tmp_path / "bad"
    bad.mkdir()
    for split in ("train", "val", "test"):
        with open(bad / f"mini-imagenet-cache-{split}.pkl", "wb") as fh:
            pickle.dump({"images": 1}, fh)
    with pytest.raises(ValueError, match="image_data"):
        load_mini_imagenet(bad)
