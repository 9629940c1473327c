"""torchvision ResNet weights in the Flax TSM-ResNet: same logits, clear errors, the train hook.

Needs torch and torchvision (requirements-torch.txt, installed by `make test`); without them
(a user's clone) the torch tests skip, except in CI, where they must run.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aplt_jax import models
from aplt_jax.errors import ConfigError
from aplt_jax.models import pretrained
from aplt_jax.models.tsm_resnet import IMAGENET_MEAN, IMAGENET_STD

if os.environ.get("CI"):
  import torch  # noqa: F401  (CI installs requirements-torch.txt: never skip there)
  import torchvision
else:
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")

NUM_CLASSES = 10
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


def test_a_corrupt_weights_file_is_a_config_error(tmp_path):
  path = tmp_path / "broken.safetensors"
  path.write_bytes(b"\xff" * 64)
  with pytest.raises(ConfigError, match=r"model.pretrained=.*broken.safetensors.* cannot be read"):
    pretrained.read_state_dict(path)
