"""Which videos make a dataset: list files, class folders, and the checks on their entries.

Layouts, by registry name (`LAYOUTS`):
- `ma52`, `ma12`, `list_files`: the mmaction list-file layout of MA-52 (DESIGN §4):
  `MANUAL_DIR/{train,val,test}_list_videos.txt` with lines `relative/path.mp4 <label>`, the
  videos under `MANUAL_DIR/videos_{split}/` (or directly under `MANUAL_DIR/`), and
  `label_name.txt` with the class names (lines `name` or `index<TAB>name`). MA-52 has 52 classes,
  MA-12 12; `list_files` takes the count from `label_name.txt` (or `num_classes`).
- `class_folder`: a user's own videos, `MANUAL_DIR/<class name>/*.mp4|avi|mov|...`; classes are
  the sorted folder names. With `MANUAL_DIR/train/<class>/` and `MANUAL_DIR/{val,test}/<class>/`
  those folders are the splits (the rule: `split.split_folders`); otherwise a seeded
  `test_fraction` of each class (never its only video) is held out as the `test` split
  (`split.hold_out`).

Listing checks every entry before any decoding: malformed lines, non-integer or out-of-range
labels, missing files, duplicate entries, paths outside the manual dir or without a video
extension (`check_video_path`, the one path rule of every layout), folders inside class folders
and files beside them become `Problem`s (reported and skipped, never silently dropped); `shards`
adds the files that fail to decode.
"""
from __future__ import annotations

import collections
import dataclasses
import os
from typing import Iterable

import numpy as np

from aplt_jax.data import split as split_lib
from aplt_jax.data.split import SPLITS
from aplt_jax.data.video import decode
from aplt_jax.errors import DataError

LABEL_NAMES = "label_name.txt"

REASONS = {
    "malformed_line": "the line is not `path label`",
    "bad_label": "the label is not an integer",
    "label_out_of_range": "the label is outside [0, num_classes)",
    "missing_file": "the listed video file does not exist",
    "duplicate": "the same video is listed again in this split (the first entry is kept)",
    "in_other_split": "the same video file is also listed in an earlier split (kept there only)",
    "unsupported_file": "not a known video extension (playlists and other files are never read)",
    "outside_manual_dir": "the path leads outside --manual_dir (absolute, or climbing with ..)",
    "nested_folder": "a folder inside a class folder (its files are not read; move them up)",
    "outside_class_folder": "a file beside the class folders rather than inside one",
    **decode.REASONS,
}


@dataclasses.dataclass(frozen=True)
class Entry:
  """One usable video: `vid` as the list names it, its absolute `path`, its `label`."""
  vid: str
  path: str
  label: int


@dataclasses.dataclass(frozen=True)
class Problem:
  """A skipped entry: its split, its name (`vid`, or `file:line`), a `REASONS` key, details."""
  split: str
  vid: str
  reason: str
  detail: str


@dataclasses.dataclass
class Listing:
  """A layout read from disk: class names, and per split the entries and the problems."""
  class_names: list[str]
  entries: dict[str, list[Entry]]
  problems: list[Problem]


def check_video_path(manual_dir: str, path: str) -> str | None:
  """The path rule of every layout: None when `path` may be read, else the `REASONS` key why not.

  `path` (absolute, or relative to `manual_dir`) must stay inside `manual_dir` once `..` is
  resolved, so an absolute path or `../` in a list file never reads elsewhere; links placed
  inside `manual_dir` are followed (whoever owns the folder put them there). It must end in a
  known video extension (`decode.VIDEO_EXTENSIONS`): playlists (.m3u8) and concat lists, which
  FFmpeg would follow to other files, are never opened.
  """
  root = os.path.abspath(manual_dir)
  full = os.path.abspath(os.path.join(root, path))
  if os.path.commonpath([root, full]) != root:
    return "outside_manual_dir"
  if not full.lower().endswith(decode.VIDEO_EXTENSIONS):
    return "unsupported_file"
  return None


def list_file(manual_dir: str, split: str) -> str:
  return os.path.join(manual_dir, f"{split}_list_videos.txt")


def read_label_names(path: str) -> list[str]:
  """Class names from `label_name.txt`: lines `name` or `index<TAB>name` (indices 0..C-1)."""
  names = []
  with open(path, encoding="utf-8") as f:
    lines = [line.rstrip("\r\n") for line in f]
  for lineno, line in enumerate(lines, 1):
    if not line.strip():
      continue
    head, sep, tail = line.partition("\t")
    if sep and head.strip().lstrip("-").isdigit():
      if int(head) != len(names):
        raise DataError(f"{path}, line {lineno}: class index {int(head)} where {len(names)} was "
                        "expected; label_name.txt must list classes 0, 1, 2, ... in order.")
      line = tail
    names.append(line.strip())
  if not names:
    raise DataError(f"{path} lists no class names.")
  return names


