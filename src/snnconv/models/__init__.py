"""Model registry and model definitions (VGG, ResNet, ViT, small test models) built from an ``ActFactory``."""

import snnconv.models.zoo  # noqa: F401  (registers mobilenetv2; issue 9)
from snnconv.models import resnet, seed003, small, transformer, vgg  # noqa: F401  (registers the builders)
from snnconv.models.registry import ModelBuilder, create, get_builder, list_models, register_model

__all__ = ["ModelBuilder", "create", "get_builder", "list_models", "register_model"]
