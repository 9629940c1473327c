"""Disk used while preparing videos at MA-52's size, against the prepared dataset's final size.

    python bench/prepare_disk.py [--clips 8] [--frames 48] [--shard_size 2] [--real DIR]

Writes `--clips` generated 1296x1080 (portrait, as MA-52's) H.264 videos (a drifting smooth
texture with a little noise, encoded; `--real DIR` adds the .mp4 files of DIR too), prepares
them with MA-52's stored shape (16x256x224x3, `python -m aplt_jax.prepare`'s own code), and
samples the bytes under the data directory every 20 ms: decode shards, TFDS's temporary
directory and the ArrayRecord files together. Prints per clip: raw clip, compressed decode
shard, stored ArrayRecord record, and the peak over the final size. `--shard_size` (videos per
decode shard; `prepare` uses 16) is small here so that a few videos make several shards: each
shard is deleted once written into ArrayRecord, so the peak is about max(shard, record) x clips
plus one shard, and its ratio to the final size is what extrapolates to MA-52's 22.4k clips.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

import av  # noqa: E402
import numpy as np  # noqa: E402

from aplt_jax.data import video as video_lib  # noqa: E402
from aplt_jax.data.video import shards  # noqa: E402

MA52_CLIPS = 22_422  # train + val + test videos of MA-52


def write_generated(path: str, frames: int, seed: int, height=1296, width=1080):
  """An H.264 (else MPEG-4) video: a smooth random texture drifting a few pixels per frame."""
  rng = np.random.default_rng(seed)
  coarse = rng.integers(0, 256, (height // 64 + 5, width // 64 + 5, 3)).astype(np.float32)
  big = np.repeat(np.repeat(coarse, 64, 0), 64, 1)
  for axis in (0, 1):  # smooth gradients: a running mean over 64 pixels
    c = np.cumsum(big, axis, dtype=np.float32)
    big = (np.take(c, range(64, c.shape[axis]), axis) - np.take(c, range(c.shape[axis] - 64),
                                                                 axis)) / 64
  dy, dx = rng.integers(-3, 4, 2)
  codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
  with av.open(path, "w") as out:
    stream = out.add_stream(codec, rate=30)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for t in range(frames):
      y0, x0 = 64 + dy * t % 64, 64 + dx * t % 64
      img = big[y0:y0 + height, x0:x0 + width] + rng.normal(0, 2.0, (height, width, 3))
      img = np.clip(img, 0, 255).astype(np.uint8)
      for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
        out.mux(packet)
    for packet in stream.encode():
      out.mux(packet)


def disk_bytes(root: str) -> int:
  total = 0
  for dirpath, _, names in os.walk(root):
    for n in names:
      try:
        total += os.lstat(os.path.join(dirpath, n)).st_size
      except OSError:  # removed meanwhile
        pass
  return total


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--clips", type=int, default=8, help="generated 1296x1080 videos")
  p.add_argument("--frames", type=int, default=48, help="frames per generated video")
  p.add_argument("--real", default="", help="also these .mp4 files (e.g. MA-52 samples)")
  p.add_argument("--shard_size", type=int, default=2, help="videos per decode shard")
  p.add_argument("--workers", type=int, default=0, help="decoding processes (0: all cores)")
  a = p.parse_args(argv)
  common.header("Disk while preparing", "python bench/prepare_disk.py " + " ".join(
      sys.argv[1:] if argv is None else argv))
  root = tempfile.mkdtemp(prefix="aplt_prepare_disk_")
  try:
    videos = os.path.join(root, "videos", "videos_train")
    os.makedirs(videos)
    names = []
    for i in range(a.clips):
      names.append(f"gen_{i:03d}.mp4")
      write_generated(os.path.join(videos, names[-1]), a.frames, i)
    if a.real:
      for f in sorted(os.listdir(a.real)):
        if f.endswith(".mp4"):
          shutil.copy(os.path.join(a.real, f), os.path.join(videos, f))
          names.append(f)
    with open(os.path.join(root, "videos", "train_list_videos.txt"), "w") as f:
      f.write("".join(f"{n} {i % 2}\n" for i, n in enumerate(names)))
    source_mb = disk_bytes(videos) / 1e6
    params = video_lib.default_params("ma52")
    data_dir = os.path.join(root, "prepared")
    os.makedirs(data_dir)
    shards.SHARD_SIZE = a.shard_size
    peak, done = [0], threading.Event()

    def poll():
      while not done.is_set():
        peak[0] = max(peak[0], disk_bytes(data_dir))
        time.sleep(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    t = time.perf_counter()
    opts = video_lib.PrepareOptions(workers=a.workers, progress=False, num_classes=2)
    builder = video_lib.prepare_videos("list_files", os.path.join(root, "videos"), data_dir,
                                       params, opts)
    wall = time.perf_counter() - t
    done.set()
    poller.join()
    n = len(names)
    final = disk_bytes(os.fspath(builder.data_path))
    # The compressed shards of the same videos (decoded again, kept this time).
    cache = os.path.join(root, "shards")
    entries = [e for e in video_lib.layouts.get("list_files").read(
        os.path.join(root, "videos"), num_classes=2).entries["train"]]
    shards.decode_split(entries, "train", params.spec, cache, workers=a.workers, progress=False)
    shard_total = disk_bytes(cache)
    raw = int(np.prod(params.spec.shape))
    print(f"{n} videos ({a.clips} generated 1296x1080 x {a.frames} frames"
          f"{', plus ' + str(n - a.clips) + ' from ' + a.real if a.real else ''}; "
          f"{source_mb / n:.2f} MB each as .mp4), stored as {'x'.join(map(str, params.spec.shape))}"
          f" uint8, {a.shard_size} videos per shard; prepared in {wall:.0f} s\n")
    print(common.table(
        ["per clip", "raw clip MB", "compressed shard MB", "ArrayRecord MB",
         "peak during prepare MB", "peak / final"],
        [["", raw / 1e6, shard_total / n / 1e6, final / n / 1e6, peak[0] / n / 1e6,
          peak[0] / final]]))
    ratio = max(shard_total, final) / final
    print(f"\nMA-52 ({MA52_CLIPS} clips): final {MA52_CLIPS * final / n / 1e9:.1f} GB, peak about "
          f"{ratio:.2f} x final + one shard = {MA52_CLIPS * max(shard_total, final) / n / 1e9:.1f}"
          f" GB (raw shards would be {MA52_CLIPS * raw / 1e9:.0f} GB)")
  finally:
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
  main()
