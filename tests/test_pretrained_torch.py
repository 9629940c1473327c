"""torchvision ResNet weights in the Flax TSM-ResNet, live against torch: same logits, .pth files.

Needs torch and torchvision (requirements-torch.txt): `make test-torch`, which CI runs after
`make test`. Without them the tests skip, except under APLT_REQUIRE_TORCH=1 (set by
`make test-torch`), where they must run. tests/test_pretrained.py checks the same port without
torch, against stored logits.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aplt_jax import models
from aplt_jax.errors import ConfigError
from aplt_jax.models import pretrained
from aplt_jax.models.tsm_resnet import IMAGENET_MEAN, IMAGENET_STD

if os.environ.get("APLT_REQUIRE_TORCH") == "1":
  import torch  # noqa: F401  (make test-torch installed requirements-torch.txt: never skip)
  import torchvision
else:
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")

NUM_CLASSES = 10
torch.set_num_threads(1)  # one summation order for the reference logits
SIZE = 64


def _normalise(x: np.ndarray):
  """[B, H, W, 3] in [0, 1] -> torchvision's input, [B, 3, H, W] ImageNet-normalised."""
  x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
  return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def _calibrated_torchvision(depth: int):
  """A torchvision ResNet with random weights and non-trivial BatchNorm affine and statistics."""
  torch.manual_seed(depth)
  net = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=NUM_CLASSES)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0.0, 0.1)
        m.momentum = None  # cumulative average over the calibration batches
    net.train()
    for _ in range(2):  # inputs distributed as the test's (normalised uniform images)
      net(_normalise(np.random.default_rng(0).random((4, SIZE, SIZE, 3), np.float32)))
  return net.eval()


def _flax_model(depth: int):
  return models.build(f"tsm_resnet{depth}", NUM_CLASSES, width_mult=1.0, shift=False,
                      stem="imagenet", input_mode="rgb")


def _abstract_variables(model):
  x = jnp.zeros((1, 1, SIZE, SIZE, 3), jnp.float32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))


@pytest.mark.parametrize("depth,suffix", [(18, ".pth"), (50, ".safetensors")])
def test_flax_resnet_gives_torchvision_logits(depth, suffix, tmp_path):
  net = _calibrated_torchvision(depth)
  path = tmp_path / f"resnet{depth}{suffix}"
  if suffix == ".pth":
    torch.save(net.state_dict(), path)
  else:
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
  x = np.random.default_rng(depth).random((2, SIZE, SIZE, 3), np.float32)
  with torch.no_grad():
    expected = net(_normalise(x)).numpy()

  model = _flax_model(depth)
  abstract = _abstract_variables(model)
  params, stats = pretrained.port(pretrained.read_state_dict(path), abstract["params"],
                                  abstract["batch_stats"], include_head=True)
  logits, _ = jax.jit(lambda v, x: model.apply(v, x, train=False))(
      {"params": params, "batch_stats": stats}, x[:, None])  # T = 1, no shift
  print(f'resnet{depth}: max |logit| {np.abs(expected).max():.3f}, max diff '
        f'{np.abs(np.asarray(logits) - expected).max():.2e}')
  assert np.abs(expected).max() > 0.1  # a non-trivial output
  np.testing.assert_allclose(np.asarray(logits), expected, atol=1e-4, rtol=0)


def test_weights_of_another_depth_are_refused_naming_the_entries(tmp_path):
  path = tmp_path / "resnet18.pth"
  torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
  abstract = _abstract_variables(_flax_model(50))
  with pytest.raises(ConfigError, match=r"do not fit this backbone.*other shapes.*bn3"):
    pretrained.port(pretrained.read_state_dict(path), abstract["params"],
                    abstract["batch_stats"], source=str(path))


@pytest.mark.parametrize("depth", [18, 50])
def test_the_stored_golden_logits_are_torchvisions_today(depth):
  """tests/golden's fixture still matches the installed torchvision on the numpy weights."""
  import sys  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), "golden"))
  import make_torchvision_logits  # pylint: disable=g-import-not-at-top
  with open(os.path.join(os.path.dirname(__file__), "golden",
                         "torchvision_resnet_logits.json")) as f:
    stored = json.load(f)["resnets"][str(depth)]
  np.testing.assert_allclose(make_torchvision_logits.logits(depth), stored["logits"],
                             atol=1e-5, rtol=0)
