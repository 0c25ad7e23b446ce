"""torchvision's `FastRCNNPredictor`: `cls_score` (num_classes + 1 logits, index 0 the
background) and `bbox_pred` ((num_classes + 1) * 4 class-specific deltas, torchvision's
`[K, (C + 1) * 4]` layout) from the box head's representation; float32 outputs."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.models.detection.roi_heads.box_head import torch_dense


class FastRCNNPredictor(nn.Module):
  num_classes: int  # objects, without the background
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    n = self.num_classes + 1
    logits = torch_dense(n, "cls_score", self.dtype)(x)
    deltas = torch_dense(4 * n, "bbox_pred", self.dtype)(x)
    return logits.astype(jnp.float32), deltas.astype(jnp.float32)
