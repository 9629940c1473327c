"""Decoding one video file into a fixed-size clip: PyAV, TSN segment sampling, resize on decode.

A clip is `uint8 [F, H, W, 3]` with `F = num_frames * frames_per_segment` (DESIGN §4): the video
is cut into F equal segments and the frame at the centre of each is kept (TSN sampling), so the
F frames form `num_frames` groups of `frames_per_segment` consecutive samples. At training time
the views pick one frame per group (a random one for augmented views, frame `k // 2` of each
group for evaluation: `aplt_jax.augment.pick_segment_frames`), which gives temporal jitter
without decoding again. Every frame is scaled while it is converted from the codec's YUV (FFmpeg's area filter, so
1080p frames shrink without aliasing and never exist as full-size RGB), to the smallest size that
covers `height x width` with the aspect ratio kept, then centre-cropped to exactly that size.

Bad files raise `VideoError` whose `reason` is one of `REASONS`; preparation reports and skips
them (`shards`).
"""
from __future__ import annotations

import dataclasses
import math
import os

import av
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
# FFmpeg guesses a file's format from its bytes, not its name: a playlist or concat list saved
# as `.mp4` would be followed to other files. Only these containers (those of VIDEO_EXTENSIONS)
# and the local-file protocol are allowed.
_OPEN_OPTIONS = {"format_whitelist": "mov,mp4,m4a,3gp,3g2,mj2,avi,matroska,webm",
                 "protocol_whitelist": "file"}

# A file that decodes to fewer than this fraction of the frames its header declares is
# truncated; above it, the few missing frames at the end are taken as the last decoded one
# (headers of some containers overstate the count by a frame or two).
MIN_DECODED_FRACTION = 0.9

REASONS = {
    "empty_file": "the file is empty (0 bytes)",
    "unreadable": "FFmpeg cannot open or decode it (not a video, or corrupt)",
    "no_video_stream": "the file has no video stream",
    "zero_frames": "the video stream holds no frame",
    "truncated": "the file ends before the frames its header declares (cut short)",
}


class VideoError(Exception):
  """A video that cannot become a clip; `reason` is a key of `REASONS`."""

  def __init__(self, reason: str, detail: str):
    super().__init__(f"{reason}: {detail}")
    self.reason = reason
    self.detail = detail


@dataclasses.dataclass(frozen=True)
class ClipSpec:
  """The stored clip's shape.

  Attributes:
    num_frames: T, TSN segments = frames the model sees per clip.
    frames_per_segment: k frames stored per segment (k > 1 allows temporal jitter).
    height, width: stored frame size in pixels.
  """
  num_frames: int
  frames_per_segment: int
  height: int
  width: int

  def __post_init__(self):
    for name in ("num_frames", "frames_per_segment", "height", "width"):
      value = getattr(self, name)
      if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")

  @property
  def frames_stored(self) -> int:
    """F = T * k."""
    return self.num_frames * self.frames_per_segment

  @property
  def shape(self) -> tuple[int, int, int, int]:
    return (self.frames_stored, self.height, self.width, 3)


def segment_indices(num_video_frames: int, num_samples: int) -> np.ndarray:
  """[num_samples] int64 frame index at the centre of each of `num_samples` equal segments.

  A video shorter than `num_samples` frames repeats frames (nearest in time).
  """
  if num_video_frames < 1 or num_samples < 1:
    raise ValueError(f"need positive counts, got {num_video_frames} frames, {num_samples} samples")
  centres = (np.arange(num_samples) + 0.5) * (num_video_frames / num_samples)
  return np.minimum(np.floor(centres).astype(np.int64), num_video_frames - 1)


def cover_size(src_height: int, src_width: int, height: int, width: int) -> tuple[int, int]:
  """(h, w): `src` scaled, aspect kept, to the smallest size covering `height x width`."""
  scale = max(height / src_height, width / src_width)
  return (max(height, int(round(src_height * scale))), max(width, int(round(src_width * scale))))


