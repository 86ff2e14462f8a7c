"""Dataset loaders: a typed registry, standard torchvision-v2 augmentation and fast batch iteration.

>>> from snnconv.data import get_dataset, make_loader, dataset_info
>>> info = dataset_info("fashion-mnist")            # the default dataset
>>> test = get_dataset("fashion-mnist", train=False)  # (1x28x28 float, int) items
>>> for x, y in make_loader(test, batch_size=256): ...

Names: ``fashion-mnist`` (default; Debian ``dataset-fashion-mnist``), ``digits`` (scikit-learn),
``mnist``, ``cifar10``, ``cifar100`` (torchvision layouts; ``download=True`` on request),
``tiny-imagenet``, ``imagenet`` (ImageFolder trees).
"""

from snnconv._deps import require

require("torchvision", "snnconv.data (datasets and augmentation)")

from snnconv.data.errors import DatasetFormatError, DatasetNotFoundError  # noqa: E402
from snnconv.data.idx import parse_idx, read_idx  # noqa: E402
from snnconv.data.info import DatasetInfo  # noqa: E402
from snnconv.data.loader import TensorBatchLoader, make_loader  # noqa: E402
from snnconv.data.memory import InMemoryDataset, apply_subset  # noqa: E402
from snnconv.data.paths import ENV_VAR  # noqa: E402
from snnconv.data.registry import DEFAULT_DATASET, dataset_info, get_dataset, list_datasets, register_dataset  # noqa: E402
from snnconv.data.transforms import Pipeline, build_pipeline  # noqa: E402

__all__ = [
    "DEFAULT_DATASET",
    "ENV_VAR",
    "DatasetFormatError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "InMemoryDataset",
    "Pipeline",
    "TensorBatchLoader",
    "apply_subset",
    "build_pipeline",
    "dataset_info",
    "get_dataset",
    "list_datasets",
    "make_loader",
    "parse_idx",
    "read_idx",
    "register_dataset",
]
