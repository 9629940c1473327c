"""The experiment runner on a 2-method x 1-budget x 1-seed tiny grid, end to end."""
import csv
import json

from aplt_jax import experiment_report
from aplt_jax import experiments

GRID = '''
from tiny import tiny_config

def get_grid():
  return dict(name="tiny", base=tiny_config({data_dir!r}, **{{"eval.write_features": True}}),
              methods=["fixmatch", "aplt"], budgets={{"25%": {{"data.labeled_ratio": 0.25}}}},
              seeds=[0], ablations={{"sync": {{"aplt.sync": True}}}}, ablation_budgets=["25%"])
'''


def test_tiny_grid_writes_tables_and_figures(tmp_path, data_dir):
  path = tmp_path / "grid.py"
  path.write_text(GRID.format(data_dir=str(data_dir)))
  grid = experiments.load_grid(str(path))
  cells = experiments.cells(grid)
  assert [c.name for c in cells] == ["25pct/fixmatch/seed0", "25pct/aplt/seed0",
                                     "25pct/aplt-sync/seed0"]
  out = tmp_path / "out"
  assert experiments.run_grid(grid, str(out), only=["fixmatch", "aplt/"]) == []
  records = experiment_report.write_report(grid, cells, str(out))
  assert {r["method"] for r in records} == {"fixmatch", "aplt"}
  with open(out / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["method"] for r in rows] == ["fixmatch", "aplt"]
  assert set(experiment_report.CSV_FIELDS) <= set(rows[0])
  md = (out / "results.md").read_text()
  assert "| aplt |" in md and "| fixmatch |" in md and "/1 won)" in md
  for fig in ("pseudo_labels.png", "per_class.png", "embedding.png"):
    assert (out / fig).stat().st_size > 1000, fig
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
