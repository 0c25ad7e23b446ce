"""Optimizers from the config: SGD+momentum, Adam, AdamW; schedules; decay masks; freezing.

Config keys (all under `config`):
  optimizer.name            'sgd' | 'adam' | 'adamw'
  optimizer.learning_rate   peak learning rate
  optimizer.momentum, optimizer.nesterov       (sgd)
  optimizer.b1, optimizer.b2, optimizer.eps    (adam, adamw)
  optimizer.weight_decay    L2 coefficient (coupled for sgd/adam as in torch; decoupled for adamw)
  optimizer.weight_decay_mask  'kernels' (arrays with ndim > 1: no decay on biases or norm
                            scales), 'all', or 'none'
  optimizer.grad_clip_norm  global-norm clipping; 0 turns it off
  schedule.name             'constant' | 'cosine' | 'step'
  schedule.warmup_steps     linear warmup from 0
  schedule.boundaries       'step': fractions of num_steps (< 1) or step numbers
  schedule.decay_factor     'step': multiplier at each boundary
  transfer.frozen           top-level parameter modules that get no update (their BatchNorm
                            runs in inference mode too; the loop tells the model)
  transfer.head             top-level modules counted as the head
  transfer.backbone_lr_mult learning-rate multiplier for every non-head, non-frozen module

`make_schedule` and `make_optimizer` take a whole config or a partial one: the keys it lacks
take their defaults from `jaxcv.train.defaults` (the one place they live).
"""
from __future__ import annotations

from typing import Any

import jax
import optax

from jaxcv.train import defaults


def make_schedule(config, multiplier: float = 1.0) -> optax.Schedule:
  """`schedule.*` of `config` (missing keys: defaults) at `multiplier` times the peak rate."""
  config = defaults.with_defaults(config)
  lr = float(config.optimizer.learning_rate) * multiplier
  total = int(config.num_steps)
  s = config.schedule
  warmup = int(s.warmup_steps)
  name = s.name
  if name == "constant":
    main = optax.constant_schedule(lr)
  elif name == "cosine":
    main = optax.cosine_decay_schedule(lr, max(total - warmup, 1))
  elif name == "step":
    bounds = [int(b * total) if b < 1 else int(b) for b in s.boundaries]
    factor = float(s.decay_factor)
    main = optax.piecewise_constant_schedule(
        lr, {max(b - warmup, 1): factor for b in bounds})
  else:
    raise ValueError(f"unknown schedule.name {name!r}; known: constant, cosine, step")
  if warmup:
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup), main], [warmup])
  return main


def decay_mask(kind: str):
  """A callable mask (so it also fits the partial trees `multi_transform` hands down)."""
  if kind == "kernels":
    return lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  if kind in ("all", "none"):
    return lambda params: jax.tree.map(lambda p: kind == "all", params)
  raise ValueError(f"unknown optimizer.weight_decay_mask {kind!r}; known: kernels, all, none")


def _base(config, schedule) -> optax.GradientTransformation:
  o = config.optimizer  # a config with defaults (`make_optimizer`)
  name = o.name
  wd = float(o.weight_decay)
  mask = decay_mask(o.weight_decay_mask)
  parts = []
  if name == "adamw":
    return optax.adamw(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=wd, mask=mask)
  if wd:
    parts.append(optax.add_decayed_weights(wd, mask))
  if name == "sgd":
    parts.append(optax.sgd(schedule, momentum=o.momentum or None, nesterov=o.nesterov))
  elif name == "adam":
    parts.append(optax.adam(schedule, b1=o.b1, b2=o.b2, eps=o.eps))
  else:
    raise ValueError(f"unknown optimizer.name {name!r}; known: sgd, adam, adamw")
  return optax.chain(*parts)


def param_labels(params: Any, frozen, head) -> Any:
  """'frozen', 'head' or 'backbone' for every parameter, by its top-level module name."""
  frozen, head = set(frozen), set(head)
  unknown = frozen - set(params)
  if unknown:
    raise ValueError(f"transfer.frozen names {sorted(unknown)} that are not "
                     f"top-level parameter modules; known: {sorted(params)}")
  def label(top):
    return "frozen" if top in frozen else "head" if top in head else "backbone"
  return {k: jax.tree.map(lambda _, k=k: label(k), v) for k, v in params.items()}


def make_optimizer(config, params: Any) -> optax.GradientTransformation:
  """The full transformation: clipping, then per-group optimizers (frozen ones zeroed)."""
  config = defaults.with_defaults(config)
  t = config.transfer
  frozen = tuple(t.frozen)
  head = tuple(t.head)
  mult = float(t.backbone_lr_mult)
  main = _base(config, make_schedule(config))
  if frozen or mult != 1.0:
    labels = param_labels(params, frozen, head)
    main = optax.multi_transform(
        {"head": main,
         "backbone": _base(config, make_schedule(config, mult)),
         "frozen": optax.set_to_zero()}, labels)
  clip = float(config.optimizer.grad_clip_norm)
  return optax.chain(optax.clip_by_global_norm(clip), main) if clip else main
