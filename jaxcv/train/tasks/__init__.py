"""Task registry: what the training loop needs to know about a kind of problem.

A task is a class registered by name (`classification`, `segmentation`, `depth`, ...; later
`detection`) with `@tasks.register("name")` and built as `Task(config, dataset)`. The loop
only calls the interface of `base.Task`. The first lookup imports every module of this
package (`REGISTRY`, a `jaxcv.registry.Registry`), so adding a task is one new module here
and no edit of this file or of the loop.
"""
from __future__ import annotations

from jaxcv.registry import Registry
from jaxcv.train.tasks.base import Task, apply_model

REGISTRY = Registry("task", "jaxcv.train.tasks")


def register(name: str):
  """Class decorator: registers a `Task` subclass as `name` (and sets its `name`)."""
  def wrap(cls: type[Task]) -> type[Task]:
    REGISTRY.register(name, cls)
    cls.name = name
    return cls
  return wrap


def names() -> list[str]:
  """The registered task names, sorted."""
  return REGISTRY.names()


def get(name: str) -> type[Task]:
  """The task class registered as `name`; ValueError listing the known tasks otherwise."""
  return REGISTRY.get(name)


__all__ = ["REGISTRY", "Task", "apply_model", "get", "names", "register"]
