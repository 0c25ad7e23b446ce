"""The one entry point: `python train.py --config configs/X.py --workdir DIR`.

Fields of the config can be overridden on the command line, e.g.
`--config.num_steps=100 --config.optimizer.learning_rate=0.01`. A workdir that holds a
checkpoint resumes it. SIGTERM saves a checkpoint and exits 0.
"""
import logging
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
  for noisy in ("absl", "orbax", "jax._src"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  from jaxcv.train import train_and_evaluate
  try:
    result = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except FloatingPointError as e:  # NaN/Inf loss, or non-finite parameters refused a save
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  result.pop("state", None)
  summary = " ".join(f"{split}/{k}={v:.4f}" for split, m in result.items()
                     if isinstance(m, dict) for k, v in m.items())
  status = "preempted" if result["preempted"] else "done"
  print(f"{status} at step {result['step']}: {summary}")


if __name__ == "__main__":
  app.run(main)
