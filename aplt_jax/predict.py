"""Top-5 micro-actions of video files with a trained run:
`python -m aplt_jax.predict --workdir=RUN --video=FILE.mp4` (or a folder of videos).

Each file is decoded exactly as preparation decodes the run's training videos (the run's
`data.video` settings: same TSN sampling, frame size and resize), then goes through the run's
evaluation view and head (`eval.head`) with the EMA parameters of the latest checkpoint (`--raw`
for the raw ones). Files that cannot be decoded are reported and skipped. `Predictor` is the
same machinery as a library, also used by `python -m aplt_jax.ma52 submit`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aplt_jax import augment
from aplt_jax import data as data_lib
from aplt_jax import errors
from aplt_jax import models
from aplt_jax import steps
from aplt_jax import workdir as workdir_lib
from aplt_jax.data import prepared, video
from aplt_jax.data.video import decode
from aplt_jax.data.video.layouts import Problem
from aplt_jax.errors import DataError
from aplt_jax.state import Prototypes, TrainState

TOP_K = 5


def _synthetic_spec(data_cfg) -> decode.ClipSpec:
  s = data_cfg.synthetic
  return decode.ClipSpec(s.num_frames, 1, s.size, s.size)


def _prepared_spec(data_cfg) -> decode.ClipSpec:
  return video.params_from_config(data_cfg).spec


# data.name -> the clip a video file must become for that run's model.
CLIP_SPECS: dict[str, Callable[[Any], decode.ClipSpec]] = {
    "synthetic": _synthetic_spec, **{name: _prepared_spec for name in video.NAMES}}


def read_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise DataError(f"{path} does not exist: --workdir must be the folder of a training run "
                    "(python main.py --workdir=...).")
  return ml_collections.ConfigDict(workdir_lib.read_json(
      path, DataError, "Restore it from a copy of the run (it holds the run's config)."))


def _restore(workdir: str) -> tuple[dict, dict]:
  """(state, prototypes) of the newest intact checkpoint, as saved (nested dicts of arrays)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from aplt_jax import checkpoint  # pylint: disable=g-import-not-at-top
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(directory):
    raise DataError(f"No checkpoint in {directory}: train the run first.")
  manager = ocp.CheckpointManager(directory,
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  args = ocp.args.Composite(state=ocp.args.StandardRestore(),
                            prototypes=ocp.args.StandardRestore())
  found = checkpoint.restore_newest_intact(manager, lambda step: manager.restore(step, args=args))
  manager.close()
  if found is None:
    raise DataError(f"No finished checkpoint in {directory}: train the run first.")
  for line in found[2]:
    print(f"warning: {line}", file=sys.stderr)
  return found[1]["state"], found[1]["prototypes"]


def _class_names(workdir: str, config) -> list[str]:
  """From final.json (written at the end of training), else from the dataset itself."""
  final = os.path.join(workdir, "final.json")
  if os.path.isfile(final):
    with open(final) as f:
      names = json.load(f).get("class_names")
    if names:
      return list(names)
  return list(data_lib.build(config.data).class_names)


@dataclasses.dataclass
class Prediction:
  """One video's result: the top-k class indices, names and probabilities, best first."""
  path: str
  classes: list[int]
  names: list[str]
  probs: list[float]


class Predictor:
  """A trained run's model as a function of raw clips (uint8 [B, T*k, H, W, 3])."""

  def __init__(self, config, state: dict, prototypes: dict, class_names: list[str],
               use_ema: bool = True, batch_size: int | None = None):
    self.config = config
    self.class_names = class_names
    if config.data.name not in CLIP_SPECS:
      raise DataError(f"Run trained on data.name={config.data.name!r}: predict reads video files, "
                      f"for runs on {sorted(CLIP_SPECS)}.")
    self.spec = CLIP_SPECS[config.data.name](config.data)
    self.batch_size = batch_size or min(int(config.eval.batch_size), 8)
    self.use_ema = use_ema
    model = models.build(config.model.name, len(class_names),
                         **models.kwargs_from_config(config.model))
    views = augment.build("video", config, frames_per_segment=self.spec.frames_per_segment)
    center = bool(config.aplt.get("center", False))  # workdirs from before the knob: False
    eval_step = steps.make_eval_step(views, config.eval.head, config.aplt.scale, center)
    self._state = TrainState(
        step=jnp.zeros((), jnp.int32), params=state["params"], batch_stats=state["batch_stats"],
        ema_params=state["ema_params"], opt_state=(), ssl_state=(), rng=jnp.zeros((), jnp.uint32),
        apply_fn=model.apply, tx=None)
    fields = {k: prototypes[k] for k in ("centers", "labels", "keep", "thresholds", "round")}
    fields["offset"] = prototypes.get("offset", jnp.zeros(fields["centers"].shape[-1:]))
    self._protos = Prototypes(**fields)
    self._step = jax.jit(eval_step, static_argnums=(3,))

  @classmethod
  def from_workdir(cls, workdir: str, use_ema: bool = True) -> "Predictor":
    config = read_config(workdir)
    state, prototypes = _restore(workdir)
    return cls(config, state, prototypes, _class_names(workdir, config), use_ema=use_ema)

  def scores(self, clips: np.ndarray) -> np.ndarray:
    """[N, T*k, H, W, 3] uint8 -> [N, C] scores (logits of the run's eval head)."""
    clips = np.asarray(clips)
    out = []
    for start in range(0, len(clips), self.batch_size):
      chunk = clips[start:start + self.batch_size]
      pad = self.batch_size - len(chunk)  # one batch shape: one compilation
      if pad:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
      scores, _ = self._step(self._state, jnp.asarray(chunk), self._protos, self.use_ema)
      out.append(np.asarray(scores)[:len(chunk) - pad])
    return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

  def scores_of_split(self, builder, split: str) -> np.ndarray:
    """[N, C] scores over a prepared split, in index order."""
    source = prepared.open_split(builder, split)
    out = []
    for start in range(0, len(source), self.batch_size):
      idx = range(start, min(start + self.batch_size, len(source)))
      out.append(self.scores(np.stack([source[i]["video"] for i in idx])))
    return np.concatenate(out)

  def top_k(self, path: str, scores: np.ndarray, k: int = TOP_K) -> Prediction:
    probs = np.asarray(jax.nn.softmax(jnp.asarray(scores, jnp.float32)))
    best = np.argsort(-probs, kind="stable")[:k]
    return Prediction(path, best.tolist(), [self.class_names[i] for i in best],
                      [float(probs[i]) for i in best])

  def predict_files(self, paths: Sequence[str]) -> tuple[list[Prediction], list[Problem]]:
    """Decodes and classifies each file (a batch at a time); undecodable ones become problems."""
    results, problems, clips, good = [], [], [], []

    def flush():
      if clips:
        results.extend(self.top_k(p, s) for p, s in zip(good, self.scores(np.stack(clips))))
        clips.clear()
        good.clear()

    for path in paths:
      try:
        clips.append(decode.decode_clip(path, self.spec))
        good.append(path)
      except decode.VideoError as e:
        problems.append(Problem("predict", path, e.reason, e.detail))
      if len(clips) == self.batch_size:
        flush()
    flush()
    return results, problems


def video_files(path: str) -> tuple[list[str], list[Problem]]:
  """`path` itself, or the video files (by extension) in the folder `path`, sorted; and the
  folder's other entries (subfolders, other files; not dot-names), reported as not read."""
  if os.path.isdir(path):
    files, problems = [], []
    for name in sorted(os.listdir(path)):
      full = os.path.join(path, name)
      if name.startswith("."):
        continue
      if os.path.isdir(full):
        problems.append(Problem("predict", full, "nested_folder",
                                "a subfolder: only the files of --video's folder are read"))
      elif not (os.path.isfile(full) and name.lower().endswith(decode.VIDEO_EXTENSIONS)):
        problems.append(Problem("predict", full, "unsupported_file",
                                f"not a video file ({', '.join(decode.VIDEO_EXTENSIONS)})"))
      else:
        files.append(full)
    if not files:
      folders = [os.path.basename(p.vid) for p in problems if p.reason == "nested_folder"]
      raise DataError(f"No video files ({', '.join(decode.VIDEO_EXTENSIONS)}) in {path}"
                      + (f"; its subfolders {folders[:5]} are not searched" if folders else "")
                      + ".")
    return files, problems
  if not os.path.isfile(path):
    raise DataError(f"--video={path} is neither a video file nor a folder.")
  return [path], []


def format_prediction(p: Prediction) -> str:
  width = max(len(n) for n in p.names)
  rows = [f"{os.path.basename(p.path)}"]
  rows += [f"  {i}. {name:<{width}}  {100 * prob:5.1f}%"
           for i, (name, prob) in enumerate(zip(p.names, p.probs), 1)]
  return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(prog="python -m aplt_jax.predict", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="a training run's --workdir")
  parser.add_argument("--video", required=True, help="a video file, or a folder of them")
  parser.add_argument("--raw", action="store_true", help="raw parameters instead of EMA")
  parser.add_argument("--output", default=None, help="also write the predictions as JSON")
  return errors.run_cli(_main, parser.parse_args(argv))


def _main(args) -> int:
  files, not_read = video_files(args.video)
  predictor = Predictor.from_workdir(args.workdir, use_ema=not args.raw)
  results, problems = predictor.predict_files(files)
  problems = not_read + problems
  for p in results:
    print(format_prediction(p))
  for p in problems:
    print(f"skipped {p.vid}: {p.reason} ({p.detail})", file=sys.stderr)
  if args.output:
    workdir_lib.write_json(os.path.abspath(args.output), {
        "predictions": [dataclasses.asdict(p) for p in results],
        "skipped": [dataclasses.asdict(p) for p in problems]}, indent=1)
  return 0 if results else 1


if __name__ == "__main__":
  sys.exit(main())
