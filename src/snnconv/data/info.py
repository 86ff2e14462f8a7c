"""The typed description of a dataset: :class:`DatasetInfo`."""

from __future__ import annotations

from dataclasses import dataclass

from snnconv.errors import SnnconvError


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset, enough to build a model and its input pipeline.

    ``input_size`` is the (H, W) the model sees (after resizing/cropping); ``mean``/``std`` are
    per-channel statistics of the [0, 1]-scaled training images. ``train_size``/``test_size`` are
    ``None`` when they depend on the copy on disk. The augmentation recipe fields: ``crop_padding``
    (random crop with this zero padding; 0 = none), ``hflip`` (random horizontal flip), ``recipe``
    (``"small"``: crop+flip on the stored size; ``"imagenet"``: RandomResizedCrop / Resize+CenterCrop)
    and ``autoaugment_policy`` (name of a ``torchvision.transforms.AutoAugmentPolicy``). ``in_memory``
    says whether the whole split is held as one tensor (fast batch iteration).
    """

    name: str
    num_classes: int
    in_channels: int
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int | None = None
    test_size: int | None = None
    in_memory: bool = True
    crop_padding: int = 0
    hflip: bool = False
    recipe: str = "small"
    autoaugment_policy: str = "CIFAR10"
    description: str = ""

    def __post_init__(self) -> None:
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise SnnconvError(f"DatasetInfo {self.name!r}: mean/std need {self.in_channels} entries each")
        if self.recipe not in ("small", "imagenet"):
            raise SnnconvError(f"DatasetInfo {self.name!r}: recipe must be 'small' or 'imagenet'")
