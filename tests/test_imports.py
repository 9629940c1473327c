"""The import graph of aplt_jax: no cycle (function-level imports included), and the data layer
imports nothing above it but the leaf helpers. Static (ast), so it costs no JAX import."""
import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "aplt_jax"
# What aplt_jax/data/ may import from outside itself: helpers that import nothing of the project's.
DATA_MAY_IMPORT = {"aplt_jax.errors", "aplt_jax.registry", "aplt_jax.files", "aplt_jax.workdir",
                   "aplt_jax.evaluate"}


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for path in sorted(PACKAGE.rglob("*.py")):
    parts = path.relative_to(ROOT).with_suffix("").parts
    out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return out


def _imports(path: pathlib.Path, modules) -> set[str]:
  """Project modules imported anywhere in `path` (module level and inside functions)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name in modules)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
      found.update(subs or ({node.module} & set(modules)))
  return found


# Packages whose __init__ imports its plugins last, after defining what they import back
# (`register`): the plugin -> package edge is how the plugins register, not a cycle.
PLUGIN_PACKAGES = ("aplt_jax.ssl", "aplt_jax.models")


def _graph():
  modules = _modules()
  graph = {}
  for name, path in modules.items():
    graph[name] = {m for m in _imports(path, modules)
                   if not (m in PLUGIN_PACKAGES and name.startswith(m + "."))}
  return graph


def _find_cycle(graph) -> list[str] | None:
  state, stack = {}, []

  def visit(node):
    state[node] = 1
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 1:
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        cycle = visit(nxt)
        if cycle:
          return cycle
    stack.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def test_graph_sees_the_modules():
  graph = _graph()
  assert {"aplt_jax.data.video", "aplt_jax.data.video.ma52", "aplt_jax.augment",
          "aplt_jax.ma52", "aplt_jax.predict"} <= set(graph)
  assert "aplt_jax.predict" in graph["aplt_jax.ma52"]  # the submission app needs predict
  assert "aplt_jax.data.video.ma52" in graph["aplt_jax.data.video"]
  assert "aplt_jax.ssl" not in graph["aplt_jax.ssl.fixmatch"]  # a plugin registering itself


def test_no_import_cycle():
  cycle = _find_cycle(_graph())
  assert cycle is None, " -> ".join(cycle)


def test_a_cycle_would_be_found():
  assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_data_layer_imports_nothing_above_it():
  bad = {f"{name} -> {m}" for name, deps in _graph().items() if name.startswith("aplt_jax.data")
         for m in deps if not m.startswith("aplt_jax.data") and m not in DATA_MAY_IMPORT}
  assert not bad, sorted(bad)
  for helper in DATA_MAY_IMPORT:  # and the helpers stay leaves (errors only)
    assert _graph()[helper] <= {"aplt_jax.errors", "aplt_jax.files", "aplt_jax.checkpoint"}


def test_the_cycle_prone_modules_import_alone():
  """The modules of the old cycle (data -> ma52 -> predict -> data), each first in a fresh
  interpreter."""
  for module in ("aplt_jax.data.video", "aplt_jax.ma52", "aplt_jax.predict",
                 "aplt_jax.data.sequences", "aplt_jax.augment"):
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, cwd=ROOT)
