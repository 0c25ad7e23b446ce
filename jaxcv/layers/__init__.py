"""Layers shared by the models: convolutions with PyTorch's padding rules, pooling with
indices and unpooling, and resizing with `F.interpolate`'s conventions (features NHWC)."""
from jaxcv.layers.conv_variants import (Conv2d, ConvTranspose, SeparableConv,  # noqa: F401
                                        bilinear_upsample_init, bilinear_upsample_kernel, conv2d,
                                        conv_transpose, convert_torch_conv_transpose_weight,
                                        convert_torch_conv_weight, separable_conv)
from jaxcv.layers.pooling import (PyramidPooling, adaptive_avg_pool,  # noqa: F401
                                  adaptive_max_pool, bed_of_nails_unpool, max_pool_with_indices,
                                  max_unpool, nearest_unpool, spatial_pyramid_pool)
from jaxcv.layers.upsample import resize  # noqa: F401
