"""jaxcv models with converted weights give torchvision's outputs (docs/conventions.md).

torchvision models are randomly initialised and every BatchNorm gets random running stats and
affine parameters; the check is `‖ours − ref‖ / ‖ref‖ ≤ 1e-4` on the logits, in float32.
Skipped where torch/torchvision are not installed.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv import models
from jaxcv.models import common
from jaxcv.models.backbones import ResNetBackbone, dilation_for_output_stride
from jaxcv.weights import torchvision as tv_weights
from torch_reference import import_torchvision, randomize_batchnorm, relative_error

torch, torchvision = import_torchvision()

PARITY = ["alexnet", "vgg11", "vgg16", "vgg19", "vgg16_bn", "resnet18", "resnet34", "resnet50",
          "resnet101"]
SIZE = 64  # AlexNet needs >= 63; ResNets and VGGs work from 32


def reference(name, seed=0):
  """torchvision `name` in eval mode, every BatchNorm given random stats and affine params."""
  torch.manual_seed(seed)
  model = getattr(torchvision.models, name)(weights=None).eval()
  return randomize_batchnorm(model)


@pytest.mark.parametrize("name", PARITY)
def test_converted_weights_match_torchvision(name):
  ref_model = reference(name)
  x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
  with torch.no_grad():
    want = ref_model(x).numpy()
  variables = tv_weights.convert(name, ref_model.state_dict())
  model = models.create(name, num_classes=1000)
  x_nhwc = jnp.asarray(x.numpy().transpose(0, 2, 3, 1))
  expected = jax.eval_shape(model.init, jax.random.key(0), x_nhwc)
  assert jax.tree.structure(variables) == jax.tree.structure(
      {"params": expected["params"], "batch_stats": expected.get("batch_stats", {})})
  with jax.default_matmul_precision("highest"):
    ours, _ = model.apply(variables, x_nhwc)  # eager: one call, compiling would cost more
  assert relative_error(ours, want) <= 1e-4


@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_dilated_resnet_body_matches_torchvision_stage_by_stage(output_stride):
  """jaxcv's one ResNet body at output stride 32/16/8 (`ResNetBackbone`, converted resnet50
  weights without `head`) against torchvision's `resnet50(replace_stride_with_dilation=..)`:
  every stage output, stride and value."""
  dilate = dilation_for_output_stride(output_stride)
  torch.manual_seed(0)
  ref = randomize_batchnorm(torchvision.models.resnet50(
      weights=None, replace_stride_with_dilation=list(dilate)).eval())
  x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
  with torch.no_grad():
    y = ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))
    want = {"stem": y}
    for k in range(1, 5):
      y = want[f"stage{k}"] = getattr(ref, f"layer{k}")(y)
  variables = tv_weights.convert("resnet50", ref.state_dict())
  del variables["params"]["head"]
  x_nhwc = jnp.asarray(x.numpy().transpose(0, 2, 3, 1))
  with jax.default_matmul_precision("highest"):
    ours = ResNetBackbone(output_stride=output_stride).apply(variables, x_nhwc)  # eager
  assert ours["stage4"].shape[1] == SIZE // output_stride
  for name, ref_value in want.items():
    ref_nhwc = ref_value.numpy().transpose(0, 2, 3, 1)
    assert ours[name].shape == ref_nhwc.shape, name
    assert relative_error(ours[name], ref_nhwc) <= 1e-4, name


@pytest.mark.parametrize("size_in, size_out", [(7, 7), (1, 7), (5, 7), (10, 7), (13, 6),
                                               (3, 6), (14, 7)])
def test_adaptive_avg_pool_matches_torch(size_in, size_out):
  x = np.random.default_rng(0).normal(size=(2, 3, size_in, size_in + 2)).astype(np.float32)
  want = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x), (size_out, size_out))
  ours = common.adaptive_avg_pool(jnp.asarray(x.transpose(0, 2, 3, 1)), (size_out, size_out))
  np.testing.assert_allclose(np.asarray(ours).transpose(0, 3, 1, 2), want.numpy(), rtol=1e-6,
                             atol=1e-6)


@pytest.fixture(scope="module")
def resnet18_state():
  return reference("resnet18").state_dict()


def test_converter_infers_num_classes():
  state = torchvision.models.resnet18(weights=None, num_classes=7).state_dict()
  variables = tv_weights.convert("resnet18", state)
  assert variables["params"]["head"]["kernel"].shape == (512, 7)
  assert variables["batch_stats"]["stem"]["bn"]["var"].dtype == np.float32


def test_converter_accepts_numpy_arrays(resnet18_state):
  arrays = {k: v.numpy() for k, v in resnet18_state.items()}
  a = tv_weights.convert("resnet18", arrays)
  b = tv_weights.convert("resnet18", resnet18_state)
  assert jax.tree.all(jax.tree.map(np.array_equal, a, b))


def test_converter_unknown_name_lists_known_ones(resnet18_state):
  with pytest.raises(ValueError, match=r"'resnet152'.*resnet101"):
    tv_weights.convert("resnet152", resnet18_state)


def test_converter_reports_missing_unexpected_and_shape_errors(resnet18_state):
  state = dict(resnet18_state)
  del state["layer2.0.bn1.running_var"]
  state["extra.weight"] = torch.zeros(3)
  state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
  with pytest.raises(ValueError) as info:
    tv_weights.convert("resnet18", state)
  message = str(info.value)
  assert "missing key 'layer2.0.bn1.running_var'" in message
  assert "unexpected keys ['extra.weight']" in message
  assert "layer1.0.conv1.weight" in message and "(3, 3, 64, 64)" in message


def test_converter_rejects_another_architecture(resnet18_state):
  with pytest.raises(ValueError, match="missing key 'layer1.0.conv3.weight'"):
    tv_weights.convert("resnet50", resnet18_state)


def test_load_returns_the_model_with_the_state_dicts_num_classes():
  state = torchvision.models.resnet18(weights=None, num_classes=7).state_dict()
  model, variables = tv_weights.load("resnet18", state)
  logits, _ = model.apply(variables, jnp.zeros((1, 32, 32, 3)))
  assert logits.shape == (1, 7)
  with pytest.raises(ValueError, match=r"'resnet152'.*resnet101"):
    tv_weights.load("resnet152", state)
