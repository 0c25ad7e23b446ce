"""Task registry: what the training loop needs to know about a kind of problem.

A task is a class registered by name (`classification`; later `segmentation`, `depth`,
`detection`, ...) built as `Task(config, dataset)`. The loop only calls the interface of
`base.Task`; adding a task is one new module here and no edit of the loop.
"""
from __future__ import annotations

import importlib

from jaxcv.train.tasks.base import Task, apply_model

_REGISTRY: dict[str, type[Task]] = {}
_BUILTIN = {
    "classification": "jaxcv.train.tasks.classification",
    "segmentation": "jaxcv.train.tasks.segmentation",
    "depth": "jaxcv.train.tasks.dense",
    "normals": "jaxcv.train.tasks.dense",
    "image_to_image": "jaxcv.train.tasks.dense",
    "autoencoder": "jaxcv.train.tasks.latent",
    "vae": "jaxcv.train.tasks.latent",
}


def register(name: str):
  def wrap(cls):
    _REGISTRY[name] = cls
    cls.name = name
    return cls
  return wrap


def names() -> list[str]:
  return sorted(set(_REGISTRY) | set(_BUILTIN))


def get(name: str) -> type[Task]:
  if name not in _REGISTRY and name in _BUILTIN:
    try:
      importlib.import_module(_BUILTIN[name])
    except ModuleNotFoundError as e:
      if e.name != _BUILTIN[name]:
        raise
      raise ValueError(f"task {name!r} is listed but its module {_BUILTIN[name]} is not "
                       "part of this installation") from e
  if name not in _REGISTRY:
    raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(names())}")
  return _REGISTRY[name]


__all__ = ["Task", "apply_model", "get", "names", "register"]