def _declared_frames(container, stream) -> int:
  """The frame count from the header, else from the duration, else by counting packets."""
  if stream.frames and stream.frames > 0:
    return int(stream.frames)
  rate = stream.average_rate or stream.guessed_rate
  if rate and stream.duration and stream.time_base:
    return int(round(float(stream.duration * stream.time_base * rate)))
  if rate and container.duration:
    return int(round(container.duration / av.time_base * float(rate)))
  count = sum(1 for packet in container.demux(stream) if packet.size)
  if count:
    container.seek(0)
  return count


def decode_clip(path: str | os.PathLike, spec: ClipSpec, threads: int = 0,
                stats: dict | None = None) -> np.ndarray:
  """Decodes `path` once into the clip `spec` describes.

  Args:
    path: a video file FFmpeg reads (the first video stream is used; audio is ignored).
    spec: the stored clip's shape.
    threads: FFmpeg decoding threads (0: FFmpeg's choice; 1 inside a process pool).
    stats: if given, filled with `declared_frames`, `decoded_frames` and `indices` (the
      sampled frame numbers).

  Returns:
    uint8 [F, H, W, 3] RGB, F = spec.frames_stored.

  Raises:
    VideoError: empty, unreadable, without video, without frames, or truncated.
  """
  path = os.fspath(path)
  if os.path.getsize(path) == 0:
    raise VideoError("empty_file", REASONS["empty_file"])
  try:
    container = av.open(path, metadata_errors="ignore", options=dict(_OPEN_OPTIONS))
  except (av.FFmpegError, UnicodeDecodeError) as e:
    raise VideoError("unreadable", f"cannot open: {e}") from None
  with container:
    if not container.streams.video:
      raise VideoError("no_video_stream", REASONS["no_video_stream"])
    stream = container.streams.video[0]
    if threads:
      stream.codec_context.thread_count = threads
    else:
      stream.thread_type = "AUTO"
    try:
      declared = _declared_frames(container, stream)
    except av.FFmpegError as e:
      raise VideoError("unreadable", f"cannot read packets: {e}") from None
    if declared < 1:
      raise VideoError("zero_frames", REASONS["zero_frames"])
    wanted = segment_indices(declared, spec.frames_stored)
    want = {int(i) for i in wanted}
    converted: dict[int, np.ndarray] = {}
    size = None
    decoded, last, error = 0, None, None
    try:
      for frame in container.decode(stream):
        if size is None:
          size = cover_size(frame.height, frame.width, spec.height, spec.width)
        if decoded in want:
          converted[decoded] = _to_rgb(frame, size, spec)
        last = frame
        decoded += 1
    except av.FFmpegError as e:  # corrupt data part-way through
      error = e
  if decoded == 0:
    if error is not None:
      raise VideoError("unreadable", f"no frame decodes: {error}")
    raise VideoError("zero_frames", REASONS["zero_frames"])
  if error is not None or decoded < math.ceil(MIN_DECODED_FRACTION * declared):
    why = f"decoding failed after {decoded} frames ({error})" if error is not None else (
        f"{decoded} of {declared} declared frames decode")
    raise VideoError("truncated", why)
  if stats is not None:
    stats.update(declared_frames=declared, decoded_frames=decoded, indices=wanted.tolist())
  tail = None
  frames = []
  for i in wanted:
    i = int(i)
    if i not in converted:  # past the last decoded frame (header overstated the count)
      if tail is None:
        tail = _to_rgb(last, size, spec)
      frames.append(tail)
    else:
      frames.append(converted[i])
  return np.stack(frames)


def _to_rgb(frame, size: tuple[int, int], spec: ClipSpec) -> np.ndarray:
  """One decoded frame -> uint8 [H, W, 3]: scaled to cover the target, centre-cropped."""
  h, w = size
  rgb = frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="AREA")
  top, left = (h - spec.height) // 2, (w - spec.width) // 2
  return np.ascontiguousarray(rgb[top:top + spec.height, left:left + spec.width])


