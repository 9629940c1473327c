"""Deterministic torchvision-ResNet weights from numpy, for the golden weight-port test.

`state_dict(depth)` names and shapes its arrays exactly as torchvision's `resnet{depth}` does
(BasicBlock for 18/34, Bottleneck for 50), so the same arrays can be loaded into torchvision
(tests/golden/make_torchvision_logits.py, once, with torch) and ported into the Flax model
(tests/test_pretrained.py, always, without torch). Fixed seeds: no weights file is stored.
"""
from __future__ import annotations

import numpy as np

NUM_CLASSES = 10
SIZE = 64  # input height = width
BATCH = 2
_BLOCKS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
           50: ("bottleneck", (3, 4, 6, 3))}


def _conv(rng, out_c, in_c, k):
  """He-normal conv weight [O, I, k, k] (torchvision layout)."""
  return rng.normal(0.0, np.sqrt(2.0 / (in_c * k * k)), (out_c, in_c, k, k)).astype(np.float32)


def _bn(rng, prefix, c, scale=(0.5, 1.5)):
  """Non-trivial BatchNorm affine and running statistics."""
  return {f"{prefix}.weight": rng.uniform(*scale, c).astype(np.float32),
          f"{prefix}.bias": rng.normal(0.0, 0.1, c).astype(np.float32),
          f"{prefix}.running_mean": rng.normal(0.0, 0.2, c).astype(np.float32),
          f"{prefix}.running_var": rng.uniform(0.5, 2.0, c).astype(np.float32),
          f"{prefix}.num_batches_tracked": np.array(7, np.int64)}


def state_dict(depth: int, seed: int | None = None) -> dict[str, np.ndarray]:
  """`{torchvision name: array}` of a resnet{depth} with NUM_CLASSES outputs (seed: depth)."""
  kind, blocks = _BLOCKS[depth]
  rng = np.random.default_rng(depth if seed is None else seed)
  sd = {"conv1.weight": _conv(rng, 64, 3, 7), **_bn(rng, "bn1", 64)}
  expansion = 1 if kind == "basic" else 4
  in_c = 64
  for stage, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
    for i in range(n):
      p = f"layer{stage}.{i}"
      if kind == "basic":
        convs = [(planes, in_c, 3), (planes, planes, 3)]
      else:
        convs = [(planes, in_c, 1), (planes, planes, 3), (planes * expansion, planes, 1)]
      for j, (o, c_in, k) in enumerate(convs, start=1):
        sd[f"{p}.conv{j}.weight"] = _conv(rng, o, c_in, k)
        # The last BN of a branch is small, so the residual sum stays O(1) through the net.
        sd.update(_bn(rng, f"{p}.bn{j}", o, (0.1, 0.3) if j == len(convs) else (0.5, 1.5)))
      stride = 2 if stage > 1 and i == 0 else 1
      if stride != 1 or in_c != planes * expansion:
        sd[f"{p}.downsample.0.weight"] = _conv(rng, planes * expansion, in_c, 1)
        sd.update(_bn(rng, f"{p}.downsample.1", planes * expansion))
      in_c = planes * expansion
  sd["fc.weight"] = rng.normal(0.0, 1.0 / np.sqrt(in_c), (NUM_CLASSES, in_c)).astype(np.float32)
  sd["fc.bias"] = rng.normal(0.0, 0.1, NUM_CLASSES).astype(np.float32)
  return sd


def inputs(depth: int) -> np.ndarray:
  """[BATCH, SIZE, SIZE, 3] images in [0, 1] (seed: 1000 + depth)."""
  return np.random.default_rng(1000 + depth).random((BATCH, SIZE, SIZE, 3), np.float32)


def checksum(sd: dict[str, np.ndarray]) -> float:
  """Sum of |w| over every float array: tells a changed generator from a broken port."""
  return float(sum(np.abs(v.astype(np.float64)).sum() for v in sd.values()
                   if np.issubdtype(v.dtype, np.floating)))
