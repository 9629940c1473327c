"""The experiment runner on a 2-method x 1-budget x 1-seed tiny grid, end to end; every shipped
grid file loads."""
import csv
import json
import pathlib

import numpy as np
import pytest

from aplt_jax import experiment_report
from aplt_jax import experiments
from test_metric_writer import read_events
from tools import by_head

GRID = '''
from tiny import tiny_config

def get_grid():
  return dict(name="tiny", base=tiny_config({data_dir!r}, **{{"eval.write_features": True}}),
              methods=["fixmatch", "aplt"], budgets={{"25%": {{"data.labeled_ratio": 0.25}}}},
              seeds=[0], ablations={{"sync": {{"aplt.sync": True}}}}, ablation_budgets=["25%"])
'''


def test_tiny_grid_on_two_shards_writes_tables_figures_and_hparams(tmp_path, data_dir):
  path = tmp_path / "grid.py"
  path.write_text(GRID.format(data_dir=str(data_dir)))
  grid = experiments.load_grid(str(path))
  cells = experiments.cells(grid)
  assert [c.name for c in cells] == ["25pct/fixmatch/seed0", "25pct/aplt/seed0",
                                     "25pct/aplt-sync/seed0"]
  out = tmp_path / "out"
  # Two machines on one --out: of the cells --only selects (0 and 1), shard 0 runs 0, shard 1 1.
  assert experiments.run_grid(grid, str(out), only=["fixmatch", "aplt/"], shard=(0, 2)) == []
  assert (out / "25pct/fixmatch/seed0/final.json").exists()
  assert not (out / "25pct/aplt/seed0").exists()
  assert experiments.run_grid(grid, str(out), only=["fixmatch", "aplt/"], shard=(1, 2)) == []
  experiments.FLAGS(["experiments", f"--grid={path}", f"--out={out}", "--report_only"])
  try:
    experiments.main([])  # merges both shards' runs
  finally:
    experiments.FLAGS.unparse_flags()
  with open(out / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["method"] for r in rows] == ["fixmatch", "aplt"]
  assert set(experiment_report.CSV_FIELDS) <= set(rows[0])
  md = (out / "results.md").read_text()
  assert "| aplt |" in md and "| fixmatch |" in md and "/1 won)" in md
  assert "| aplt | 25% |" in md and "| fixmatch | 25% |" not in md  # offline labels by cluster
  for fig in ("pseudo_labels.png", "per_class.png", "embedding.png"):
    assert (out / fig).stat().st_size > 1000, fig
  # TensorBoard's HParams session per run, with the columns every cell shares.
  events = read_events(out / "25pct/aplt/seed0/tensorboard/hparams")
  start = [v for e in events for v in e.summary.value
           if v.tag == "_hparams_/session_start_info"]
  assert len(start) == 1
  from tensorboardX.proto import plugin_hparams_pb2  # pylint: disable=g-import-not-at-top
  hp = plugin_hparams_pb2.HParamsPluginData.FromString(
      start[0].metadata.plugin_data.content).session_start_info.hparams
  assert set(hp) == {"budget", "method", "seed", "data.labeled_ratio", "aplt.sync"}
  assert hp["method"].string_value == "aplt" and hp["aplt.sync"].bool_value is False
  final = json.loads((out / "25pct/aplt/seed0/final.json").read_text())
  top1 = {v.tag: v.simple_value for e in events for v in e.summary.value
          if v.HasField("simple_value")}["hparams/top1_ema"]
  assert top1 == pytest.approx(final["ema"]["top1"], abs=1e-6)
  # tools/by_head reads every eval head from the finished run (its linear top-1 is checked
  # against final.json inside); FixMatch has no prototypes to read.
  heads = by_head.score_run(str(out / "25pct/aplt/seed0"), final["ema"]["top1"])
  assert set(heads) == set(by_head.HEADS)
  assert by_head.score_run(str(out / "25pct/fixmatch/seed0"), 0.0) is None
  # Finished cells are skipped: a rerun trains nothing and changes no result.
  before = (out / "25pct/aplt/seed0/final.json").read_text()
  assert experiments.run_grid(grid, str(out), only=["aplt/"]) == []
  assert (out / "25pct/aplt/seed0/final.json").read_text() == before


