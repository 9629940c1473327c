"""The configs and grids shipped with aplt_jax, found by path from any working directory.

`python main.py --config=configs/demo.py` reads the file relative to the working directory, as
ml_collections does. Installed (`pip install -e .`), `configs/...` paths that do not exist
there fall back to this package's own files, so `aplt-train --config=configs/demo.py` works
from anywhere; `catalog()` lists the files, their presets and the methods.
"""
from __future__ import annotations

import ast
import os
import textwrap

ROOT = os.path.dirname(os.path.abspath(__file__))
_PREFIX = "configs" + os.sep


def locate(spec: str) -> str:
  """`configs/<file>.py[:preset]` -> the same, or this package's file if it is not found here."""
  path, sep, preset = spec.partition(":")
  norm = os.path.normpath(path)
  if os.path.exists(path) or not norm.startswith(_PREFIX):
    return spec
  shipped = os.path.join(ROOT, norm[len(_PREFIX):])
  return shipped + sep + preset if os.path.exists(shipped) else spec


def with_shipped_paths(argv: list[str], flag_names=("config", "grid")) -> list[str]:
  """`argv` with each `--<flag>=configs/...` value passed through `locate`."""
  out = []
  for arg in argv:
    name, eq, value = arg.partition("=")
    out.append(f"{name}={locate(value)}" if eq and name.lstrip("-") in flag_names else arg)
  return out


def _describe(path: str) -> tuple[str, list[str]]:
  """(first docstring line, the get_config / get_grid parameter names) of a config file."""
  with open(path) as f:
    tree = ast.parse(f.read())
  doc = (ast.get_docstring(tree) or "").strip().splitlines()
  args = [a.arg for node in tree.body if isinstance(node, ast.FunctionDef)
          and node.name in ("get_config", "get_grid") for a in node.args.args]
  return (doc[0] if doc else ""), args


def _short(doc: str) -> str:
  return textwrap.shorten(doc, 70, placeholder=" ...")


def catalog() -> str:
  """The shipped configs with their presets, the methods, and the grids: a few lines."""
  from configs import default  # pylint: disable=g-import-not-at-top
  methods = ", ".join(default.METHODS)
  lines = ["configs (--config=configs/<file>.py[:preset]; presets: the methods):"]
  for name in sorted(os.listdir(ROOT)):
    if name.endswith(".py") and name != "__init__.py":
      doc, args = _describe(os.path.join(ROOT, name))
      entry = f"configs/{name}" + ("[:method]" if args == ["method"] else "")
      lines.append(f"  {entry:<27} {_short(doc)}")
  lines.append(f"methods (config.method, or the :preset): {methods}")
  lines.append("grids (python -m aplt_jax.experiments --grid=...):")
  for name in sorted(os.listdir(os.path.join(ROOT, "grids"))):
    if name.endswith(".py") and name != "__init__.py":
      doc = _describe(os.path.join(ROOT, "grids", name))[0]
      lines.append(f"  {'configs/grids/' + name:<27} {_short(doc)}")
  return "\n".join(lines)
