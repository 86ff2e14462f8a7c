"""Caltech-101 (seed 003 Table 1): folder layouts, the fixed split, RGB / DoG / grey-DoG variants, bad folders."""

import pytest
import torch
from PIL import Image

from snnconv.data import DatasetFormatError, DatasetNotFoundError, dataset_info, get_dataset, make_loader
from snnconv.data.caltech import caltech_split, dog_filter, find_categories, image_loader

CLASSES = ["accordion", "airplanes", "anchor"]
NAMES = ("caltech101", "caltech101-dog", "caltech101-grey-dog")


def caltech_tree(root, per_class=5, layout="torchvision"):
    """A small Caltech-101 copy: 3 classes of ``per_class`` JPEGs (one grey-scale each) and the background folder."""
    base = root / "caltech101" / "101_ObjectCategories" if layout == "torchvision" else root / "101_ObjectCategories"
    for ci, c in enumerate([*CLASSES, "BACKGROUND_Google"]):
        (base / c).mkdir(parents=True)
        for j in range(per_class):
            mode = "L" if j == 0 else "RGB"
            color = 40 * ci + 10 * j if mode == "L" else (40 * ci, 10 * j, 200)
            Image.new(mode, (60 + 10 * j, 40), color).save(base / c / f"image_{j + 1:04d}.jpg")
    (base / CLASSES[0] / "notes.txt").write_text("not an image\n")
    return base


def test_info_of_the_three_variants():
    for name, channels in zip(NAMES, (3, 3, 1), strict=True):
        info = dataset_info(name)
        assert info.num_classes == 101 and info.input_size == (128, 128) and info.in_channels == channels
        assert len(info.mean) == len(info.std) == channels and not info.in_memory


def test_split_is_fixed_disjoint_and_excludes_the_background(tmp_path):
    caltech_tree(tmp_path)
    tr, te = get_dataset("caltech101", root=tmp_path, train=True), get_dataset("caltech101", root=tmp_path, train=False)
    assert tr.classes == te.classes == CLASSES  # BACKGROUND_Google is not a class (as in torchvision)
    # 5 images per class: round(5 · 1695/7857) = 1 test image per class, 4 for training
    assert len(te) == 3 and len(tr) == 12 and sorted(te.targets) == [0, 1, 2]
    assert not {p for p, _ in tr.samples} & {p for p, _ in te.samples}
    again, _ = caltech_split(find_categories(tmp_path), train=False)
    assert again == te.samples  # the same split every time
    x, y = tr[0]
    assert x.shape == (3, 128, 128) and x.dtype == torch.float32 and y == 0  # grey files become RGB
    xb, yb = next(iter(make_loader(te, batch_size=3)))
    assert xb.shape == (3, 3, 128, 128) and yb.tolist() == [0, 1, 2]


def test_other_layouts(tmp_path):
    base = caltech_tree(tmp_path / "a", layout="plain")
    assert len(get_dataset("caltech101", root=tmp_path / "a", train=False)) == 3
    assert len(get_dataset("caltech101", root=base, train=False)) == 3  # the categories folder itself


def test_dog_filter_hand_computed():
    # a unit impulse: centre response g1(0)² − g2(0)², with the 7-tap normalised Gaussians' centres
    # g1(0) = 1/Σ_{x=-3..3} e^{-x²/2} = 0.3990503, g2(0) = 1/Σ e^{-x²/8} = 0.2161059 → 0.1125393
    x = torch.zeros(1, 15, 15, dtype=torch.float64)
    x[0, 7, 7] = 1.0
    d = dog_filter(x)
    assert float(d[0, 7, 7]) == pytest.approx(0.1125393, abs=1e-7)
    assert float(d.sum()) == pytest.approx(0.0, abs=1e-12)  # both kernels sum to one
    assert float(dog_filter(torch.full((3, 9, 9), 0.7)).abs().max()) < 1e-6  # a flat image has no response
    with pytest.raises(ValueError, match="too small"):
        dog_filter(torch.zeros(1, 3, 3))


def test_dog_variants(tmp_path):
    base = caltech_tree(tmp_path)
    flat = image_loader(grey=False, dog=True)(str(base / CLASSES[1] / "image_0002.jpg"))
    pixels = torch.tensor(list(flat.tobytes()), dtype=torch.float64)
    assert flat.size == (128, 128) and float((pixels - 128).abs().max()) <= 1  # no response: mid-grey (JPEG noise)
    edge = Image.new("RGB", (128, 128), (0, 0, 0))
    edge.paste((255, 255, 255), (64, 0, 128, 128))  # black for x < 64, white from x = 64
    edge.save(tmp_path / "edge.png")
    img = image_loader(grey=True, dog=True)(str(tmp_path / "edge.png"))
    row = torch.tensor(list(img.tobytes())).view(128, 128)[64, 60:67]
    # d(x) = Σ_{k: x+k ≥ 64} (g1(k) − g2(k)): 0, −.0657, −.1428, −.0915, +.0915, +.1428, +.0657 → 255·(1/2 + 2d)
    assert (row - torch.tensor([128, 94, 55, 81, 174, 200, 161])).abs().max() <= 1
    rgb = get_dataset("caltech101-dog", root=tmp_path, train=False)
    grey = get_dataset("caltech101-grey-dog", root=tmp_path, train=False)
    assert rgb[0][0].shape == (3, 128, 128) and grey[0][0].shape == (1, 128, 128)


def test_missing_or_bad_folders(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match="101_ObjectCategories/<class>"):
        get_dataset("caltech101", root=tmp_path / "none", train=True)
    (tmp_path / "empty" / "101_ObjectCategories").mkdir(parents=True)
    with pytest.raises(DatasetFormatError, match="no class folders"):
        get_dataset("caltech101", root=tmp_path / "empty", train=True)
    (tmp_path / "empty" / "101_ObjectCategories" / "ant").mkdir()
    with pytest.raises(DatasetFormatError, match="holds no images"):
        get_dataset("caltech101", root=tmp_path / "empty", train=True)
    calls = []

    class FakeCaltech101:  # download=True goes through torchvision's Caltech101
        def __init__(self, root, download=False):
            calls.append((root, download))
            caltech_tree(tmp_path / "fetched")

    monkeypatch.setattr("torchvision.datasets.Caltech101", FakeCaltech101)
    assert len(get_dataset("caltech101", root=tmp_path / "fetched", train=False, download=True)) == 3
    assert calls == [(str(tmp_path / "fetched"), True)]