def test_eval_split_scores_the_grid_on_validation(tmp_path, data_dir):
  """--eval_split=val: every cell is scored on the validation split (choosing), not test."""
  path = tmp_path / "grid.py"
  path.write_text(GRID.format(data_dir=str(data_dir)).replace(
      '"eval.write_features": True', '"data.synthetic.num_val": 12'))
  grid = experiments.load_grid(str(path))
  out = tmp_path / "val"
  assert experiments.run_grid(grid, str(out), only=["aplt/"], eval_split="val") == []
  final = json.loads((out / "25pct/aplt/seed0/final.json").read_text())
  assert final["eval_split"] == "val"
  assert sum(map(sum, final["ema"]["confusion"])) == 12  # the 12 validation clips, not 24 test
  config = json.loads((out / "25pct/aplt/seed0/config.json").read_text())
  assert config["data"]["eval_split"] == "val"
  # The grid's class names are another dataset's (fewer than its classes): indices label them.
  experiment_report.write_report(grid, experiments.cells(grid), str(out), class_names=["PEN"])
  assert "on the validation split" in (out / "results.md").read_text()
  # --reuse: the unrun FixMatch cell is read from an earlier results.csv for the tables; its row
  # for a cell that has a run here (aplt) is ignored.
  earlier = tmp_path / "earlier.csv"
  fields = experiment_report.CSV_FIELDS
  rows = [("tiny", m, "25%", 0, 0.5, top1, 0.5, 0.5, 9.0, "val")
          for m, top1 in (("fixmatch", 0.25), ("aplt", 0.0))]
  earlier.write_text("\n".join(",".join(map(str, r)) for r in [fields] + rows) + "\n")
  records = experiment_report.write_report(grid, experiments.cells(grid), str(out),
                                           reuse=str(earlier))
  assert [r["method"] for r in records] == ["aplt"]
  with open(out / "results.csv") as f:
    table = {r["method"]: float(r["top1_ema"]) for r in csv.DictReader(f)}
  assert table == {"aplt": final["ema"]["top1"], "fixmatch": 0.25}
  md = (out / "results.md").read_text()
  assert f"| fixmatch | {100 * final['ema']['top1'] - 25:+.1f} ± 0.0 (" in md
  assert "1 of these runs were not rerun" in md and "on the validation split" in md
  earlier.write_text(earlier.read_text().replace("tiny,fixmatch", "watch,fixmatch"))
  with pytest.raises(ValueError, match=r"dataset\(s\) \['watch'\], not of grid 'tiny'"):
    experiment_report.write_report(grid, experiments.cells(grid), str(out), reuse=str(earlier))


def test_absorbed_clusters_by_hand(tmp_path):
  """Kept rows per pseudo-label: 0 <- hidden [0 0 0 1 1], 1 <- [1 1 2], 2 <- [2 2 2 0 1]; one
  unkept row. Errors 2 + 1 + 2 = 5, largest intruders 2 + 1 + 1 = 4; clusters 0 and 1 hold
  >= 30% of one other class (2 of 5, 1 of 3), cluster 2 does not (1 of 5)."""
  hidden = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 0, 1, 2]
  pseudo = [0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 0]
  keep = [True] * 13 + [False]
  (tmp_path / "offline").mkdir()
  np.savez(tmp_path / "offline" / "round_001.npz", hidden=np.int32(hidden),
           pseudo_label=np.int32(pseudo), keep=np.bool_(keep), centers=np.zeros((3, 4)))
  [(acc, absorbed, share)] = experiment_report.absorbed_clusters(str(tmp_path))
  assert (acc, absorbed, share) == (pytest.approx(8 / 13), 2, pytest.approx(0.8))
  # No APLT run with offline rounds: no section at all, not an empty table.
  assert experiment_report.absorbed_markdown({"budgets": {"25%": {}}}, []) == ""


def test_top1_by_subject_table_by_hand():
  """Two seeds, subjects 8 and 10: APLT 0.9/0.7 and 0.8/0.5, FixMatch 0.7/0.6 and 0.9/0.7."""
  grid = {"methods": ["fixmatch", "aplt"], "budgets": {"2/class": {}}, "seeds": [0, 1],
          "ablations": {}}
  rec = lambda m, seed, s8, s10: {"method": m, "budget": "2/class", "seed": seed,
                                  "by_subject": {"8": s8, "10": s10}}
  records = [rec("aplt", 0, .9, .7), rec("aplt", 1, .8, .5), rec("fixmatch", 0, .7, .6),
             rec("fixmatch", 1, .9, .7), {**rec("supervised", 0, 1, 1), "by_subject": None}]
  md = experiment_report.by_subject_markdown(grid, records)
  assert "| method | budget | subject 8 | subject 10 |" in md  # numeric order
  assert "| aplt | 2/class | 85.0 ± 7.1 | 60.0 ± 14.1 |" in md
  assert "| aplt − fixmatch | 2/class | +5.0 ± 21.2 (1/2 won) | -5.0 ± 21.2 (1/2 won) |" in md
  assert "supervised" not in md  # no subjects recorded: no row
  assert experiment_report.by_subject_markdown(grid, records[-1:]) == ""
  one = [{**r, "by_subject": {"7": .5}} for r in records]  # e.g. one validation subject
  assert experiment_report.by_subject_markdown(grid, one) == ""