def parse_list(lines: Iterable[str], split: str, video_dirs: list[str] | None, num_classes: int,
               source: str = "list", manual_dir: str = ".") -> tuple[list[Entry], list[Problem]]:
  """Checks the `path label` lines of one split's list file.

  Args:
    lines: the file's lines.
    split: the split name (for problems).
    video_dirs: folders a relative path is looked up in, first match wins; None checks the
      lines only (entries then keep the relative path, duplicates are found by name).
    num_classes: C; labels must lie in [0, C).
    source: the list file's name, for problem locations.
    manual_dir: the folder no listed path may leave (`check_video_path`); `video_dirs` lie in it.

  Returns:
    (usable entries in file order, problems). Blank lines are ignored.
  """
  entries, problems, seen = [], [], {}
  for lineno, raw in enumerate(lines, 1):
    line = raw.strip()
    if not line:
      continue
    where = f"{os.path.basename(source)}:{lineno}"
    parts = line.rsplit(None, 1)
    if len(parts) != 2:
      problems.append(Problem(split, where, "malformed_line", f"{line!r}"))
      continue
    vid, label_text = parts
    try:
      label = int(label_text)
    except ValueError:
      problems.append(Problem(split, vid, "bad_label", f"{where}: label {label_text!r}"))
      continue
    if not 0 <= label < num_classes:
      problems.append(Problem(split, vid, "label_out_of_range",
                              f"{where}: label {label} not in [0, {num_classes})"))
      continue
    refused = check_video_path(manual_dir, vid)
    if refused:
      problems.append(Problem(split, vid, refused, f"{where}: {REASONS[refused]}"))
      continue
    path = vid
    if video_dirs is not None:
      candidates = [os.path.join(d, vid) for d in video_dirs]
      path = next((p for p in candidates if os.path.isfile(p)), None)
      if path is None:
        problems.append(Problem(split, vid, "missing_file", f"{where}: looked for "
                                f"{' and '.join(candidates)}"))
        continue
      path = os.path.abspath(path)
    if path in seen:
      problems.append(Problem(split, vid, "duplicate", f"{where}: first listed at line "
                              f"{seen[path]}"))
      continue
    seen[path] = lineno
    entries.append(Entry(vid, path, label))
  return entries, problems


class ListFileLayout:
  """The mmaction list-file layout; `num_classes` None takes it from label_name.txt."""

  def __init__(self, title: str, num_classes: int | None):
    self.title = title
    self.num_classes = num_classes

  def expected_files(self, manual_dir: str) -> str:
    count = f"{self.num_classes} classes" if self.num_classes else "C classes"
    return (f"{manual_dir}/{LABEL_NAMES} ({count}), {manual_dir}/{{train,val,test}}_list_videos"
            f".txt (lines `path label`) and the videos under {manual_dir}/videos_{{train,val,"
            "test}/")

  def read(self, manual_dir: str, *, num_classes: int | None = None,
           test_fraction: float = 0.0) -> Listing:
    del test_fraction  # the list files define the splits
    names_path = os.path.join(manual_dir, LABEL_NAMES)
    names = read_label_names(names_path) if os.path.isfile(names_path) else None
    count = self.num_classes or num_classes or (len(names) if names else None)
    if count is None:
      raise DataError(f"{self.title}: found no {names_path}, so the number of classes is "
                      "unknown; add label_name.txt (one class name per line) or pass "
                      "--num_classes.")
    if names is not None and len(names) != count:
      raise DataError(f"{names_path} names {len(names)} classes but {self.title} has {count}; "
                      "point --manual_dir at the matching dataset or fix --num_classes.")
    if not os.path.isfile(list_file(manual_dir, "train")):
      raise DataError(f"{self.title}: {list_file(manual_dir, 'train')} does not exist. Expected "
                      f"{self.expected_files(manual_dir)}.")
    entries, problems, owner = {}, [], {}
    for split in SPLITS:
      path = list_file(manual_dir, split)
      if not os.path.isfile(path):
        continue
      with open(path, encoding="utf-8") as f:
        ok, bad = parse_list(f, split, [os.path.join(manual_dir, f"videos_{split}"), manual_dir],
                             count, source=path, manual_dir=manual_dir)
      # One video in two splits would leak test clips into training: keep its first split only.
      bad += [Problem(split, e.vid, "in_other_split", f"{e.path} is already in {owner[e.path]}")
              for e in ok if e.path in owner]
      ok = [e for e in ok if e.path not in owner]
      owner.update((e.path, split) for e in ok)
      entries[split], problems = ok, problems + bad
    names = names or [f"class_{i:03d}" for i in range(count)]
    return Listing(names, entries, problems)


def _videos_in(manual_dir: str, folder: str, split: str,
               vid_prefix: str) -> tuple[list[str], list[Problem]]:
  """The videos of one class folder; every other entry not starting with a dot is a problem."""
  files, problems = [], []
  for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    if name.startswith("."):
      continue
    if os.path.isdir(path):
      reason = "nested_folder"
    elif not os.path.exists(path):
      reason = "missing_file"  # a link to nothing
    elif not os.path.isfile(path):
      reason = "unsupported_file"
    else:
      reason = check_video_path(manual_dir, path)
    if reason:
      problems.append(Problem(split, f"{vid_prefix}{name}", reason, REASONS[reason]))
    else:
      files.append(path)
  return files, problems


