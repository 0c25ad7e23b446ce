"""One registration mechanism for models, data sets and tasks: `Registry`.

A registry maps names to objects (model constructors, data-set loaders, task classes). A
module registers what it defines with `@REGISTRY.register("name")` (or
`REGISTRY.register("name", obj)` for presets); the first lookup (`get`, `names`, `in`)
imports every module of the registry's package (`discover`), so that adding a model, a data
set or a task is ONE new file in its package and no edit elsewhere: no import list to
extend, no name -> module table.

Why discovery rather than module-path lookup (big_vision's `import_module(f"models.{name}")`):
here one file registers many names (`resnet18` .. `resnet101`, `vgg11_bn`, the catalog's
`voc/2007`), and names are not module names, so the name cannot say which file to import;
and `names()` must list everything without the user importing anything. Discovery is lazy
(nothing is imported until a lookup), so importing a package stays cheap and a registering
module may import its package (`from jaxcv.train import tasks`) without a cycle at import.

Rules: registering a name twice is a ValueError; an unknown name is a ValueError listing the
known ones (after a second discovery, which finds files added since the first); a module
that fails to import during discovery raises, naming it. Modules listed in `skip` are not
imported by discovery (`jaxcv.data` skips `shapes_tfds`, which imports TensorFlow at its
top; discovery must never import TensorFlow or torch, so a registering module imports them
inside the functions that need them).
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class Registry:
  """Names -> objects for one kind of thing (`kind`: "model", "data set", "task"), whose
  registering modules live in package `package` (and its subpackages)."""

  def __init__(self, kind: str, package: str, *, plural: str | None = None,
               skip: Iterable[str] = ()):
    self.kind, self.plural = kind, plural or f"{kind}s"
    self.package = package
    self.skip = frozenset(skip)
    self._entries: dict[str, Any] = {}
    self._discovered = False
    # one discovery at a time (worker threads may look up while the main thread does);
    # `register` takes no lock: it runs inside the imports a discovery makes
    self._lock = threading.RLock()  # re-entrant: a module may look up while it is discovered

  def register(self, name: str, obj: Any = None) -> Any:
    """Registers `obj` as `name` and returns it; with `obj` None, a decorator that does so.

    ValueError if `name` is already registered (two files claiming one name would otherwise
    depend on the import order).
    """
    def add(o):
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is already registered (by "
                         f"{_origin(self._entries[name])}); registering it twice (now by "
                         f"{_origin(o)}) is an error")
      self._entries[name] = o
      return o
    return add if obj is None else add(obj)

  def unregister(self, name: str) -> Any:
    """Removes `name` and returns its object (tests that register temporary entries)."""
    return self._entries.pop(name)

  def names(self) -> list[str]:
    """Every registered name, sorted (discovers the package first)."""
    self.discover()
    return sorted(self._entries)

  def get(self, name: str) -> Any:
    """The object registered as `name`; ValueError listing the known names otherwise."""
    self.discover()
    if name not in self._entries:
      self.discover(again=True)  # a file added since the first discovery
    if name not in self._entries:
      raise ValueError(f"unknown {self.kind} {name!r}; known {self.plural}: {self.names()}")
    return self._entries[name]

  def __contains__(self, name: str) -> bool:
    self.discover()
    return name in self._entries

  def discover(self, again: bool = False) -> None:
    """Imports every module of the package not yet imported (once, unless `again`)."""
    if self._discovered and not again:
      return
    with self._lock:
      if self._discovered and not again:
        return
      for module in self.module_names():
        if module in sys.modules:
          continue
        try:
          importlib.import_module(module)
        except Exception as e:
          raise ImportError(f"discovering {self.plural} in {self.package}: importing "
                            f"{module} failed: {type(e).__name__}: {e}") from e
      self._discovered = True

  def module_names(self) -> Iterator[str]:
    """The importable modules of the package and its subpackages, less `skip`."""
    package = importlib.import_module(self.package)
    yield from _walk(package.__path__, f"{self.package}.", self.skip)


def _walk(path: Iterable[str], prefix: str, skip: frozenset[str]) -> Iterator[str]:
  for info in pkgutil.iter_modules(list(path)):
    if info.name in skip or info.name.startswith("__"):
      continue
    name = prefix + info.name
    yield name
    if info.ispkg:  # subpackages (e.g. `models/backbones/`) are discovered too
      package = importlib.import_module(name)
      yield from _walk(package.__path__, f"{name}.", skip)


def _origin(obj: Any) -> str:
  fn: Callable | Any = getattr(obj, "func", obj)  # functools.partial presets
  return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
