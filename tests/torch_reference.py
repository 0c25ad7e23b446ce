"""torch and torchvision for reference tests, or a clean pytest skip when they are missing.

torchvision is imported through the workplace's `shared/tools/torchvision_cpu.py` when the
repository's parent folder has one (there the torchvision wheel's C++ ops do not load with the
CPU torch), else as plain torchvision (a user's clone).
"""
import sys
from pathlib import Path

import pytest

SHARED_TOOLS = Path(__file__).resolve().parents[2] / "shared" / "tools"


def import_torchvision():
  """Returns `(torch, torchvision)`; skips the calling test module when they cannot load."""
  try:
    import torch
  except Exception as e:  # noqa: BLE001  an ImportError or a broken install
    pytest.skip(f"torch is not available: {e}", allow_module_level=True)
  try:
    if (SHARED_TOOLS / "torchvision_cpu.py").is_file():
      if str(SHARED_TOOLS) not in sys.path:
        sys.path.insert(0, str(SHARED_TOOLS))
      from torchvision_cpu import torchvision
    else:
      import torchvision
  except Exception as e:  # noqa: BLE001
    pytest.skip(f"torchvision is not available: {e}", allow_module_level=True)
  return torch, torchvision


def randomize_batchnorm(model):
  """Gives every BatchNorm2d of `model` random running stats and affine parameters (a fresh
  BatchNorm is the identity and would hide a converter that drops it); returns `model`."""
  import torch  # noqa: PLC0415
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.normal_(0.0, 0.5)
        m.running_var.uniform_(0.5, 2.0)
        m.weight.normal_(1.0, 0.3)
        m.bias.normal_(0.0, 0.3)
  return model


def relative_error(ours, ref) -> float:
  """‖ours − ref‖ / ‖ref‖ over the whole output (the parity rule of docs/conventions.md)."""
  import numpy as np  # noqa: PLC0415
  return float(np.linalg.norm(np.asarray(ours) - ref) / np.linalg.norm(ref))


def roi_align_as_cpp_kernel(torchvision):
  """Makes the pure-Python `roi_align` (the one the CPU shim uses) give the C++ kernel's zero
  for a bilinear sample outside `[-1, H] x [-1, W]` (the Python code clamps such samples to
  the border instead). Needed by detector references: with `aligned=False` an RoI is at least
  one feature pixel tall and wide, so a thin proposal clipped to the image's bottom or right
  edge samples beyond the map. No-op where the real C++ op is loaded."""
  import torch  # noqa: PLC0415
  module = sys.modules.get("torchvision.ops.roi_align")
  if module is None or getattr(module, "_jaxcv_cpp_border", False):
    return
  original = module._bilinear_interpolate

  def bilinear(input, roi_batch_ind, y, x, ymask, xmask):  # noqa: A002  torch's names
    val = original(input, roi_batch_ind, y, x, ymask, xmask)  # [K, C, PH, PW, IY, IX]
    height, width = input.shape[-2:]
    iny = ((y >= -1.0) & (y <= height)).to(val.dtype)  # [K, PH, IY]
    inx = ((x >= -1.0) & (x <= width)).to(val.dtype)  # [K, PW, IX]
    return val * (iny[:, None, :, None, :, None] * inx[:, None, None, :, None, :])

  module._bilinear_interpolate = bilinear
  module._jaxcv_cpp_border = True
  del torch