class ClassFolderLayout:
  """`root/<class>/<video>`, with optional `train/`, `val/`, `test/` split folders."""
  title = "class_folder"
  num_classes = None

  def expected_files(self, manual_dir: str) -> str:
    return (f"{manual_dir}/<class name>/*.mp4 (or .avi, .mov, ...), or {manual_dir}/train/<class "
            f"name>/... beside {manual_dir}/test/<class name>/...")

  def read(self, manual_dir: str, *, num_classes: int | None = None,
           test_fraction: float = 0.2) -> Listing:
    split_dirs = split_lib.split_folders(manual_dir)
    has_splits = split_dirs is not None
    roots = split_dirs or {"train": manual_dir}
    names = split_lib.subfolders(roots["train"])
    if not names:
      raise DataError(f"class_folder: no class folders in {roots['train']}. Expected "
                      f"{self.expected_files(manual_dir)}.")
    if num_classes and num_classes != len(names):
      raise DataError(f"class_folder: {roots['train']} has {len(names)} class folders "
                      f"({names[:5]}...) but --num_classes={num_classes}.")
    label_of = {n: i for i, n in enumerate(names)}
    entries: dict[str, list[Entry]] = {}
    problems: list[Problem] = []
    for split, root in roots.items():
      entries[split] = []
      problems += [Problem(split, name, "outside_class_folder", REASONS["outside_class_folder"])
                   for name in sorted(os.listdir(root)) if not name.startswith(".")
                   and not os.path.isdir(os.path.join(root, name))]
      for cls in split_lib.subfolders(root):
        if cls not in label_of:
          problems.append(Problem(split, f"{cls}/", "label_out_of_range",
                                  f"class folder {cls!r} is not among the train classes"))
          continue
        files, bad = _videos_in(manual_dir, os.path.join(root, cls), split, f"{cls}/")
        problems += bad
        entries[split] += [Entry(f"{cls}/{os.path.basename(p)}", os.path.abspath(p),
                                 label_of[cls]) for p in files]
    if not has_splits and test_fraction > 0:
      # Seed 0, not the sequences' [seed, 11]: another seed would re-draw prepared copies.
      held = split_lib.hold_out([e.label for e in entries["train"]], test_fraction,
                                np.random.default_rng(0))
      entries["train"], entries["test"] = ([e for e, h in zip(entries["train"], held) if not h],
                                           [e for e, h in zip(entries["train"], held) if h])
    return Listing(names, entries, problems)


LAYOUTS: dict[str, ListFileLayout | ClassFolderLayout] = {
    "ma52": ListFileLayout("MA-52", 52),
    "ma12": ListFileLayout("MA-12", 12),
    "list_files": ListFileLayout("list_files", None),
    "class_folder": ClassFolderLayout(),
}


def get(name: str):
  """The layout of the video dataset `name`."""
  if name not in LAYOUTS:
    raise DataError(f"Unknown video dataset {name!r}; choose one of {sorted(LAYOUTS)}.")
  return LAYOUTS[name]


# ------------------------------------------------------------------------------- reports


def report(dataset: str, manual_dir: str, params: dict, listing: Listing,
           usable: dict[str, list[Entry]], problems: list[Problem]) -> dict:
  """The preparation summary (JSON-able): per split the counts, every skipped file with why."""
  splits = {}
  for split in listing.entries:
    mine = [p for p in problems if p.split == split]
    splits[split] = {
        "usable": len(usable.get(split, [])),
        "skipped": len(mine),
        "skipped_by_reason": dict(collections.Counter(p.reason for p in mine)),
    }
  return {"dataset": dataset, "manual_dir": os.path.abspath(manual_dir), "params": params,
          "num_classes": len(listing.class_names), "splits": splits,
          "skipped": [dataclasses.asdict(p) for p in problems]}


def format_report(rep: dict, path: str | None = None, examples: int = 3) -> str:
  """A few readable lines: usable and skipped per split, each reason with example files."""
  lines = [f"Preparation summary for {rep['dataset']} ({rep['manual_dir']}):"]
  for split, s in rep["splits"].items():
    lines.append(f"  {split}: {s['usable']} usable, {s['skipped']} skipped")
  by_reason = collections.defaultdict(list)
  for p in rep["skipped"]:
    by_reason[p["reason"]].append(p)
  for reason, items in sorted(by_reason.items()):
    shown = ", ".join(f"{p['split']}/{p['vid']}" for p in items[:examples])
    more = f" and {len(items) - examples} more" if len(items) > examples else ""
    lines.append(f"  skipped {len(items)} x {reason} ({REASONS.get(reason, reason)}): "
                 f"{shown}{more}")
  if path:
    lines.append(f"  every skipped file with details: {path}")
  return "\n".join(lines)




