import pytest
import torch
from torchvision.transforms import v2

from snnconv.data import (
    DEFAULT_DATASET,
    DatasetInfo,
    build_pipeline,
    dataset_info,
    get_dataset,
    list_datasets,
    register_dataset,
)
from snnconv.errors import RegistryError

NAMES = ["fashion-mnist", "digits", "mnist", "cifar10", "cifar100", "tiny-imagenet", "imagenet"]


def test_names_and_default():
    assert list_datasets() == [*NAMES, "caltech101", "caltech101-dog", "caltech101-grey-dog"]  # tests/data/test_caltech
    assert DEFAULT_DATASET == "fashion-mnist"


@pytest.mark.parametrize("name", NAMES)
def test_info_consistent(name):
    info = dataset_info(name)
    assert isinstance(info, DatasetInfo) and info.name == name
    assert len(info.mean) == len(info.std) == info.in_channels
    assert info.num_classes in (10, 100, 200, 1000)
    assert all(0 < s < 1 for s in info.std)


def test_known_facts():
    assert dataset_info("fashion-mnist").input_size == (28, 28)
    assert dataset_info("cifar100").num_classes == 100
    assert dataset_info("tiny-imagenet").input_size == (64, 64)
    assert dataset_info("imagenet").input_size == (224, 224)
    assert dataset_info("Fashion_MNIST").name == "fashion-mnist"


def test_unknown_name_lists_valid_names():
    with pytest.raises(RegistryError) as exc:
        get_dataset("svhn", train=True)
    for n in NAMES:
        assert n in str(exc.value)
    with pytest.raises(RegistryError):
        dataset_info("nope")


def test_duplicate_registration_rejected():
    with pytest.raises(RegistryError, match="already registered"):
        register_dataset(dataset_info("digits"), lambda *a, **k: None)


def _types(t):
    if t is None:
        return []
    return [type(c) for c in (t.transforms if isinstance(t, v2.Compose) else [t])]


def test_recipes():
    fm = build_pipeline(dataset_info("fashion-mnist"), augment=True)
    assert _types(fm.pre) == [v2.RandomCrop, v2.RandomHorizontalFlip] and fm.pre.transforms[0].padding == [2] * 4
    mn = build_pipeline(dataset_info("mnist"), augment=True)
    assert v2.RandomHorizontalFlip not in _types(mn.pre)  # no flips for digits
    c10 = build_pipeline(dataset_info("cifar10"), augment=True, autoaugment=True, cutout=True)
    assert _types(c10.pre) == [v2.RandomCrop, v2.RandomHorizontalFlip, v2.AutoAugment]
    assert c10.pre.transforms[0].padding == [4] * 4 and isinstance(c10.post, v2.RandomErasing)
    im_tr = build_pipeline(dataset_info("imagenet"), augment=True)
    assert _types(im_tr.pre) == [v2.ToImage, v2.RandomResizedCrop, v2.RandomHorizontalFlip]
    im_te = build_pipeline(dataset_info("imagenet"), augment=False)
    assert _types(im_te.pre) == [v2.ToImage, v2.Resize, v2.CenterCrop] and not im_te.is_random
    te = build_pipeline(dataset_info("cifar10"), augment=False, autoaugment=True, cutout=True)
    assert te.pre is None and te.post is None and not te.is_random


def test_augment_flags_apply_to_samples():
    ds = get_dataset("digits", train=True, autoaugment=True, cutout=True, subset=32)
    assert ds.augmented and len(ds) == 32
    torch.manual_seed(0)
    xs = torch.stack([ds[i][0] for i in range(32)])
    assert xs.shape == (32, 1, 8, 8) and torch.isfinite(xs).all()
    plain = get_dataset("digits", train=True, augment=False, subset=32)
    assert not plain.augmented and torch.equal(plain.images, ds.images)


def test_subset_is_fixed_seed_prefix():
    a = get_dataset("digits", train=True, augment=False, subset=100)
    b = get_dataset("digits", train=True, augment=False, subset=50)
    assert len(a) == 100 and torch.equal(a.images[:50], b.images)
    assert not torch.equal(a.labels[:100], get_dataset("digits", train=True).labels[:100])  # shuffled
    assert len(get_dataset("digits", train=False, subset=10_000)) == 360
    with pytest.raises(ValueError, match="subset"):
        get_dataset("digits", train=True, subset=0)