def test_the_kth_selected_cell_runs_on_shard_k_mod_n():
  cells = [experiments.Cell("b", f"m{k}", 0, ()) for k in range(7)]
  shards = [experiments.select_cells(cells, [], (i, 3)) for i in range(3)]
  assert [[c.method for c in s] for s in shards] == [
      ["m0", "m3", "m6"], ["m1", "m4"], ["m2", "m5"]]
  # --only's cells are split evenly (by grid position all three would be shard 1's of 2).
  shards = [experiments.select_cells(cells, ["m1/", "m3/", "m5/"], (i, 2)) for i in range(2)]
  assert [[c.method for c in s] for s in shards] == [["m1", "m5"], ["m3"]]
  assert experiments.parse_shard("1/3") == (1, 3)
  for bad in ("3/3", "-1/2", "1", "a/b", "0/0"):
    with pytest.raises(ValueError, match="expected i/n"):
      experiments.parse_shard(bad)


def test_minutes_left_uses_finished_cells_of_the_same_method(tmp_path):
  cells = [experiments.Cell("b", m, s, ()) for m in ("slow", "fast", "new") for s in range(3)]
  for name, seconds in (("b/slow/seed0", 600), ("b/slow/seed1", 1200), ("b/fast/seed0", 60)):
    (tmp_path / name).mkdir(parents=True)
    (tmp_path / name / "final.json").write_text(json.dumps({"seconds": seconds}))
  assert experiments.minutes_left(str(tmp_path), cells[:0], cells) is None
  # Left: slow/seed2 (15 min), fast/seed1-2 (1 min each), new/* (the mean of all: 620 s each).
  assert experiments.minutes_left(str(tmp_path), cells, cells) == pytest.approx(15 + 2 + 31)
  assert experiments.minutes_left(str(tmp_path), cells, cells[6:]) == pytest.approx(31)


def test_a_mistyped_override_fails_before_any_cell_trains(tmp_path, data_dir):
  """The typo is in the last cell's ablation; the first two cells must not have run."""
  path = tmp_path / "grid.py"
  path.write_text(GRID.format(data_dir=str(data_dir)).replace('"aplt.sync"', '"aplt.snyc"'))
  grid = experiments.load_grid(str(path))
  with pytest.raises(KeyError, match="snyc"):
    experiments.run_grid(grid, str(tmp_path / "out"))
  assert not (tmp_path / "out").exists()


SHIPPED_GRIDS = pathlib.Path(__file__).parents[1] / "configs" / "grids"


@pytest.mark.parametrize("name", sorted(  # _name: rows shared by grids, not a grid
    p.stem for p in SHIPPED_GRIDS.glob("*.py") if not p.stem.startswith("_")))
def test_every_shipped_grid_loads_and_its_overrides_name_real_keys(name):
  """A mistyped override key in a grid file fails here, not hours into a grid run."""
  grid = experiments.load_grid(str(SHIPPED_GRIDS / f"{name}.py"))
  all_cells = experiments.cells(grid)
  assert len({c.name for c in all_cells}) == len(all_cells)
  for cell in all_cells:
    config = experiments.apply_overrides(grid["base"], cell.overrides)
    assert config.method == cell.method.split("-")[0] and config.seed == cell.seed


@pytest.mark.parametrize("name", ["watch_val", "watch_val_seeds", "watch_offline", "watch_long"])
def test_watch_grids_measured_before_the_mirror_keep_it_off_outside_its_rows(name):
  """configs/watch.py mirrors every view since round 7; the grids whose tables were measured
  before it pin it off (`without_mirror`), except in the rows named for it."""
  from aplt_jax.augment import sequence as augment_seq  # pylint: disable=g-import-not-at-top
  from aplt_jax.data.sequences import readers  # pylint: disable=g-import-not-at-top
  from configs import watch as watch_config  # pylint: disable=g-import-not-at-top
  mirror = readers.WATCH_MIRROR_SIGN
  views_of = lambda c: augment_seq.SeqAugmentConfig.from_config(c.augment_seq, mirror)
  assert views_of(watch_config.get_config()).mirror_sign == mirror
  grid = experiments.load_grid(str(SHIPPED_GRIDS / f"{name}.py"))
  for cell in experiments.cells(grid):
    sign = views_of(experiments.apply_overrides(grid["base"], cell.overrides)).mirror_sign
    assert sign == (mirror if "mirror" in cell.name else ()), cell.name
