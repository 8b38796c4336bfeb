"""The layering of talkjax/, read from the source (every import, also inside functions):
no import cycles, and the generic layers (train/, pipelines/, commands/) never import a
model family: they reach families through the registry in talkjax/models/__init__.py."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "talkjax"
GENERIC = ("talkjax.train", "talkjax.pipelines", "talkjax.commands")
REGISTRY = "talkjax.models"


def modules(root=ROOT) -> dict[str, pathlib.Path]:
  out = {}
  for path in root.rglob("*.py"):
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = path
  return out


def import_graph(mods: dict[str, pathlib.Path]) -> dict[str, set[str]]:
  """module -> the talkjax modules it imports (a package's __init__ counts as a module)."""
  graph = {}
  for name, path in mods.items():
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    deps = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        deps.update(a.name for a in node.names)
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          parts = package.split(".")[:len(package.split(".")) - node.level + 1]
          base = ".".join(parts + ([base] if base else []))
        deps.add(base)
        deps.update(f"{base}.{a.name}" for a in node.names)   # `from pkg import module`
    graph[name] = {d for d in deps if d in mods and d != name}
  return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def family_imports(graph, prefixes=GENERIC) -> list[str]:
  return sorted(f"{m} -> {d}" for m, deps in graph.items() if m.startswith(prefixes)
                for d in deps if d.startswith(REGISTRY + "."))


def test_no_import_cycles_in_talkjax():
  assert cycles(import_graph(modules())) == []


def test_generic_layers_import_no_model_family():
  graph = import_graph(modules())
  assert family_imports(graph) == []
  # The registry names families by string only, so importing it imports none of them.
  assert not {d for d in graph[REGISTRY] if d.startswith(REGISTRY + ".")}


@pytest.mark.parametrize("bad, expect", [
    ({"talkjax/train/x.py": "from talkjax.models.ifmdm import tasks\n"}, "family"),
    ({"talkjax/a.py": "def f():\n  from talkjax import b\n",
      "talkjax/b.py": "import talkjax.a\n"}, "cycle"),
])
def test_the_checks_catch_what_they_are_for(tmp_path, bad, expect):
  files = {"talkjax/__init__.py": "", "talkjax/train/__init__.py": "",
           "talkjax/models/__init__.py": "", "talkjax/models/ifmdm/__init__.py": "",
           "talkjax/models/ifmdm/tasks.py": "", **bad}
  for name, text in files.items():
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(text)
  graph = import_graph(modules(tmp_path / "talkjax"))
  if expect == "family":
    assert family_imports(graph) == ["talkjax.train.x -> talkjax.models.ifmdm",
                                     "talkjax.train.x -> talkjax.models.ifmdm.tasks"]
  else:
    assert cycles(graph) == [["talkjax.a", "talkjax.b"]]
