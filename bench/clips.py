"""Generated prepared video sets at a real dataset's stored shape, for the full-size benchmarks.

`prepare_generated(data_dir, params, num_train=..., num_val=..., num_classes=...)` writes what
`python -m aplt_jax.prepare --dataset=ma52` would (the same builder, features, metadata and
ArrayRecord files under `data_dir/ma52/<config>`), but with generated clips instead of decoded
videos, so the trainer opens it with `data.name=ma52, data.data_dir=data_dir` and no download or
video decoding. A clip is a smooth random texture drifting a few pixels per frame plus noise of
about one level; the noise leaves it all but incompressible (stored at full size: the largest
volume to read and decompress, so a pessimistic case for the input pipeline).
"""
from __future__ import annotations

import functools
import os

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from aplt_jax.data import prepared as prepared_lib
from aplt_jax.data import video as video_lib
from aplt_jax.data.video.shards import SHARD_SIZE  # clips per ArrayRecord file, as `prepare`


def generated_clip(shape: tuple[int, int, int, int], seed: int) -> np.ndarray:
  """uint8 `shape` = [F, H, W, 3]: a drifting smooth texture plus small noise."""
  f, h, w, _ = shape
  rng = np.random.default_rng(seed)
  cell = 16
  coarse = rng.integers(0, 256, (h // cell + 3, w // cell + 3, 3)).astype(np.float32)
  big = np.repeat(np.repeat(coarse, cell, 0), cell, 1)  # blocky texture
  k = np.ones(cell, np.float32) / cell  # box blur both ways: smooth gradients
  big = np.apply_along_axis(lambda v: np.convolve(v, k, "same"), 0, big)
  big = np.apply_along_axis(lambda v: np.convolve(v, k, "same"), 1, big)
  dy, dx = rng.integers(-2, 3, 2)
  out = np.empty(shape, np.uint8)
  for t in range(f):
    y0, x0 = cell + dy * t % cell, cell + dx * t % cell
    frame = big[y0:y0 + h, x0:x0 + w] + rng.normal(0, 1.0, (h, w, 3))
    out[t] = np.clip(frame, 0, 255).astype(np.uint8)
  return out


class GeneratedMa52(video_lib.Ma52Videos, skip_registration=True):
  """MA-52's prepared layout (same name, so the trainer finds its files) with generated clips.

  Module level, so Grain's worker processes can unpickle sources that hold one. `plan` (set by
  `prepare_generated`, used only while preparing) gives the split sizes and class count; clip
  i has class i % num_classes.
  """
  name = "ma52"
  pkg_dir_path = epath.Path(os.path.dirname(os.path.abspath(__file__)))  # not a package
  ENCODING = None  # the video feature's TFDS encoding; None: the builder's own
  plan: dict = {}

  def _info(self):
    info = super()._info()
    if self.ENCODING is None:
      return info
    p = self.params
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "video": tfds.features.Tensor(shape=p.spec.shape, dtype=np.uint8,
                                          encoding=self.ENCODING),
            "label": tfds.features.Tensor(shape=(), dtype=np.int64),
            "index": tfds.features.Tensor(shape=(), dtype=np.int64)}),
        supervised_keys=("video", "label"), disable_shuffling=True,
        metadata=tfds.core.MetadataDict())

  def _shard_iterators_per_split(self, dl_manager):
    del dl_manager
    sizes, num_classes = self.plan["sizes"], self.plan["num_classes"]
    self.info.metadata.update({
        "class_names": [f"class_{i}" for i in range(num_classes)],
        "num_classes": num_classes,
        "videos": {s: [f"{s}_{i:05d}" for i in range(n)] for s, n in sizes.items()},
        "source": "generated", "report": {}})
    return {s: [functools.partial(self._examples, s, i, min(i + SHARD_SIZE, n))
                for i in range(0, n, SHARD_SIZE)] for s, n in sizes.items()}

  def _examples(self, split: str, start: int, stop: int):
    offset = 0 if split == "train" else 1_000_000
    for index in range(start, stop):
      clip = generated_clip(self.params.spec.shape, offset + index)
      yield index, {"video": clip, "label": index % self.plan["num_classes"], "index": index}


class GeneratedMa52Varint(GeneratedMa52, skip_registration=True):
  """The same in the stored format of builder version 1.0.0: one int64 varint per pixel."""
  name = "ma52"
  ENCODING = "none"


ENCODINGS = {"bytes": GeneratedMa52, "varint": GeneratedMa52Varint}


def prepare_generated(data_dir: str, params: video_lib.VideoParams, *, num_train: int,
                      num_val: int, num_classes: int, encoding: str = "bytes"):
  """Prepares (once) `num_train` + `num_val` generated clips in MA-52's format; the builder.

  `encoding`: "bytes" stores the clip as `prepare` does (raw bytes); "varint" as builder version
  1.0.0 did, to measure that format (give each its own `data_dir`).
  """
  builder = video_lib.video_builder("ma52", params, data_dir)
  cls = ENCODINGS[encoding]
  cls.plan = {"sizes": {"train": num_train, "val": num_val}, "num_classes": num_classes}
  gen = cls(data_dir=os.fspath(data_dir), config=builder.builder_config)
  return prepared_lib.prepare(gen)
