"""metrics.jsonl and its TensorBoard mirror: a resume leaves no duplicate points; hparams."""
import collections
import json
import pathlib
import struct

import pytest
from tensorboardX.proto import event_pb2

from aplt_jax import metric_writer


def read_events(logdir: pathlib.Path) -> list:
  """Every Event in logdir's event files (TFRecord framing: length, crc, data, crc)."""
  events = []
  for path in sorted(logdir.glob("events.out.tfevents.*")):
    data = path.read_bytes()
    i = 0
    while i < len(data):
      (n,) = struct.unpack("<Q", data[i:i + 8])
      events.append(event_pb2.Event.FromString(data[i + 12:i + 12 + n]))
      i += 12 + n + 4
  return events


def scalars(logdir: pathlib.Path) -> dict[tuple[str, int], list[float]]:
  out = collections.defaultdict(list)
  for e in read_events(logdir):
    for v in e.summary.value:
      if v.HasField("simple_value"):
        out[(v.tag, e.step)].append(v.simple_value)
  return out


def _write(writer, steps):
  for s in steps:
    writer.write(s, 0, "online", {"train/loss": 10.0 - s, "train/mask_rate": s / 10})
    writer.write(s, 0, "eval", {"eval/top1": s / 20})


def test_a_resume_rewrites_tensorboard_without_duplicates(tmp_path):
  w = metric_writer.MetricWriter(str(tmp_path))
  _write(w, range(6))  # 12 rows; the "checkpoint" kept 7 (steps 0-2 and step 3's online row)
  w.close()
  w = metric_writer.MetricWriter(str(tmp_path), keep_rows=7)
  w.write(3, 0, "eval", {"eval/top1": 0.99})  # values that differ from the first attempt
  _write(w, range(4, 8))
  w.close()

  rows = metric_writer.read_rows(str(tmp_path))
  assert len(rows) == 16
  got = scalars(tmp_path / "tensorboard")
  expected = collections.defaultdict(list)
  for r in rows:
    for k, v in r.items():
      if k not in ("step", "round", "phase"):
        expected[(k, r["step"])].append(v)
  assert set(got) == set(expected)
  for key, values in expected.items():
    assert len(got[key]) == 1, f"{key} written {len(got[key])} times"
    assert abs(got[key][0] - values[0]) < 1e-6, key
  assert got[("eval/top1", 3)] == [pytest.approx(0.99, abs=1e-6)]


def test_hparams_are_one_hparams_session(tmp_path):
  metric_writer.write_hparams(str(tmp_path), {"method": "aplt", "seed": 1, "data.ratio": 0.1,
                                              "aplt.sync": False, "missing": None},
                              {"hparams/top1_ema": 0.5})
  metric_writer.write_hparams(str(tmp_path), {"method": "aplt", "seed": 1, "data.ratio": 0.1,
                                              "aplt.sync": False, "missing": None},
                              {"hparams/top1_ema": 0.6})  # a rewrite replaces the first
  logdir = tmp_path / "tensorboard" / "hparams"
  events = read_events(logdir)
  tags = {v.tag for e in events for v in e.summary.value}
  assert {"_hparams_/experiment", "_hparams_/session_start_info",
          "_hparams_/session_end_info"} <= tags
  start = next(v for e in events for v in e.summary.value
               if v.tag == "_hparams_/session_start_info")
  from tensorboardX.proto import plugin_hparams_pb2  # pylint: disable=g-import-not-at-top
  info = plugin_hparams_pb2.HParamsPluginData.FromString(start.metadata.plugin_data.content)
  hp = info.session_start_info.hparams
  assert hp["method"].string_value == "aplt" and hp["seed"].number_value == 1
  assert hp["aplt.sync"].bool_value is False and hp["missing"].string_value == "None"
  assert scalars(logdir) == {("hparams/top1_ema", 0): [pytest.approx(0.6, abs=1e-6)]}
