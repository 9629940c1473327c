"""torchvision ResNet weights in the Flax TSM-ResNet, without torch: golden logits, clear errors.

The weights come from numpy with fixed seeds (tests/resnet_golden.py); torchvision's logits for
them were computed once by tests/golden/make_torchvision_logits.py and stored beside it, with
the torch and torchvision versions. The live comparison is tests/test_pretrained_torch.py
(`make test-torch`).
"""
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

import resnet_golden as golden
from aplt_jax import models
from aplt_jax.errors import ConfigError
from aplt_jax.models import pretrained

FIXTURE = pathlib.Path(__file__).parent / "golden" / "torchvision_resnet_logits.json"


def _flax_model(depth: int):
  return models.build(f"tsm_resnet{depth}", golden.NUM_CLASSES, width_mult=1.0, shift=False,
                      stem="imagenet", input_mode="rgb")


def _abstract_variables(model):
  x = jnp.zeros((1, 1, golden.SIZE, golden.SIZE, 3), jnp.float32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))


@pytest.mark.parametrize("depth", [18, 50])
def test_flax_resnet_gives_the_stored_torchvision_logits(depth, tmp_path):
  stored = json.loads(FIXTURE.read_text())["resnets"][str(depth)]
  sd = golden.state_dict(depth)
  assert golden.checksum(sd) == pytest.approx(stored["weights_checksum"], rel=1e-12), (
      "numpy now draws other weights than those the fixture was made with: rerun "
      "tests/golden/make_torchvision_logits.py with torch installed")
  path = tmp_path / f"resnet{depth}.safetensors"  # through the file reader, as a run reads it
  save_file(sd, str(path))
  model = _flax_model(depth)
  abstract = _abstract_variables(model)
  params, stats = pretrained.port(pretrained.read_state_dict(path), abstract["params"],
                                  abstract["batch_stats"], include_head=True)
  logits, _ = jax.jit(lambda v, x: model.apply(v, x, train=False))(
      {"params": params, "batch_stats": stats}, golden.inputs(depth)[:, None])  # T = 1
  expected = np.asarray(stored["logits"], np.float32)
  assert np.abs(expected).max() > 0.1 and np.ptp(expected, axis=0).max() > 0.1  # non-trivial
  np.testing.assert_allclose(np.asarray(logits), expected, atol=1e-4, rtol=0)


def test_weights_of_another_depth_are_refused_naming_the_entries():
  abstract = _abstract_variables(_flax_model(50))
  with pytest.raises(ConfigError, match=r"do not fit this backbone.*other shapes.*bn3"):
    pretrained.port(golden.state_dict(18), abstract["params"], abstract["batch_stats"],
                    source="resnet18.safetensors")


def test_a_corrupt_weights_file_is_a_config_error(tmp_path):
  path = tmp_path / "broken.safetensors"
  path.write_bytes(b"\xff" * 64)
  with pytest.raises(ConfigError, match=r"model.pretrained=.*broken.safetensors.* cannot be read"):
    pretrained.read_state_dict(path)
