"""The tiny configuration shared by end-to-end tests: configs/demo.py shrunk to seconds.

4 classes, 48 training clips of 4 x 16 x 16, 2 warm-up steps then 2 rounds of 4 steps.
"""
from configs import demo

TINY = {
    "data.num_classes": 4,
    "data.labeled_ratio": 0.25,
    "data.synthetic.num_train": 48,
    "data.synthetic.num_test": 24,
    "data.synthetic.num_frames": 4,
    "data.synthetic.size": 16,
    "data.read_threads": 2,
    "model.width_mult": 0.125,
    "model.image_size": 12,
    "batch_size": 4,
    "uratio": 2,
    "total_steps": 10,
    "warmup_steps": 2,
    "steps_per_round": 4,
    "aplt.labeled_views": 1,
    "eval.batch_size": 8,
    "eval.every_steps": 100,
    "log_every": 1,
    "checkpoint_every": 3,
    "progress": False,
}


def tiny_config(data_dir, method="aplt", **extra):
  """configs/demo.py with TINY, `data.data_dir` and `extra` (dotted keys) applied."""
  c = demo.get_config(method)
  for key, value in {**TINY, "data.data_dir": str(data_dir), **extra}.items():
    node = c
    *path, leaf = key.split(".")
    for p in path:
      node = node[p]
    node[leaf] = value
  return c
