import pytest
import torch
from PIL import Image

from snnconv.data import DatasetFormatError, DatasetNotFoundError, get_dataset, make_loader

CLASSES = ["n01443537", "n01629819", "n01641577"]


def save(path, size, color, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)


def imagefolder_tree(root, size=(64, 64), per_class=2, val_folders=True):
    for ci, c in enumerate(CLASSES):
        for j in range(per_class):
            fmt, ext = ("JPEG", "JPEG") if j % 2 == 0 else ("PNG", "png")
            save(root / "train" / c / "images" / f"{c}_{j}.{ext}", size, (80 * ci, 10 * j, 0), fmt)
            if val_folders:
                save(root / "val" / c / f"val_{c}_{j}.{ext}", size, (80 * ci, 0, 10 * j), fmt)
    (root / "train" / CLASSES[0] / f"{CLASSES[0]}_boxes.txt").write_text("ignored\n")
    return root


def test_imagenet_tree(tmp_path):
    root = imagefolder_tree(tmp_path / "imagenet", size=(300, 260))
    tr = get_dataset("imagenet", root=root, train=True)
    te = get_dataset("imagenet", root=root, train=False)
    assert len(tr) == 6 and len(te) == 6 and tr.classes == CLASSES
    x, y = tr[0]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and y == 0
    xb, yb = next(iter(make_loader(te, batch_size=6)))
    assert xb.shape == (6, 3, 224, 224) and yb.tolist() == [0, 0, 1, 1, 2, 2]
    assert type(xb) is torch.Tensor


def test_val_uses_training_class_indices(tmp_path):
    root = imagefolder_tree(tmp_path / "imagenet", size=(40, 40))
    for f in (root / "val" / CLASSES[0]).iterdir():
        f.unlink()
    (root / "val" / CLASSES[0]).rmdir()
    te = get_dataset("imagenet", root=root, train=False)
    assert sorted(set(te.targets)) == [1, 2]  # not renumbered to 0, 1
    (root / "val" / "n99999999").mkdir()
    with pytest.raises(DatasetFormatError, match="n99999999"):
        get_dataset("imagenet", root=root, train=False)


def test_tiny_imagenet_folder_val(tmp_path, monkeypatch):
    root = imagefolder_tree(tmp_path / "tiny-imagenet-200")
    monkeypatch.setenv("SNNCONV_DATA", str(tmp_path))
    tr = get_dataset("tiny-imagenet", train=True, autoaugment=True, cutout=True)
    te = get_dataset("tiny-imagenet", root=root, train=False)
    assert tr[1][0].shape == te[1][0].shape == (3, 64, 64)
    assert len(get_dataset("tiny-imagenet", train=True, subset=4)) == 4


def test_tiny_imagenet_original_val_layout(tmp_path):
    root = imagefolder_tree(tmp_path / "tiny", val_folders=False)
    lines = []
    for i, c in enumerate([CLASSES[2], CLASSES[0], CLASSES[1], CLASSES[2]]):
        save(root / "val" / "images" / f"val_{i}.JPEG", (64, 64), (i * 50, 0, 0), "JPEG")
        lines.append(f"val_{i}.JPEG\t{c}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    te = get_dataset("tiny-imagenet", root=root, train=False)
    assert len(te) == 4 and te.targets == [2, 0, 1, 2]
    x, y = te[0]
    assert x.shape == (3, 64, 64) and y == 2
    xb, yb = next(iter(make_loader(te, batch_size=4)))
    assert xb.shape == (4, 3, 64, 64) and yb.tolist() == [2, 0, 1, 2]
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn00000000\t0\t0\t1\t1\n")
    with pytest.raises(DatasetFormatError, match="n00000000"):
        get_dataset("tiny-imagenet", root=root, train=False)
    (root / "val" / "val_annotations.txt").write_text("missing.JPEG\tn01443537\t0\t0\t1\t1\n")
    with pytest.raises(DatasetFormatError, match="missing.JPEG"):
        get_dataset("tiny-imagenet", root=root, train=False)


@pytest.mark.parametrize("name", ["imagenet", "tiny-imagenet"])
def test_missing_or_empty_tree(tmp_path, name):
    with pytest.raises(DatasetNotFoundError, match="train/<class>") as exc:
        get_dataset(name, root=tmp_path / "nope", train=True)
    assert str(tmp_path / "nope" / "train") in str(exc.value)
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DatasetFormatError, match="class folder"):
        get_dataset(name, root=tmp_path / "empty", train=True)
    (tmp_path / "empty" / "train" / "c0").mkdir()
    with pytest.raises(DatasetFormatError, match="no images"):
        get_dataset(name, root=tmp_path / "empty", train=True)
    with pytest.raises(DatasetNotFoundError, match="not downloaded automatically"):
        get_dataset(name, root=tmp_path / "empty", train=True, download=True)
