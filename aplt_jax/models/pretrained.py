"""Pretrained TSM-ResNet weights: torchvision ImageNet ResNets and mmaction2 TSM checkpoints.

TSM-ResNet is torchvision's ResNet (v1.5) applied per frame, with a weight-free temporal shift in
each residual branch, and `TSMResNet` names its submodules as torchvision does. The port is thus
a renaming plus layout changes: conv weights [O, I, kh, kw] -> Flax kernels [kh, kw, I, O];
BatchNorm `weight`/`bias` -> `scale`/`bias` params and `running_mean`/`running_var` -> the
`mean`/`var` batch statistics; `layerS.I.downsample.{0,1}` -> `layerS_I/downsample_{conv,bn}`;
`fc` -> the linear `head` only when asked (`include_head`), since a run's head usually has its
own classes and stays random.

mmaction2 TSM-ResNet checkpoints (e.g. Kinetics-400 TSM-R50, `backbone.*` / `cls_head.*` keys)
are the same network under other names: `backbone.conv1.{conv,bn}` is the stem,
`layerS.I.convK.conv[.net].weight` a block's conv (`.net` where the temporal shift wraps it),
`layerS.I.convK.bn` its BatchNorm, `downsample.{conv,bn}` the projection, and
`cls_head.fc_cls` the head (mmaction2 averages per-frame logits, which for a linear head is
the head of the averaged features, as here). `torchvision_names` renames them first.

Files: `.safetensors` are read with the `safetensors` package (no torch); `.pth`/`.pt` need torch
(`pip install -r requirements-torch.txt`), imported only when such a file is given. Convert once
to drop torch from a training machine:
  python -m aplt_jax.models.pretrained --input=resnet50.pth --output=resnet50.safetensors
"""
from __future__ import annotations

import os
import pickle
import re
from typing import Any, Mapping

import numpy as np

from aplt_jax.errors import ConfigError

_LAYER = re.compile(r"^layer(\d+)\.(\d+)\.(.+)$")
_BN_PARAMS = {"weight": "scale", "bias": "bias"}
_BN_STATS = {"running_mean": "mean", "running_var": "var"}
# mmaction2 backbone name (less `backbone.`) -> torchvision name.
_MMACTION2 = (
    (re.compile(r"^conv1\.conv\.weight$"), r"conv1.weight"),
    (re.compile(r"^conv1\.bn\.(\w+)$"), r"bn1.\1"),
    (re.compile(r"^(layer\d+\.\d+)\.conv(\d)\.conv(?:\.net)?\.weight$"), r"\1.conv\2.weight"),
    (re.compile(r"^(layer\d+\.\d+)\.conv(\d)\.bn\.(\w+)$"), r"\1.bn\2.\3"),
    (re.compile(r"^(layer\d+\.\d+)\.downsample\.conv\.weight$"), r"\1.downsample.0.weight"),
    (re.compile(r"^(layer\d+\.\d+)\.downsample\.bn\.(\w+)$"), r"\1.downsample.1.\2"),
)


