"""Small generated video files (written with PyAV) and dataset folders for the video tests."""
from __future__ import annotations

import os
import pathlib

import av
import numpy as np


def write_video(path, num_frames: int = 12, height: int = 24, width: int = 32, label: int = 0,
                fps: int = 10, container: str | None = None, options: dict | None = None,
                grey_ramp: bool = False) -> pathlib.Path:
  """An MPEG-4 video of a bright bar whose direction and speed depend on `label`.

  `grey_ramp`: uniform grey frames instead, frame t at level 8 + 12 t (checks frame order).
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with av.open(str(path), "w", format=container, options=options or {}) as out:
    stream = out.add_stream("mpeg4", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for t in range(num_frames):
      img = np.full((height, width, 3), 40, np.uint8)
      speed = 1 + label // 2
      pos = (t * speed * (1 if label % 2 == 0 else -1)) % width
      img[:, pos:pos + 3] = (220, 200, 60)
      if grey_ramp:
        img[:] = 8 + 12 * t
      for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
        out.mux(packet)
    for packet in stream.encode():
      out.mux(packet)
  return path


def write_zero_frame_video(path) -> pathlib.Path:
  """An AVI whose video stream holds no frame."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  out = av.open(str(path), "w", format="avi")
  stream = out.add_stream("mpeg4", rate=10)
  stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
  out.start_encoding()
  for packet in stream.encode():
    out.mux(packet)
  out.close()
  return path


def write_truncated_video(path, num_frames: int = 40) -> pathlib.Path:
  """An mp4 with its index at the front (faststart), cut in half: decodes partway, then ends."""
  path = pathlib.Path(path)
  write_video(path, num_frames=num_frames, options={"movflags": "faststart"})
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  return path


def make_list_dataset(root, num_classes: int = 4, per_class: dict[str, int] | None = None,
                      num_frames: int = 12, names: bool = True) -> pathlib.Path:
  """The MA-52 layout under `root`: videos_{split}/, {split}_list_videos.txt, label_name.txt."""
  root = pathlib.Path(root)
  per_class = per_class or {"train": 4, "val": 2}
  for split, n in per_class.items():
    lines = []
    for c in range(num_classes):
      for i in range(n):
        vid = f"c{c}_{split}_{i:02d}.mp4"
        write_video(root / f"videos_{split}" / vid, num_frames=num_frames + i, label=c)
        lines.append(f"{vid} {c}")
    (root / f"{split}_list_videos.txt").write_text("\n".join(lines) + "\n")
  if names:
    (root / "label_name.txt").write_text(
        "\n".join(f"{c}\tmotion {c}" for c in range(num_classes)))
  return root


def append_lines(root, split: str, lines: list[str]) -> None:
  path = pathlib.Path(root) / f"{split}_list_videos.txt"
  with open(path, "a") as f:
    f.write("\n".join(lines) + "\n")


def link_real_clips(shared_data, root, split_labels: dict[str, int] | None = None):
  """MA-52 layout holding the three real clips (symlinked) in train and val, labels by name."""
  root = pathlib.Path(root)
  demo = pathlib.Path(shared_data) / "ma52_demo"
  clips = sorted(demo.glob("*.mp4"))
  names = (pathlib.Path(shared_data) / "ma52" / "label_name.txt").read_text().splitlines()
  label_of = {line.split("\t")[1].strip(): int(line.split("\t")[0]) for line in names}
  for split in ("train", "val"):
    (root / f"videos_{split}").mkdir(parents=True, exist_ok=True)
    lines = []
    for clip in clips:
      target = root / f"videos_{split}" / clip.name
      if not target.exists():
        os.symlink(clip, target)
      lines.append(f"{clip.name} {label_of[clip.name.split('__')[0].replace('_', ' ')]}")
    (root / f"{split}_list_videos.txt").write_text("\n".join(lines) + "\n")
  (root / "label_name.txt").write_text("\n".join(names))
  return root, clips
