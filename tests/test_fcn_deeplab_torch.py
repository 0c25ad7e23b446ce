"""Converted torchvision `fcn_resnet50` and `deeplabv3_resnet50` give torchvision's outputs
(docs/conventions.md): torchvision models randomly initialised (weights=None,
weights_backbone=None), every BatchNorm given random running stats and affine parameters,
eval mode, the same random input; `‖ours − ref‖ / ‖ref‖ ≤ 1e-4` for `out` and `aux`.
Skipped where torch/torchvision are not installed.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from torch_reference import import_torchvision, randomize_batchnorm, relative_error

from jaxcv import models
from jaxcv.weights import torchvision as tv_weights

torch, torchvision = import_torchvision()

NUM_CLASSES = 5
# Not a multiple of the output stride 8, and not square: the resizes must match torch's too.
SIZE = (44, 52)


def reference(name, aux_loss=True, seed=0):
  """torchvision segmentation model `name` in eval mode with random BatchNorm stats."""
  torch.manual_seed(seed)
  model = getattr(torchvision.models.segmentation, name)(
      weights=None, weights_backbone=None, aux_loss=aux_loss, num_classes=NUM_CLASSES).eval()
  return randomize_batchnorm(model)


@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_resnet50"])
def test_converted_weights_match_torchvision(name):
  ref_model = reference(name)
  x = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(1))
  with torch.no_grad():
    want = {k: v.numpy().transpose(0, 2, 3, 1) for k, v in ref_model(x).items()}
  variables = tv_weights.convert(name, ref_model.state_dict())
  model = models.create(name, num_classes=NUM_CLASSES)
  x_nhwc = jnp.asarray(x.numpy().transpose(0, 2, 3, 1))
  expected = jax.eval_shape(model.init, jax.random.key(0), x_nhwc)
  assert jax.tree.structure(variables) == jax.tree.structure(expected)
  with jax.default_matmul_precision("highest"):
    out, inter = model.apply(variables, x_nhwc)  # eager: one call, compiling costs more
  err_out, err_aux = relative_error(out, want["out"]), relative_error(inter["aux"], want["aux"])
  print(f"{name}: relative error out {err_out:.2e}, aux {err_aux:.2e}")
  assert out.shape == want["out"].shape == (1, *SIZE, NUM_CLASSES)
  assert err_out <= 1e-4 and err_aux <= 1e-4


def test_converter_without_aux_head_builds_a_model_without_it():
  state = reference("deeplabv3_resnet50", aux_loss=False).state_dict()
  assert not any(k.startswith("aux_classifier") for k in state)
  variables = tv_weights.convert("deeplabv3_resnet50", state)
  assert "aux" not in variables["params"]
  assert variables["params"]["head"]["cls"]["kernel"].shape == (1, 1, 256, NUM_CLASSES)
  # the ASPP pooling branch (torch convs.4.1/.2) and projection found their weights
  np.testing.assert_array_equal(variables["params"]["head"]["aspp"]["pooling"]["conv"]["kernel"],
                                state["classifier.0.convs.4.1.weight"].numpy().transpose(
                                    2, 3, 1, 0))
  np.testing.assert_array_equal(variables["batch_stats"]["head"]["aspp"]["project"]["bn"]["var"],
                                state["classifier.0.project.1.running_var"].numpy())


def test_converter_reports_missing_and_unexpected_keys():
  state = dict(reference("fcn_resnet50").state_dict())
  del state["classifier.1.running_mean"]
  state["classifier.9.weight"] = torch.zeros(3)
  with pytest.raises(ValueError) as info:
    tv_weights.convert("fcn_resnet50", state)
  message = str(info.value)
  assert "missing key 'classifier.1.running_mean'" in message
  assert "unexpected keys ['classifier.9.weight']" in message
  with pytest.raises(ValueError) as info:  # another architecture's weights
    tv_weights.convert("deeplabv3_resnet50", reference("fcn_resnet50").state_dict())
  message = str(info.value)
  assert "missing key 'classifier.0.convs.0.0.weight'" in message
  assert "classifier.1.weight: shape (512,) cannot be head/conv/kernel" in message


@pytest.mark.parametrize("aux_loss", [False, True])
def test_load_builds_the_model_the_state_dict_implies(aux_loss):
  """`load` reads num_classes and aux_loss from the state_dict: the returned model applies
  the returned variables as they are and gives torchvision's output."""
  ref_model = reference("fcn_resnet50", aux_loss=aux_loss)
  x = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(2))
  with torch.no_grad():
    want = ref_model(x)["out"].numpy().transpose(0, 2, 3, 1)
  model, variables = tv_weights.load("fcn_resnet50", ref_model.state_dict())
  assert model.num_classes == NUM_CLASSES and model.aux_loss == aux_loss
  with jax.default_matmul_precision("highest"):
    out, inter = model.apply(variables, jnp.asarray(x.numpy().transpose(0, 2, 3, 1)))
  assert ("aux" in inter) == aux_loss
  assert relative_error(out, want) <= 1e-4
  # convert gives the same variables
  same = jax.tree.map(np.array_equal, variables, tv_weights.convert("fcn_resnet50",
                                                                    ref_model.state_dict()))
  assert jax.tree.all(same)
