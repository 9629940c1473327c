"""mmaction2 TSM-ResNet checkpoints: the same Flax weights as torchvision's layout, clear refusals.

The layout tests need no torch: a torchvision-layout state_dict of numpy arrays is built from
the Flax model's shapes and renamed as mmaction2 names it. The logits test needs torch and
torchvision and runs with the other torch checks (skipped without them, except under
APLT_REQUIRE_TORCH=1, which `make test-torch` sets).
"""
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from aplt_jax import models
from aplt_jax.errors import ConfigError
from aplt_jax.models import pretrained
from aplt_jax.models.tsm_resnet import IMAGENET_MEAN, IMAGENET_STD

NUM_CLASSES = 10
SIZE = 64
_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
         "var": "running_var"}


def _flax_model(depth: int, num_classes: int = NUM_CLASSES):
  return models.build(f"tsm_resnet{depth}", num_classes, width_mult=1.0, shift=False,
                      stem="imagenet", input_mode="rgb")


def _abstract_variables(model):
  x = jnp.zeros((1, 1, SIZE, SIZE, 3), jnp.float32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))


def _torchvision_layout(abstract, seed: int = 0) -> dict[str, np.ndarray]:
  """Random weights under torchvision's names and layouts for the Flax model's variables."""
  rng = np.random.default_rng(seed)
  out = {}
  for coll in ("params", "batch_stats"):
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract[coll])[0]:
      keys = [p.key for p in path]
      shape = tuple(leaf.shape)
      if keys[0] == "head":
        name = f"fc.{_LEAF[keys[-1]]}"
        shape = shape[::-1]
      else:
        mods = [{"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(k, k)
                for k in keys[1:-1]]
        mods = [m.replace("_", ".") if m.startswith("layer") else m for m in mods]
        name = ".".join(mods + [_LEAF[keys[-1]]])
        if len(shape) == 4:  # Flax [kh, kw, I, O] -> torch [O, I, kh, kw]
          shape = (shape[3], shape[2], shape[0], shape[1])
      value = rng.standard_normal(shape).astype(np.float32)
      out[name] = np.abs(value) + 0.5 if keys[-1] == "var" else value
      if keys[-1] == "var":
        out[name.replace("running_var", "num_batches_tracked")] = np.array(7, np.int64)
  return out


def _mmaction2_layout(tv: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """torchvision names -> mmaction2 TSM names (shift wrapping each block's conv1: 'blockres')."""
  out = {}
  for name, value in tv.items():
    if name.startswith("fc."):
      out["cls_head.fc_cls." + name[3:]] = value
      continue
    name = re.sub(r"^conv1\.", "conv1.conv.", name)
    name = re.sub(r"^bn1\.", "conv1.bn.", name)
    name = re.sub(r"^(layer\d\.\d+)\.conv1\.", r"\1.conv1.conv.net.", name)
    name = re.sub(r"^(layer\d\.\d+)\.conv([23])\.", r"\1.conv\2.conv.", name)
    name = re.sub(r"^(layer\d\.\d+)\.bn(\d)\.", r"\1.conv\2.bn.", name)
    name = re.sub(r"\.downsample\.0\.", ".downsample.conv.", name)
    name = re.sub(r"\.downsample\.1\.", ".downsample.bn.", name)
    out["backbone." + name] = value
  out["data_preprocessor.mean"] = np.array([123.675, 116.28, 103.53], np.float32)
  return out


def _assert_same_trees(a, b):
  fa, fb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in fa] == [p for p, _ in fb]
  for (path, x), (_, y) in zip(fa, fb):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


@pytest.mark.parametrize("depth", [18, 50])
def test_mmaction2_checkpoint_loads_the_same_weights_as_torchvision(depth, tmp_path):
  abstract = _abstract_variables(_flax_model(depth))
  tv = _torchvision_layout(abstract, seed=depth)
  mm = _mmaction2_layout(tv)
  assert "backbone.layer1.0.conv1.conv.net.weight" in mm  # the layout the issue names
  path = tmp_path / "tsm_kinetics.safetensors"
  save_file(mm, str(path))

  expected = pretrained.port(tv, abstract["params"], abstract["batch_stats"], include_head=True)
  got = pretrained.port(pretrained.read_state_dict(path), abstract["params"],
                        abstract["batch_stats"], include_head=True)
  _assert_same_trees(got, expected)
  # Not a tautology: a filled leaf is the file's value, not the abstract placeholder.
  np.testing.assert_array_equal(got[1]["backbone"]["bn1"]["mean"],
                                mm["backbone.conv1.bn.running_mean"])
  np.testing.assert_array_equal(got[0]["backbone"]["layer1_0"]["conv1"]["kernel"],
                                mm["backbone.layer1.0.conv1.conv.net.weight"].transpose(2, 3, 1, 0))


def test_the_head_is_taken_only_when_the_class_count_matches():
  abstract = _abstract_variables(_flax_model(18))
  mm = _mmaction2_layout(_torchvision_layout(abstract))
  assert pretrained.head_fits(mm, abstract["params"])
  other = _abstract_variables(_flax_model(18, num_classes=52))
  assert not pretrained.head_fits(mm, other["params"])
  # Without the head, the backbone still loads into a model of another class count.
  params, _ = pretrained.port(mm, other["params"], other["batch_stats"])
  assert params["head"]["kernel"] is other["params"]["head"]["kernel"]
  no_head = {k: v for k, v in mm.items() if not k.startswith("cls_head.")}
  assert not pretrained.head_fits(no_head, abstract["params"])


def test_a_checkpoint_with_wrong_keys_or_shapes_is_refused_naming_the_entries():
  abstract = _abstract_variables(_flax_model(18))
  mm = _mmaction2_layout(_torchvision_layout(abstract))
  del mm["backbone.layer2.1.conv2.bn.running_var"]
  mm["backbone.layer3.0.conv1.conv.net.weight"] = np.zeros((3, 3, 3, 3), np.float32)
  mm["backbone.layer1.0.net.conv1.conv.weight"] = np.zeros((64, 64, 3, 3), np.float32)
  with pytest.raises(ConfigError) as err:
    pretrained.port(mm, abstract["params"], abstract["batch_stats"], source="tsm.pth")
  message = str(err.value)
  assert "do not fit this backbone" in message
  assert "backbone.layer3.0.conv1.conv.net.weight (3, 3, 3, 3)" in message  # mis-shaped
  assert "batch_stats/backbone/layer2_1/bn2/var" in message  # missing
  assert "backbone.layer1.0.net.conv1.conv.weight" in message  # unexpected
  assert "mmaction2" in message


def _torch():
  if os.environ.get("APLT_REQUIRE_TORCH") == "1":  # make test-torch installed it: never skip
    import torch  # pylint: disable=g-import-not-at-top
    import torchvision  # pylint: disable=g-import-not-at-top
    return torch, torchvision
  return pytest.importorskip("torch"), pytest.importorskip("torchvision")


def test_mmaction2_tsm_r50_gives_torchvision_logits(tmp_path):
  torch, torchvision = _torch()
  torch.manual_seed(0)
  net = torchvision.models.resnet50(weights=None, num_classes=NUM_CLASSES)
  x = np.random.default_rng(0).random((2, SIZE, SIZE, 3), np.float32)
  norm = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
  norm = torch.from_numpy(norm.transpose(0, 3, 1, 2).copy())
  with torch.no_grad():
    for m in net.modules():  # non-trivial BatchNorm affine; statistics of such inputs
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0.0, 0.1)
        m.momentum = None  # cumulative average over the calibration batches
    net.train()
    for seed in (1, 2):
      calib = np.random.default_rng(seed).random((4, SIZE, SIZE, 3), np.float32)
      calib = (calib - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD,
                                                                             np.float32)
      net(torch.from_numpy(calib.transpose(0, 3, 1, 2).copy()))
  net.eval()
  tv = {k: v.numpy() for k, v in net.state_dict().items()}
  # An mmaction2 training checkpoint: the state_dict wrapped with metadata.
  path = tmp_path / "tsm_r50_kinetics.pth"
  torch.save({"meta": {"epoch": 50},
              "state_dict": {k: torch.from_numpy(v) for k, v in _mmaction2_layout(tv).items()}},
             path)

  with torch.no_grad():
    expected = net(norm).numpy()

  model = _flax_model(50)
  abstract = _abstract_variables(model)
  state_dict = pretrained.read_state_dict(path)
  assert pretrained.head_fits(state_dict, abstract["params"])
  params, stats = pretrained.port(state_dict, abstract["params"], abstract["batch_stats"],
                                  include_head=True, source=str(path))
  logits, _ = jax.jit(lambda v, x: model.apply(v, x, train=False))(
      {"params": params, "batch_stats": stats}, x[:, None])  # T = 1, no shift
  print(f"max |logit| {np.abs(expected).max():.3f}, max diff "
        f"{np.abs(np.asarray(logits) - expected).max():.2e}")
  assert np.abs(expected).max() > 0.1
  np.testing.assert_allclose(np.asarray(logits), expected, atol=1e-4, rtol=0)
