"""Config bases: what a family of experiments shares, one file per family.

An experiment in `configs/` starts from one (`c = classification.get_config()`) and states
only what differs, as flax's `configs/tpu.py` starts from `default.get_config()`. Bases are
not experiments: they have no command of their own. Keys the training loop reads and no base
sets take their defaults from `jaxcv/train/defaults.py`.
"""
