"""Models by name: `create(name, **kwargs)` returns a Flax Linen module; `names()` lists them.

Every model maps float NHWC `[B, H, W, 3]` images to `(output, intermediates)`, takes
`num_classes`, `dtype` and `frozen_stages`, names its top-level modules after its stages and
calls its last layer `head` (see docs/conventions.md). A model file registers its presets
with `register(name)`; the first lookup imports every module of this package
(`registry.REGISTRY`), so nothing here lists them and a new model is one new file.
"""
from jaxcv.models.registry import REGISTRY, create, get, names, register

__all__ = ["REGISTRY", "create", "get", "names", "register"]
