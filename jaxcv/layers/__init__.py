"""Layers shared by the models (features NHWC): convolutions with PyTorch's padding rules,
conv-norm-act with a choice of norm (BatchNorm, frozen BatchNorm, GroupNorm, none), ResNet's
residual blocks and stages, ASPP, pooling with indices and unpooling, and resizing with
`F.interpolate`'s conventions."""
from jaxcv.layers.aspp import ASPP, SepConvNormAct  # noqa: F401
from jaxcv.layers.conv_norm_act import (ConvNormAct, kaiming_fan_out,  # noqa: F401
                                        lecun_normal, torch_conv)
from jaxcv.layers.conv_variants import (Conv2d, ConvTranspose, SeparableConv,  # noqa: F401
                                        bilinear_upsample_init, bilinear_upsample_kernel, conv2d,
                                        conv_transpose, convert_torch_conv_transpose_weight,
                                        convert_torch_conv_weight, separable_conv)
from jaxcv.layers.norm import (NORM_KINDS, FrozenBatchNorm, batch_norm,  # noqa: F401
                               norm_layer)
from jaxcv.layers.pooling import (PyramidPooling, adaptive_avg_pool,  # noqa: F401
                                  adaptive_max_pool, bed_of_nails_unpool, max_pool_with_indices,
                                  max_unpool, nearest_unpool, spatial_pyramid_pool)
from jaxcv.layers.residual import (BasicBlock, BottleneckBlock, ResidualBlock,  # noqa: F401
                                   ResNetStage, stage_plan)
from jaxcv.layers.upsample import resize  # noqa: F401
