"""torchvision's `RPNHead`: shared over the FPN levels, `conv_depth` 3x3 convs with ReLU
(`conv{i}`; v1 one, v2 two), then a 1x1 objectness conv (`cls_logits`, A channels) and a 1x1
box-delta conv (`bbox_pred`, 4A channels); weights normal(std 0.01), biases 0.

Outputs are flattened in torchvision's `concat_box_prediction_layers` order (level, row,
column, anchor): NHWC makes that a reshape. Returned as float32 whatever the compute dtype.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.conv_norm_act import torch_conv

normal_001 = nn.initializers.normal(0.01)


class RPNHead(nn.Module):
  """`features` (list of `[B, H_l, W_l, C]`) -> objectness `[B, N]`, deltas `[B, N, 4]`,
  `N = sum_l H_l W_l A`."""
  num_anchors: int
  conv_depth: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array]) -> tuple[jax.Array, jax.Array]:
    channels = features[0].shape[-1]
    convs = [torch_conv(channels, 3, use_bias=True, dtype=self.dtype, kernel_init=normal_001,
                        name=f"conv{i}") for i in range(self.conv_depth)]
    cls = torch_conv(self.num_anchors, 1, use_bias=True, dtype=self.dtype,
                     kernel_init=normal_001, name="cls_logits")
    reg = torch_conv(4 * self.num_anchors, 1, use_bias=True, dtype=self.dtype,
                     kernel_init=normal_001, name="bbox_pred")
    logits, deltas = [], []
    for f in features:
      t = f
      for conv in convs:
        t = nn.relu(conv(t))
      b = t.shape[0]
      logits.append(cls(t).reshape(b, -1))
      deltas.append(reg(t).reshape(b, -1, 4))
    return (jnp.concatenate(logits, 1).astype(jnp.float32),
            jnp.concatenate(deltas, 1).astype(jnp.float32))
