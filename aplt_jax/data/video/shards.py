"""Parallel, resumable decoding of a split's videos into shard files, read back in list order.

Preparation decodes every video once (`decode.decode_clip`) in a pool of processes. Videos are
grouped into shards of `SHARD_SIZE` consecutive entries; each shard is written as one
compressed `.npz` (`clips` uint8 [n_ok, F, H, W, 3], `ok` bool [n], `reason`/`detail` str [n])
with a write-then-rename, so a killed preparation leaves only whole shards behind, and a re-run
skips every shard already there (resumable per shard). A shard's file name carries a hash of its
entries and the clip spec, so a changed list or spec never reuses a stale shard. The TFDS
builder then writes each shard into its own ArrayRecord file, in order, and (unless the cache is
kept) deletes it once written, so the disk holds about the compressed clips once, never the
raw ones.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import os
from typing import Iterator, Sequence

import numpy as np

from aplt_jax import files
from aplt_jax.data.video import decode
from aplt_jax.data.video.layouts import Entry, Problem

SHARD_SIZE = 16


def _shard_path(cache_dir: str, split: str, shard: int, entries: Sequence[Entry],
                spec: decode.ClipSpec) -> str:
  key = json.dumps([dataclasses.asdict(spec), [dataclasses.astuple(e) for e in entries]])
  digest = hashlib.sha1(key.encode()).hexdigest()[:12]
  return os.path.join(cache_dir, f"{split}-{shard:05d}-{digest}.npz")


def _shards(entries: Sequence[Entry]) -> list[tuple[int, Sequence[Entry]]]:
  return [(s, entries[i:i + SHARD_SIZE])
          for s, i in enumerate(range(0, len(entries), SHARD_SIZE))]


def decode_shard(paths: Sequence[str], spec: decode.ClipSpec, out_path: str,
                 threads: int = 0) -> int:
  """Decodes `paths` into the shard file `out_path`; returns how many decoded."""
  clips, ok, reason, detail = [], [], [], []
  for path in paths:
    try:
      clips.append(decode.decode_clip(path, spec, threads=threads))
      ok.append(True)
      reason.append("")
      detail.append("")
    except decode.VideoError as e:
      ok.append(False)
      reason.append(e.reason)
      detail.append(e.detail)
  arr = np.stack(clips) if clips else np.zeros((0, *spec.shape), np.uint8)
  with files.write_then_rename(out_path, "wb") as f:
    np.savez_compressed(f, clips=arr, ok=np.asarray(ok, bool), reason=np.asarray(reason, str),
                        detail=np.asarray(detail, str))
  return len(clips)


def decode_split(entries: Sequence[Entry], split: str, spec: decode.ClipSpec, cache_dir: str, *,
                 workers: int = 0, progress: bool = True) -> list[Problem]:
  """Decodes every entry's video into `cache_dir` (skipping finished shards).

  Args:
    entries: the split's entries in list order.
    split: split name (file names, problems).
    spec: the clip shape.
    cache_dir: where the shard files go.
    workers: processes (0: one per CPU core; 1: decode in this process).
    progress: show a tqdm bar over videos.

  Returns:
    The entries that failed to decode, as problems.
  """
  os.makedirs(cache_dir, exist_ok=True)
  todo = [(s, chunk) for s, chunk in _shards(entries)
          if not os.path.exists(_shard_path(cache_dir, split, s, chunk, spec))]
  workers = workers or os.cpu_count() or 1
  bar = None
  if progress:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm(total=len(entries), initial=len(entries) - sum(len(c) for _, c in todo),
               desc=f"decode {split}", unit="video", dynamic_ncols=True)
  jobs = [([e.path for e in chunk], _shard_path(cache_dir, split, s, chunk, spec), len(chunk))
          for s, chunk in todo]
  try:
    if workers == 1 or len(jobs) <= 1:
      for paths, out, n in jobs:
        decode_shard(paths, spec, out)
        if bar is not None:
          bar.update(n)
    else:
      # spawn: the caller may hold threads (JAX, Grain) that fork would copy mid-flight.
      ctx = multiprocessing.get_context("spawn")
      with concurrent.futures.ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as pool:
        futures = {pool.submit(decode_shard, paths, spec, out, 1): n for paths, out, n in jobs}
        try:
          for fut in concurrent.futures.as_completed(futures):
            fut.result()
            if bar is not None:
              bar.update(futures[fut])
        except BaseException:
          pool.shutdown(wait=False, cancel_futures=True)
          raise
  finally:
    if bar is not None:
      bar.close()
  problems = []
  for s, chunk in _shards(entries):
    with np.load(_shard_path(cache_dir, split, s, chunk, spec)) as shard:
      ok, reason, detail = shard["ok"], shard["reason"], shard["detail"]
    problems += [Problem(split, e.vid, str(r), str(d))
                 for e, good, r, d in zip(chunk, ok, reason, detail) if not good]
  return problems


def shard_files(entries: Sequence[Entry], split: str, spec: decode.ClipSpec, cache_dir: str
                ) -> list[tuple[str, Sequence[Entry]]]:
  """(shard file, its entries) of a split, in list order."""
  return [(_shard_path(cache_dir, split, s, chunk, spec), chunk) for s, chunk in _shards(entries)]


def num_decoded(path: str) -> int:
  """How many clips the shard file `path` holds."""
  with np.load(path) as shard:
    return int(shard["ok"].sum())


def read_shard(path: str, chunk: Sequence[Entry]) -> list[tuple[Entry, np.ndarray]]:
  """(entry, clip uint8 [F, H, W, 3]) for every decoded entry of one shard, in list order."""
  with np.load(path) as shard:
    ok, clips = shard["ok"], shard["clips"]
  return list(zip([e for e, good in zip(chunk, ok) if good], clips))


def iter_clips(entries: Sequence[Entry], split: str, spec: decode.ClipSpec, cache_dir: str
               ) -> Iterator[tuple[Entry, np.ndarray]]:
  """(entry, clip uint8 [F, H, W, 3]) for every decoded entry, in list order."""
  for path, chunk in shard_files(entries, split, spec, cache_dir):
    yield from read_shard(path, chunk)
