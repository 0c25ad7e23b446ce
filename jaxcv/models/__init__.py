"""Classification models: `create(name, **kwargs)` returns a Flax Linen module.

Every model maps float NHWC `[B, H, W, 3]` images to `(logits [B, num_classes] float32,
intermediates)`, takes `num_classes`, `dtype` and `frozen_stages`, names its top-level
modules after its stages and calls its last layer `head` (see docs/conventions.md).
"""
from jaxcv.models.registry import create, get, names, register

# Imported for their `register(...)` calls.
from jaxcv.models import alexnet, lenet, mlp, resnet, vgg  # noqa: E402,F401  isort: skip
from jaxcv.models import autoencoder  # noqa: E402,F401  isort: skip
from jaxcv.models import unet  # noqa: E402,F401  isort: skip
from jaxcv.models import fcn  # noqa: E402,F401  isort: skip
from jaxcv.models import deeplab  # noqa: E402,F401  isort: skip
from jaxcv.models import segnet  # noqa: E402,F401  isort: skip
from jaxcv.models import hrnet  # noqa: E402,F401  isort: skip

__all__ = ["create", "get", "names", "register"]
