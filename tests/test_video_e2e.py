"""Real-video path end to end at tiny scale: generated mp4 files in the MA-52 layout are
prepared, trained on with configs/ma52.py (shrunk), evaluated with the MA-52 protocol, and the
run predicts files (generated and the real MA-52 clips) and writes the test-split submission."""
import csv
import json

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

import tiny
import videogen
from aplt_jax import ma52
from aplt_jax import models
from aplt_jax import parallel
from aplt_jax import predict
from aplt_jax import train
from aplt_jax.data import video
from aplt_jax.models import pretrained
from aplt_jax.state import TrainState
from configs import ma52 as ma52_config


PARAMS = video.VideoParams(num_frames=4, frames_per_segment=2, height=16, width=16)
# The shared tiny run, on the MA-52 config's model family and with video clips.
TINY = {
    **{k: v for k, v in tiny.TINY.items() if not k.startswith(("data.synthetic.", "data.num_"))},
    "data.labeled_ratio": 0.5,  # 1 of each class's 2 training clips
    "model.name": "tsm_resnet10",
    "model.stem": "small",
    "model.dtype": "float32",
    "total_steps": 6,
    "checkpoint_every": 100,
    **{f"data.video.{k}": v for k, v in vars(PARAMS).items()},
}


def _set(c, key, value):
  *path, leaf = key.split(".")
  for p in path:
    c = c[p]
  c[leaf] = value


def _torchvision_named(trees, rng) -> dict:
  """Random arrays under torchvision's names for every leaf of backbone variable trees."""
  leaf_names = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
                "var": "running_var"}
  out = {}

  def walk(node, path):
    for key, value in node.items():
      if isinstance(value, dict):
        walk(value, path + [key])
        continue
      mods = [{"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(
          p, p.replace("_", ".") if p.startswith("layer") else p) for p in path]
      shape = value.shape if key != "kernel" else tuple(np.array(value.shape)[[3, 2, 0, 1]])
      arr = rng.normal(size=shape).astype(np.float32)
      out[".".join(mods + [leaf_names[key]])] = np.abs(arr) + 0.5 if key == "var" else arr

  for tree in trees:
    walk(tree, [])
  return out


# Session scope: an xdist worker may run other files' tests between this file's, which would
# tear down and rebuild a module fixture; this way each worker builds the run at most once.
@pytest.fixture(scope="session")
def run(tmp_path_factory):
  """Prepares 52 classes x (2 train, 1 val) generated videos + 4 test ones; trains APLT."""
  root = videogen.make_list_dataset(tmp_path_factory.mktemp("ma52"), num_classes=52,
                                    per_class={"train": 2, "val": 1}, num_frames=8)
  for i in range(4):
    videogen.write_video(root / "videos_test" / f"test{i:04d}.mp4", num_frames=10, label=i)
  (root / "test_list_videos.txt").write_text("\n".join(f"test{i:04d}.mp4 0" for i in range(4)))
  data_dir = tmp_path_factory.mktemp("prepared")
  video.prepare_videos("ma52", root, data_dir, PARAMS,
                          video.PrepareOptions(workers=1, progress=False))
  c = ma52_config.get_config()
  for key, value in {**TINY, "data.data_dir": str(data_dir)}.items():
    _set(c, key, value)
  # A "pretrained" backbone file in torchvision's layout for the tiny model: the train hook.
  model = models.build(c.model.name, 52, **models.kwargs_from_config(c.model))
  abstract = jax.eval_shape(lambda: model.init(
      jax.random.key(0), np.zeros((1, 4, 12, 12, 3), np.float32), train=False))
  weights = tmp_path_factory.mktemp("weights") / "backbone.safetensors"
  save_file(_torchvision_named([abstract["params"]["backbone"],
                                abstract["batch_stats"]["backbone"]], np.random.default_rng(0)),
            str(weights))
  c.model.pretrained = str(weights)
  workdir = tmp_path_factory.mktemp("run")
  final = train.train_and_evaluate(c, str(workdir), jax.devices()[:1])
  return root, workdir, final, weights