def read_state_dict(path: str | os.PathLike, trust_pickle: bool = False
                    ) -> dict[str, np.ndarray]:
  """`{torch name: float32 array}` from a `.safetensors` or a torch `.pth`/`.pt` file.

  `.pth` files are unpickled with `weights_only` (tensors and plain containers) unless
  `trust_pickle` (the converter's flag, for checkpoints that also pickle training objects).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ConfigError(f"model.pretrained={path!r} does not exist.")
  try:
    if path.endswith(".safetensors"):
      from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
      raw = load_file(path)
    else:
      raw = _read_torch(path, trust_pickle)
  except ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # corrupt or not a weights file
    raise ConfigError(f"model.pretrained={path!r} cannot be read as weights "
                      f"({type(e).__name__}: {e}).") from e
  out = {}
  for name, value in raw.items():
    name = name[len("module."):] if name.startswith("module.") else name  # DataParallel
    value = np.asarray(value)
    out[name] = value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value
  return out


def _read_torch(path: str, trust_pickle: bool) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConfigError(
        f"Reading {path} needs PyTorch, which training does not install. Either install it "
        "(`pip install -r requirements-torch.txt`) or convert the file once where torch is "
        f"installed: python -m aplt_jax.models.pretrained --input={path} "
        f"--output={os.path.splitext(path)[0]}.safetensors") from None
  try:  # weights_only: tensors and plain containers only, never code from the file
    obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
  except pickle.UnpicklingError:  # torch's message suggests weights_only=False: not passed on
    raise ConfigError(
        f"{path} holds pickled Python objects besides tensors (e.g. a training checkpoint's "
        "optimizer or logger state), which are never loaded by default because unpickling a "
        "file can run code. Save a plain state_dict (torch.save(model.state_dict(), path)), use "
        "a .safetensors file, or, for a file you made or fully trust, convert it once: python -m "
        f"aplt_jax.models.pretrained --input={path} "
        f"--output={os.path.splitext(path)[0]}.safetensors --trust_pickle") from None
  for key in ("state_dict", "model"):  # training checkpoints wrap the state_dict
    if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
      obj = obj[key]
  if not isinstance(obj, Mapping):
    raise ConfigError(f"{path} holds a {type(obj).__name__}, not a state_dict.")
  return {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy()
          for k, v in obj.items() if hasattr(v, "numpy")}


def _flax_path(name: str, include_head: bool) -> tuple[str, tuple[str, ...]] | None:
  """torch name -> ('params' | 'batch_stats', Flax path), or None for what is not ported."""
  module, _, leaf = name.rpartition(".")
  if leaf == "num_batches_tracked":
    return None
  if module == "fc":
    if not include_head:
      return None
    return "params", ("head", {"weight": "kernel", "bias": "bias"}[leaf])
  m = _LAYER.match(module)
  if m:
    stage, block, sub = m.groups()
    parts = (f"layer{stage}_{block}",)
    sub = {"downsample.0": "downsample_conv", "downsample.1": "downsample_bn"}.get(sub, sub)
  else:
    parts, sub = (), module
  parts = ("backbone", *parts, sub)
  if sub.startswith("conv") or sub == "downsample_conv":
    if leaf != "weight":
      raise ConfigError(f"unexpected conv parameter {name!r} (torchvision convs have no bias)")
    return "params", (*parts, "kernel")
  if leaf in _BN_PARAMS:
    return "params", (*parts, _BN_PARAMS[leaf])
  if leaf in _BN_STATS:
    return "batch_stats", (*parts, _BN_STATS[leaf])
  raise ConfigError(f"unexpected parameter {name!r} in a torchvision ResNet state_dict")


def _to_flax(name: str, value: np.ndarray) -> np.ndarray:
  if value.ndim == 4:  # conv [O, I, kh, kw] -> [kh, kw, I, O]
    return np.transpose(value, (2, 3, 1, 0))
  if name == "fc.weight":  # [C, d] -> [d, C]
    return value.T
  return value


def _get(tree: Mapping, path: tuple[str, ...]) -> Any:
  for p in path:
    if not isinstance(tree, Mapping) or p not in tree:
      return None
    tree = tree[p]
  return tree


def _leaves(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_leaves(v, (*prefix, k)))
    else:
      out[(*prefix, k)] = v
  return out


def _set(tree: Mapping, path: tuple[str, ...], value: Any) -> dict:
  """A copy of the nested dict `tree` with `path` replaced (dicts copied along the path)."""
  out = dict(tree)
  out[path[0]] = value if len(path) == 1 else _set(tree[path[0]], path[1:], value)
  return out


def torchvision_names(names) -> dict[str, str]:
  """`{torchvision name: name in the file}` for the entries of a state_dict.

  torchvision files map to themselves. An mmaction2 checkpoint (any `backbone.` key) has its
  backbone and `cls_head.fc_cls` entries renamed; its `data_preprocessor.*` buffers are
  dropped; anything else keeps its name, so `port` reports it as an entry the model lacks.
  """
  names = list(names)
  if not any(n.startswith("backbone.") for n in names):
    return {n: n for n in names}
  out = {}
  for name in names:
    new = name
    if name.startswith("backbone."):
      for pattern, repl in _MMACTION2:
        if pattern.match(name[len("backbone."):]):
          new = pattern.sub(repl, name[len("backbone."):])
          break
    elif name.startswith("cls_head.fc_cls."):
      new = "fc." + name[len("cls_head.fc_cls."):]
    elif name.startswith("data_preprocessor."):
      continue
    out[new] = name
  return out


def head_fits(state_dict: Mapping[str, np.ndarray], params: Mapping) -> bool:
  """Whether the file's classifier (`fc` / `cls_head.fc_cls`) has the model head's shape."""
  names = torchvision_names(state_dict)
  head = _get(params, ("head", "kernel"))
  if "fc.weight" not in names or "fc.bias" not in names or head is None:
    return False
  return tuple(np.shape(state_dict[names["fc.weight"]]))[::-1] == tuple(head.shape)


def port(state_dict: Mapping[str, np.ndarray], params: Mapping, batch_stats: Mapping, *,
         include_head: bool = False, source: str = "the state_dict") -> tuple[dict, dict]:
  """`(params, batch_stats)` of a Classifier(TSMResNet) with the file's weights put in.

  `state_dict` is torchvision's or mmaction2's layout (see `torchvision_names`); `params` /
  `batch_stats` give the structure, shapes and dtypes (arrays or ShapeDtypeStructs); the result
  holds numpy arrays where the file filled them and the given leaves elsewhere.

  Every backbone parameter and statistic must be filled, with the same shape; anything left
  over in the state_dict (other than the head and `num_batches_tracked`) is an error too, so a
  ResNet-18 file given to a ResNet-50 model fails with the names that differ.

  Raises:
    ConfigError: naming the missing, unexpected or mis-shaped entries (as the file names them).
  """
  new = {"params": dict(params), "batch_stats": dict(batch_stats)}
  filled, unexpected, mismatched = set(), [], []
  for name, file_name in torchvision_names(state_dict).items():
    target = _flax_path(name, include_head)
    if target is None:
      continue
    coll, path = target
    current = _get(new[coll], path)
    if current is None:
      unexpected.append(file_name)
      continue
    value = _to_flax(name, np.asarray(state_dict[file_name]))
    if tuple(value.shape) != tuple(current.shape):
      mismatched.append(f"{file_name} {tuple(value.shape)} vs {'/'.join(path)} "
                        f"{tuple(current.shape)}")
      filled.add((coll, path))  # present, reported as mis-shaped rather than missing
      continue
    new[coll] = _set(new[coll], path, value.astype(current.dtype))
    filled.add((coll, path))
  wanted = {(coll, path) for coll in ("params", "batch_stats")
            for path in _leaves(new[coll]) if path[0] == "backbone" or (
                include_head and path[0] == "head")}
  missing = sorted("/".join((c, *p)) for c, p in wanted - filled)
  if missing or unexpected or mismatched:
    parts = []
    if mismatched:
      parts.append(f"{len(mismatched)} with other shapes, in Flax layout "
                   f"({'; '.join(mismatched[:3])})")
    if missing:
      parts.append(f"{len(missing)} model entries not in the file ({', '.join(missing[:3])})")
    if unexpected:
      parts.append(f"{len(unexpected)} file entries the model lacks ({', '.join(unexpected[:3])})")
    raise ConfigError(
        f"The weights in {source} do not fit this backbone: {'; '.join(parts)}. torchvision "
        "ImageNet ResNets and mmaction2 TSM-ResNets (shift_place='blockres') fit "
        "model.name=tsm_resnet18/34/50 of the same depth with model.width_mult=1.0, "
        "model.stem='imagenet' and model.input_mode='rgb' (or 'diff').")
  return new["params"], new["batch_stats"]


def load_into_state(state, path: str, mesh):
  """`state` with its backbone (params, EMA params, BatchNorm statistics) from `path`.

  The file's classifier head is taken too when its class count is the model's (an mmaction2
  MA-52 checkpoint for an MA-52 run); otherwise the head stays random.
  """
  from aplt_jax import parallel  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  host = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
  state_dict = read_state_dict(path)
  params, stats = port(state_dict, host["params"], host["batch_stats"], source=path,
                       include_head=head_fits(state_dict, host["params"]))
  # Two transfers: params and EMA params must not share buffers (the train step donates both).
  return state.replace(params=parallel.replicate(mesh, params),
                       ema_params=parallel.replicate(mesh, params),
                       batch_stats=parallel.replicate(mesh, stats))


def main(argv=None) -> None:
  """`--input=X.pth --output=Y.safetensors`: convert a torch state_dict once (needs torch).

  torchvision and mmaction2 files keep their names; `port` maps either layout.
  """
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=main.__doc__)
  parser.add_argument("--input", required=True)
  parser.add_argument("--output", required=True)
  parser.add_argument("--trust_pickle", action="store_true",
                      help="unpickle a .pth fully (runs its code: only for files you trust)")
  args = parser.parse_args(argv)
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  tensors = {k: np.ascontiguousarray(v)
             for k, v in read_state_dict(args.input, args.trust_pickle).items()}
  save_file(tensors, args.output)
  print(f"wrote {len(tensors)} tensors to {args.output}")


if __name__ == "__main__":
  main()
