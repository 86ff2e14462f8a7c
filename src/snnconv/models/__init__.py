"""Model registry and model definitions (VGG, ResNet, small test models) built from an ``ActFactory``."""

from snnconv.models import resnet, seed003, small, vgg  # noqa: F401  (registers the builders)
from snnconv.models.registry import ModelBuilder, create, get_builder, list_models, register_model

__all__ = ["ModelBuilder", "create", "get_builder", "list_models", "register_model"]
