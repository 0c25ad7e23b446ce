"""Test set-up: 8 simulated CPU devices, so sharding tests run on any machine.

Tests that want one device build their mesh from `jax.devices()[:1]`.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import importlib.util  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # configs import each other as `configs.X`, as under train.py


def load_config(name: str, **overrides):
  """configs/NAME.py's config with dotted-key overrides, e.g. `**{"optimizer.name": "adam"}`."""
  spec = importlib.util.spec_from_file_location(name, REPO / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return override(module.get_config(), **overrides)


def override(config, **overrides):
  """Sets dotted keys (`"optimizer.name"`) of a ConfigDict in place and returns it."""
  for key, value in overrides.items():
    node = config
    *path, last = key.split(".")
    for p in path:
      node = node[p]
    node[last] = value
  return config
