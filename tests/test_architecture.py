"""The package's layers (docs/architecture.md): no upward import, no import cycle, short files.

Read from the source with `ast` (every `import` and `from ... import`, also those inside
functions), so a lazy import that breaks the layering fails here too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jaxcv"

# what each part of jaxcv may import besides itself (docs/architecture.md); `train` is the top
ALLOWED = {
    "registry": set(),
    "ops": set(),
    "viz": set(),
    "layers": {"ops"},
    "metrics": {"ops"},
    "models": {"layers", "ops", "registry"},
    "data": {"ops", "metrics", "registry"},
    "weights": {"models", "layers", "ops", "registry"},
    "train": {"data", "metrics", "models", "layers", "ops", "viz", "weights", "registry"},
    # the inference command: an entry point above the loop, like train.py
    "predict": {"train", "data", "metrics", "models", "layers", "ops", "viz", "weights",
                "registry"},
}
MAX_LINES = 450


def modules() -> dict[str, Path]:
  """'jaxcv.ops.nms' -> its file, for every module of the package."""
  out = {}
  for path in sorted(PACKAGE.rglob("*.py")):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    out[name] = path
  return out


def imports(name: str, path: Path, top_level_only: bool = False) -> set[str]:
  """The jaxcv modules `name` imports: `import a.b` -> a.b; `from a import b` -> a.b when that
  is a module, else a (the names come from a's __init__)."""
  tree = ast.parse(path.read_text(), str(path))
  is_pkg = path.name == "__init__.py"
  nodes = tree.body if top_level_only else list(ast.walk(tree))
  found = set()
  for node in nodes:
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        pkg = name.split(".") if is_pkg else name.split(".")[:-1]
        pkg = pkg[:len(pkg) - node.level + 1]
        base = ".".join(pkg + ([base] if base else []))
      for a in node.names:
        found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
  return {m for m in found if m == "jaxcv" or m.startswith("jaxcv.")}


def part(module: str) -> str | None:
  """'jaxcv.ops.nms' -> 'ops'; the package itself -> None."""
  bits = module.split(".")
  return bits[1] if len(bits) > 1 else None


MODULES = modules()


def test_every_part_is_known():
  parts = {part(m) for m in MODULES} - {None}
  assert parts <= set(ALLOWED), f"parts not in docs/architecture.md: {parts - set(ALLOWED)}"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if part(m)))
def test_no_upward_import(name):
  mine = part(name)
  bad = sorted(m for m in imports(name, MODULES[name])
               if part(m) not in (mine, None) and part(m) not in ALLOWED[mine])
  assert not bad, (f"{name} ({mine}) imports {bad}; {mine} may import only "
                   f"{sorted(ALLOWED[mine])} (docs/architecture.md)")


def test_no_import_cycle_at_module_level():
  graph = {m: {i for i in imports(m, p, top_level_only=True) if i in MODULES and i != m}
           for m, p in MODULES.items()}
  state, stack, cycles = {}, [], []

  def visit(m):
    state[m] = "open"
    stack.append(m)
    for n in sorted(graph[m]):
      if state.get(n) == "open":
        cycles.append(stack[stack.index(n):] + [n])
      elif n not in state:
        visit(n)
    stack.pop()
    state[m] = "done"

  for m in sorted(graph):
    if m not in state:
      visit(m)
  assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_file_over_the_line_limit():
  long = {str(p.relative_to(PACKAGE.parent)): n for p in MODULES.values()
          if (n := len(p.read_text().splitlines())) > MAX_LINES}
  assert not long, f"files over {MAX_LINES} lines (split them along their ideas): {long}"
