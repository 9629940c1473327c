"""Device memory of the full-size train step, from XLA's compiled memory analysis (no data, no run).

    python bench/memory.py [--config configs/ma52.py] [--batch 1 2 4] [--method aplt]

Compiles the trainer's online step (`steps.make_train_step`: four views, forward, backward,
optimizer and EMA update, state donated) for the config's model, stored clip shape and
unlabeled ratio at each per-device labeled batch B (B labeled + mu*B unlabeled clips), on a
one-device mesh: with data parallelism each device runs this program on its rows, with the
state replicated. It prints XLA's `memory_analysis()` of the compiled program: arguments
(state, batch, prototypes), outputs, aliased (donated) bytes, temporaries, and the peak
estimate arguments + outputs - aliased + temporaries. The figures are those of the backend it
runs on: run it on the accelerator to size a batch for it (on the CPU, convolutions and bf16
are laid out differently, so treat CPU figures as an estimate). Nothing is executed, so a
batch that would not fit still reports.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top
import runs  # noqa: E402  pylint: disable=g-import-not-at-top

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from aplt_jax import models  # noqa: E402
from aplt_jax import ssl  # noqa: E402
from aplt_jax import steps  # noqa: E402
from aplt_jax import views as views_lib  # noqa: E402
from aplt_jax.state import Prototypes  # noqa: E402

GIB = 2 ** 30


def load_config(path: str, method: str):
  spec = importlib.util.spec_from_file_location("bench_memory_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(method)


def abstract_inputs(c, batch: int, num_train: int):
  """ShapeDtypeStructs of (state, batch, prototypes) for a per-device labeled batch."""
  v = c.data.video
  model = models.build(c.model.name, c.data.num_classes, **models.kwargs_from_config(c.model))
  views = views_lib.build("video", c, frames_per_segment=v.frames_per_segment)
  method = ssl.get(c.method, c.ssl)
  tx = steps.make_optimizer(c.optim, c.total_steps)
  frames = v.num_frames * v.frames_per_segment
  clip = (frames, v.height, v.width, 3)
  num_unlabeled = num_train - int(round(c.data.labeled_ratio * num_train))
  sample = jax.ShapeDtypeStruct((1, *clip), jnp.uint8)
  state = jax.eval_shape(lambda k, x: steps.create_train_state(
      model, tx, method, key=k, sample_x=views.center(x), num_classes=c.data.num_classes,
      num_unlabeled=num_unlabeled), jax.random.key(0), sample)
  feats = model.backbone.feature_dim
  protos = jax.eval_shape(lambda: Prototypes.empty(c.data.num_classes, feats, num_train))
  i32 = lambda n: jax.ShapeDtypeStruct((n,), jnp.int32)
  x = lambda n: jax.ShapeDtypeStruct((n, *clip), jnp.uint8)
  data = {"labeled": {"x": x(batch), "label": i32(batch)}}
  if method.uses_unlabeled:
    u = c.uratio * batch
    data["unlabeled"] = {"x": x(u), "index": i32(u), "uidx": i32(u), "hidden": i32(u)}
  step = steps.make_train_step(method, views, steps.LossWeights.from_config(c), c.ema_decay)
  num_views = (1 + method.uses_prototypes) * batch + (2 * c.uratio * batch
                                                      if method.uses_unlabeled else 0)
  return step, (state, data, protos), clip, num_views


def analyse(c, batch: int, num_train: int) -> dict:
  step, args, clip, num_views = abstract_inputs(c, batch, num_train)
  t = time.perf_counter()
  lowered = jax.jit(step, donate_argnums=(0,)).lower(*args)
  compiled = lowered.compile()
  seconds = time.perf_counter() - t
  m = compiled.memory_analysis()
  peak = (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
          + m.temp_size_in_bytes)
  return {"args": m.argument_size_in_bytes, "out": m.output_size_in_bytes,
          "alias": m.alias_size_in_bytes, "temp": m.temp_size_in_bytes, "peak": peak,
          "compile_s": seconds, "clip": clip, "views": num_views}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="configs/ma52.py")
  p.add_argument("--method", default="aplt")
  p.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4],
                 help="per-device labeled batch sizes B (each step also reads mu*B unlabeled)")
  p.add_argument("--num_train", type=int, default=runs.MA52_TRAIN,
                 help="training clips (sizes the per-clip SSL state and prototype labels)")
  a = p.parse_args(argv)
  common.header("Train step memory (XLA compiled memory analysis)",
                "python bench/memory.py " + " ".join(sys.argv[1:] if argv is None else argv))
  c = load_config(a.config, a.method)
  rows, clip = [], None
  for b in a.batch:
    r = analyse(c, b, a.num_train)
    clip = r["clip"]
    rows.append([b, f"{b}+{c.uratio * b}", r["views"], r["args"] / GIB, r["out"] / GIB,
                 r["alias"] / GIB, r["temp"] / GIB, r["peak"] / GIB, r["compile_s"]])
  print(f"{a.config}: {c.model.name}, {c.model.dtype} compute, method={c.method}, stored clip "
        f"{'x'.join(map(str, clip))} uint8, model input {c.data.video.num_frames}x"
        f"{c.model.image_size}x{c.model.image_size}; backend {jax.default_backend()} "
        f"({jax.devices()[0].device_kind}). GiB per device.\n")
  print(common.table(["B per device", "clips read", "clip views", "arguments", "outputs",
                      "aliased", "temporaries", "peak estimate", "compile s"], rows))
  if len(rows) > 1:
    (b0, *_, p0, _), (b1, *_, p1, _) = rows[0], rows[-1]
    slope = (p1 - p0) / (b1 - b0)
    fixed = p0 - slope * b0
    print(f"\npeak ~ {fixed:.2f} GiB + {slope:.2f} GiB per unit of B: B <= "
          f"{max(0, int((16 * 0.9 - fixed) / slope))} for a 16 GiB TPU core, "
          f"{max(0, int((140 * 0.9 - fixed) / slope))} for a 141 GB (140 GiB) H200, keeping 10% "
          "free (on this backend's figures).")


if __name__ == "__main__":
  main()
