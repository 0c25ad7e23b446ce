"""jaxcv.registry: one mechanism for models, data sets and tasks, found by discovery."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO
from jaxcv import data, models
from jaxcv.registry import Registry
from jaxcv.train import tasks

PACKAGES = {"jaxcv.models": "model", "jaxcv.data": "data set", "jaxcv.train.tasks": "task"}

# A new model, data set and task, each ONE file put on its package's path (not in the source
# tree), registered by nothing but the file itself.
NEW_FILES = {
    "jaxcv.models": """
        import flax.linen as nn
        from jaxcv.models.registry import register

        @register("h5_tiny_model")
        class Tiny(nn.Module):
          num_classes: int = 2
        """,
    "jaxcv.data": """
        from jaxcv.data.registry import register

        @register("h5_tiny_set", splits=("train",))
        def load_tiny(split):
          return split
        """,
    "jaxcv.train.tasks": """
        from jaxcv.train import tasks
        from jaxcv.train.tasks.base import Task

        @tasks.register("h5_tiny_task")
        class TinyTask(Task):
          loss = eval_init = eval_update = result = None
        """,
}

# In a fresh process (the registries of this one were discovered long ago): puts the new
# files on the packages' paths, asks each registry for its names, then reports which modules
# of each package (listed from the files on disk) were imported, and whether TensorFlow or
# torch were.
PROBE = """
import importlib, json, os, sys
extra, packages = sys.argv[1], json.loads(sys.argv[2])
from jaxcv import data, models
from jaxcv.train import tasks
for pkg in packages:
  importlib.import_module(pkg).__path__.append(os.path.join(extra, pkg))
names = {"jaxcv.models": models.names(), "jaxcv.data": data.names(),
         "jaxcv.train.tasks": tasks.names()}
found = {"model": models.get("h5_tiny_model").__name__, "data": data.load("h5_tiny_set", "train"),
         "task": tasks.get("h5_tiny_task").name}
missing = {}
for pkg in packages:
  root = os.path.dirname(importlib.import_module(pkg).__file__)
  for d, _, files in os.walk(root):
    for f in files:
      if f.endswith(".py") and f != "__init__.py" and "__pycache__" not in d:
        mod = ".".join([pkg, *os.path.relpath(os.path.join(d, f[:-3]), root).split(os.sep)])
        if mod not in sys.modules:
          missing.setdefault(pkg, []).append(mod)
print(json.dumps({"names": names, "found": found, "missing": missing,
                  "tensorflow": "tensorflow" in sys.modules, "torch": "torch" in sys.modules}))
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
  extra = tmp_path_factory.mktemp("registries")
  for pkg, text in NEW_FILES.items():
    (extra / pkg).mkdir()
    (extra / pkg / "h5_new.py").write_text(textwrap.dedent(text))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH",
                                                                               "")]))
  out = subprocess.run([sys.executable, "-c", PROBE, str(extra), json.dumps(list(PACKAGES))],
                       capture_output=True, text=True, env=env, cwd=REPO, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_new_file_on_the_package_path_is_found_with_no_other_edit(probe):
  assert "h5_tiny_model" in probe["names"]["jaxcv.models"]
  assert "h5_tiny_set" in probe["names"]["jaxcv.data"]
  assert "h5_tiny_task" in probe["names"]["jaxcv.train.tasks"]
  assert probe["found"] == {"model": "Tiny", "data": "train", "task": "h5_tiny_task"}


def test_names_import_every_module_of_each_package_but_never_tensorflow_or_torch(probe):
  # every file but `shapes_tfds` (skipped: TensorFlow at its top) is imported by discovery
  assert probe["missing"] == {"jaxcv.data": ["jaxcv.data.shapes_tfds"]}
  assert not probe["tensorflow"] and not probe["torch"]
  # the built-in names, listed without importing any model, data or task module by hand
  assert {"lenet5", "resnet50", "unet", "vae"} <= set(probe["names"]["jaxcv.models"])
  assert {"digits", "shapes", "voc/2007"} <= set(probe["names"]["jaxcv.data"])
  assert {"classification", "segmentation", "depth", "vae"} <= set(
      probe["names"]["jaxcv.train.tasks"])


@pytest.mark.parametrize("registry, name", [
    (models.REGISTRY, "resnet18"), (data.REGISTRY, "digits"),
    (tasks.REGISTRY, "classification")])
def test_registering_a_known_name_again_is_an_error(registry, name):
  before = registry.get(name)
  with pytest.raises(ValueError, match=f"'{name}' is already registered.*twice"):
    registry.register(name, object())
  assert registry.get(name) is before


@pytest.mark.parametrize("lookup, match", [
    (lambda: models.get("resnet5"), r"unknown model 'resnet5'; known models: \[.*'resnet50'"),
    (lambda: data.load("digitz", "train"), r"unknown data set 'digitz'; known data sets: "
                                            r"\[.*'digits'"),
    (lambda: tasks.get("poetry"), r"unknown task 'poetry'; known tasks: \[.*'classification'"),
])
def test_unknown_names_list_the_known_ones(lookup, match):
  with pytest.raises(ValueError, match=match):
    lookup()


def _package(tmp_path, monkeypatch, name, files):
  root = tmp_path / name
  root.mkdir()
  (root / "__init__.py").write_text(
      f"from jaxcv.registry import Registry\nR = Registry('thing', {name!r}, skip=('heavy',))\n")
  for f, text in files.items():
    (root / f).parent.mkdir(parents=True, exist_ok=True)
    (root / f).write_text(textwrap.dedent(text))
  monkeypatch.syspath_prepend(str(tmp_path))
  __import__(name)
  return sys.modules[name].R


def test_registry_discovers_lazily_skips_and_finds_files_added_later(tmp_path, monkeypatch):
  r = _package(tmp_path, monkeypatch, "h5_pkg_a", {
      "one.py": "from h5_pkg_a import R\nR.register('one', 1)\nR.register('uno', 1)\n",
      "heavy.py": "raise RuntimeError('skipped modules are never imported')\n",
  })
  assert "h5_pkg_a.one" not in sys.modules  # nothing imported before the first lookup
  assert r.names() == ["one", "uno"] and r.get("uno") == 1 and "one" in r
  (tmp_path / "h5_pkg_a" / "two.py").write_text("from h5_pkg_a import R\nR.register('two', 2)\n")
  assert r.get("two") == 2  # a miss discovers again
  with pytest.raises(ValueError, match=r"unknown thing 'three'; known things: \['one', 'two', "
                                       r"'uno'\]"):
    r.get("three")
  assert r.unregister("two") == 2 and "two" not in r.names()


def test_a_module_that_fails_to_import_during_discovery_is_named(tmp_path, monkeypatch):
  r = _package(tmp_path, monkeypatch, "h5_pkg_b", {"broken.py": "import no_such_module_h5\n"})
  with pytest.raises(ImportError, match=r"importing h5_pkg_b\.broken failed: "
                                        r"ModuleNotFoundError.*no_such_module_h5"):
    r.names()


def test_subpackages_are_discovered(tmp_path, monkeypatch):
  r = _package(tmp_path, monkeypatch, "h5_pkg_c", {
      "deep/__init__.py": "", "deep/leaf.py": "from h5_pkg_c import R\nR.register('leaf', 1)\n"})
  assert r.get("leaf") == 1 and "h5_pkg_c.deep.leaf" in sys.modules
  assert isinstance(r, Registry)