def test_run_reports_the_ma52_protocol(run):
  _, workdir, final, _ = run
  assert final["dataset"] == "ma52" and final["eval_split"] == "val"
  assert final["class_names"][:2] == ["motion 0", "motion 1"] and len(final["class_names"]) == 52
  for tag in ("raw", "ema"):
    proto = final[tag]["protocol"]
    assert set(proto) == {"action_top1", "action_top5", "body_top1", "action_macro_f1",
                          "action_micro_f1", "body_macro_f1", "body_micro_f1", "f1_mean", "body_confusion"}
    assert proto["action_top1"] == final[tag]["top1"]
    assert 0 <= proto["action_top1"] <= proto["body_top1"] <= 1
    assert np.asarray(final[tag]["confusion"]).sum() == 52
  assert json.loads((workdir / "final.json").read_text())["ema"]["protocol"] == final["ema"][
      "protocol"]


def test_predict_prints_top5_names_for_files_and_folders(run, capsys):
  root, workdir, _, _ = run
  assert predict.main([f"--workdir={workdir}", f"--video={root / 'videos_test'}",
                       f"--output={workdir / 'pred.json'}"]) == 0
  out = capsys.readouterr().out
  assert out.count("test000") == 4 and out.count("%") == 20 and "motion " in out
  saved = json.loads((workdir / "pred.json").read_text())["predictions"]
  assert len(saved) == 4 and all(len(p["names"]) == 5 for p in saved)
  assert all(abs(sum(p["probs"])) <= 1 + 1e-6 for p in saved)
  assert all(p["probs"] == sorted(p["probs"], reverse=True) for p in saved)


def test_predict_runs_on_the_real_clips(run, shared_data, capsys):
  _, workdir, _, _ = run
  assert predict.main([f"--workdir={workdir}", f"--video={shared_data / 'ma52_demo'}"]) == 0
  out = capsys.readouterr().out
  for name in ("shaking_body__0030_01_0002.mp4", "nodding__0019_02_0078.mp4",
               "shaking_head__0035_02_0007.mp4"):
    assert name in out


def test_predict_reports_a_bad_file(run, tmp_path, capsys):
  _, workdir, _, _ = run
  (tmp_path / "broken.mp4").write_bytes(b"")
  assert predict.main([f"--workdir={workdir}", f"--video={tmp_path / 'broken.mp4'}"]) == 1
  assert "skipped" in capsys.readouterr().err


def test_submission_for_the_test_split(run):
  _, workdir, _, _ = run
  assert ma52.main(["submit", f"--workdir={workdir}"]) == 0
  rows = list(csv.reader(open(workdir / "submission_test.csv")))
  assert rows[0][0] == "vid" and rows[0][-1] == "body_pred_5"
  assert [r[0] for r in rows[1:]] == [f"test{i:04d}.mp4" for i in range(4)]


def test_pretrained_backbone_is_loaded_and_the_head_kept(run):
  _, _, _, weights = run
  model = models.build("tsm_resnet10", 52, width_mult=0.125, stem="small")
  abstract = jax.eval_shape(lambda: model.init(
      jax.random.key(0), np.zeros((1, 4, 12, 12, 3), np.float32), train=False))
  rng = np.random.default_rng(1)
  fill = lambda tree: jax.tree.map(lambda a: rng.normal(size=a.shape).astype(a.dtype), tree)
  params, stats = fill(abstract["params"]), fill(abstract["batch_stats"])
  state = TrainState(step=np.zeros((), np.int32), params=params, batch_stats=stats,
                     ema_params=params, opt_state=(), ssl_state=(), rng=np.zeros((), np.uint32),
                     apply_fn=model.apply, tx=None)
  loaded = pretrained.load_into_state(state, str(weights), parallel.make_mesh(jax.devices()[:1]))
  file = pretrained.read_state_dict(weights)
  np.testing.assert_array_equal(np.asarray(loaded.params["backbone"]["conv1"]["kernel"]),
                                file["conv1.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(np.asarray(loaded.batch_stats["backbone"]["layer2_0"][
      "downsample_bn"]["var"]), file["layer2.0.downsample.1.running_var"])
  np.testing.assert_array_equal(np.asarray(loaded.params["head"]["kernel"]),
                                params["head"]["kernel"])
  np.testing.assert_array_equal(np.asarray(loaded.ema_params["backbone"]["bn1"]["scale"]),
                                file["bn1.weight"])
