"""Backbones, the classifier wrapper and the registry.

Tiny models run for real (depth 10, width 8, CIFAR stem, B=2, T=4, 16x16); full-size models
are checked with `jax.eval_shape` only. Compiled functions: one init and four applies.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aplt_jax import models
from aplt_jax.models import tsm_resnet

B, T, H, W, C = 2, 4, 16, 16, 5
TINY = dict(width_mult=0.125, stem="cifar")


def _tiny(**overrides) -> nn.Module:
  return models.build("tsm_resnet10", C, **{**TINY, **overrides})


@functools.lru_cache(maxsize=None)
def _eval_fn(shift: bool, dtype: str):
  """Jitted inference apply of the tiny model, returning every intermediate."""
  model = _tiny(shift=shift, dtype=dtype)

  @jax.jit
  def apply(variables, x):
    return model.apply(variables, x, train=False, capture_intermediates=True,
                       mutable=["intermediates"])
  return apply


def _frame_features(state) -> jax.Array:
  """[B, T, d] per-frame features sown by the backbone."""
  return state["intermediates"]["backbone"]["frame_features"][0]


@pytest.fixture(scope="module")
def clips() -> jax.Array:
  return jax.random.uniform(jax.random.key(1), (B, T, H, W, 3), jnp.float32)


@pytest.fixture(scope="module")
def variables(clips):
  # shift / dtype add no parameters, so one init serves every tiny variant.
  return jax.jit(functools.partial(_tiny().init, train=False))(jax.random.key(0), clips)


# --- temporal shift -------------------------------------------------------------------------

def test_temporal_shift_hand_computed():
  # x[b, t, c] = 100 b + 10 t + c; C=4, shift_div=4 -> fold=1: channel 0 takes the next
  # frame, channel 1 the previous frame, channels 2-3 stay; zeros enter at the clip ends.
  b, t, c = np.meshgrid(np.arange(2), np.arange(3), np.arange(4), indexing="ij")
  x = (100 * b + 10 * t + c).astype(np.float32).reshape(6, 1, 1, 4)
  expected = np.array([
      [10, 0, 2, 3], [20, 1, 12, 13], [0, 11, 22, 23],
      [110, 0, 102, 103], [120, 101, 112, 113], [0, 111, 122, 123],
  ], np.float32).reshape(6, 1, 1, 4)
  out = tsm_resnet.temporal_shift(jnp.asarray(x), num_frames=3, shift_div=4)
  np.testing.assert_array_equal(np.asarray(out), expected)


def test_temporal_shift_matches_numpy_per_pixel():
  x = np.random.default_rng(0).normal(size=(2 * 5, 3, 2, 16)).astype(np.float32)
  out = np.asarray(tsm_resnet.temporal_shift(jnp.asarray(x), num_frames=5, shift_div=8))
  v = x.reshape(2, 5, 3, 2, 16)
  ref = v.copy()
  ref[:, :, ..., 0:2] = 0
  ref[:, :-1, ..., 0:2] = v[:, 1:, ..., 0:2]  # backward in time
  ref[:, 1:, ..., 2:4] = v[:, :-1, ..., 2:4]  # forward in time
  ref[:, 0, ..., 2:4] = 0
  np.testing.assert_array_equal(out, ref.reshape(x.shape))


def test_temporal_shift_edge_cases():
  x = jnp.arange(2 * 3 * 4, dtype=jnp.float32).reshape(2, 1, 3, 4)
  # Fewer channels than shift_div: nothing is shifted.
  np.testing.assert_array_equal(tsm_resnet.temporal_shift(x, 2, shift_div=8), x)
  # One frame: both shifted folds only see the zero padding.
  one = np.asarray(tsm_resnet.temporal_shift(x, 1, shift_div=4))
  assert (one[..., :2] == 0).all() and (one[..., 2:] == np.asarray(x)[..., 2:]).all()
  with pytest.raises(ValueError, match="multiple of num_frames"):
    tsm_resnet.temporal_shift(x, 3)


# --- tiny model, run for real ---------------------------------------------------------------

def test_tiny_output_shapes(variables, clips):
  assert set(variables) == {"params", "batch_stats"}
  assert set(variables["params"]) == {"backbone", "head"}
  (logits, features), state = _eval_fn(True, "float32")(variables, clips)
  d = 8 * 8  # width 64 * 0.125 = 8 at stage 1, x8 at stage 4 (BasicBlock: no expansion)
  assert logits.shape == (B, C) and logits.dtype == jnp.float32
  assert features.shape == (B, d) and features.dtype == jnp.float32
  assert models.build("tsm_resnet10", C, **TINY).backbone.feature_dim == d
  frames = _frame_features(state)
  assert frames.shape == (B, T, d)
  np.testing.assert_allclose(features, frames.mean(axis=1), rtol=1e-6, atol=1e-6)
  # CIFAR stem keeps the resolution until layer2 halves it.
  inter = state["intermediates"]["backbone"]
  assert inter["layer1_0"]["__call__"][0].shape == (B * T, 16, 16, 8)
  assert inter["layer4_0"]["__call__"][0].shape == (B * T, 2, 2, 64)
  # The head really is a dense layer on the returned features.
  head = variables["params"]["head"]
  np.testing.assert_allclose(logits, features @ head["kernel"] + head["bias"], rtol=1e-5,
                             atol=1e-5)


def test_frames_independent_without_shift_and_mixed_with_it(variables, clips):
  changed = clips.at[0, 0].set(1.0 - clips[0, 0])  # clip 0, frame 0 only
  for shift in (False, True):
    apply = _eval_fn(shift, "float32")
    before = np.asarray(_frame_features(apply(variables, clips)[1]))
    after = np.asarray(_frame_features(apply(variables, changed)[1]))
    assert not np.allclose(before[0, 0], after[0, 0])
    # Never leaks across clips of the batch (inference-mode BatchNorm).
    np.testing.assert_allclose(after[1], before[1], rtol=1e-6, atol=1e-6)
    if shift:
      assert not np.allclose(before[0, 1], after[0, 1], atol=1e-5)
    else:
      np.testing.assert_allclose(after[0, 1:], before[0, 1:], rtol=1e-6, atol=1e-6)


def test_no_shift_is_frame_permutation_equivariant(variables, clips):
  perm = np.array([2, 0, 3, 1])
  apply = _eval_fn(False, "float32")
  base = np.asarray(_frame_features(apply(variables, clips)[1]))
  permuted = np.asarray(_frame_features(apply(variables, clips[:, perm])[1]))
  np.testing.assert_allclose(permuted, base[:, perm], rtol=1e-5, atol=1e-6)


def test_train_updates_batch_stats_with_torch_momentum(variables, clips):
  model = _tiny()

  @jax.jit
  def train_apply(v, x):
    return model.apply(v, x, train=True, mutable=["batch_stats", "intermediates"],
                       capture_intermediates=True)

  (logits, _), state = train_apply(variables, clips)
  assert np.isfinite(np.asarray(logits)).all()
  old, new = variables["batch_stats"], state["batch_stats"]
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), old, new)
  assert all(jax.tree.leaves(changed)), changed
  # Stem BN: running_mean <- 0.9 * 0 + 0.1 * batch mean of the conv output (torch's 0.1).
  conv_out = state["intermediates"]["backbone"]["conv1"]["__call__"][0]
  np.testing.assert_allclose(new["backbone"]["bn1"]["mean"],
                             0.1 * np.asarray(conv_out).mean(axis=(0, 1, 2)),
                             rtol=1e-4, atol=1e-6)


def test_bfloat16_compute_float32_params_and_logits(variables, clips):
  shapes = jax.eval_shape(functools.partial(_tiny(dtype="bfloat16").init, train=False),
                          jax.random.key(0), clips)
  assert {a.dtype for a in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
  (logits, features), state = _eval_fn(True, "bfloat16")(variables, clips)
  assert logits.dtype == jnp.float32 and features.dtype == jnp.float32
  assert np.isfinite(np.asarray(logits)).all()
  inter = state["intermediates"]["backbone"]["layer1_0"]
  assert inter["conv1"]["__call__"][0].dtype == jnp.bfloat16
  assert inter["bn1"]["__call__"][0].dtype == jnp.float32
  (ref, _), _ = _eval_fn(True, "float32")(variables, clips)
  np.testing.assert_allclose(logits, ref, atol=0.05 * float(jnp.abs(ref).max()) + 1e-3)


# --- conv padding matches PyTorch ------------------------------------------------------------

def _torch_conv_numpy(x, k, stride, pad):
  """Zero-padded cross-correlation as torch.nn.Conv2d computes it. x [H,W,I], k [kh,kw,I,O]."""
  xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
  kh, kw = k.shape[:2]
  oh = (xp.shape[0] - kh) // stride + 1
  ow = (xp.shape[1] - kw) // stride + 1
  out = np.zeros((oh, ow, k.shape[3]))
  for i in range(oh):
    for j in range(ow):
      patch = xp[i * stride:i * stride + kh, j * stride:j * stride + kw]
      out[i, j] = np.einsum("hwi,hwio->o", patch, k)
  return out


@pytest.mark.parametrize("kernel,stride,size", [(7, 2, 8), (3, 2, 6), (3, 1, 5), (1, 2, 6)])
def test_conv_padding_is_pytorch_symmetric(kernel, stride, size):
  # On even inputs with stride 2, 'SAME' would pad (p-1, p): the values would differ.
  conv = tsm_resnet._conv(3, kernel, stride, jnp.float32, "c")
  x = np.random.default_rng(kernel + stride).normal(size=(1, size, size, 2)).astype(np.float32)
  params = conv.init(jax.random.key(0), x)
  out = np.asarray(conv.apply(params, x))[0]
  ref = _torch_conv_numpy(x[0], np.asarray(params["params"]["kernel"]), stride, kernel // 2)
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


# --- full-size models, shapes only -----------------------------------------------------------

# torchvision's published parameter totals (fc included) and fc sizes.
TORCHVISION = {18: (11_689_512, 512), 34: (21_797_672, 512), 50: (25_557_032, 2048)}


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_full_size_shapes_and_torchvision_param_counts(depth):
  total, d = TORCHVISION[depth]
  expected_backbone = total - (d * 1000 + 1000)  # 11,176,512 / 21,284,672 / 23,508,032
  model = models.build(f"tsm_resnet{depth}", 12)
  x = jax.ShapeDtypeStruct((1, 8, 224, 224, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  count = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(variables["params"]["backbone"]))
  assert count == expected_backbone
  (logits, features), state = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=False, capture_intermediates=True,
                               mutable=["intermediates"]), variables, x)
  assert features.shape == (1, d) and logits.shape == (1, 12)
  assert model.backbone.feature_dim == d
  inter = state["intermediates"]["backbone"]
  assert inter["layer1_0"]["__call__"][0].shape[1:3] == (56, 56)  # 7x7/2 conv + 3x3/2 pool
  assert inter["layer4_0"]["__call__"][0].shape == (8, 7, 7, d)
  p = variables["params"]["backbone"]
  assert p["conv1"]["kernel"].shape == (7, 7, 3, 64)
  assert "downsample_conv" in p["layer2_0"] and "downsample_conv" not in p["layer2_1"]
  if depth == 50:
    # v1.5: the 1x1 reduce keeps 56x56, the 3x3 carries the stride to 28x28.
    blk = inter["layer2_0"]
    assert blk["conv1"]["__call__"][0].shape[1:3] == (56, 56)
    assert blk["conv2"]["__call__"][0].shape[1:3] == (28, 28)
    assert p["layer1_0"]["downsample_conv"]["kernel"].shape == (1, 1, 64, 256)
    assert p["layer4_2"]["conv3"]["kernel"].shape == (1, 1, 512, 2048)
  else:
    assert "downsample_conv" not in p["layer1_0"]


# --- registry -------------------------------------------------------------------------------

def test_registry_names_and_errors():
  assert {"tsm_resnet10", "tsm_resnet18", "tsm_resnet34", "tsm_resnet50"} <= set(
      models.names())
  m = models.build("tsm_resnet18", 7, width_mult=0.5, shift_div=4, shift=False,
                   stem="cifar", dtype="bfloat16")
  assert isinstance(m, models.Classifier) and m.num_classes == 7
  bb = m.backbone
  assert (bb.depth, bb.width_mult, bb.shift_div, bb.shift, bb.stem, bb.dtype) == (
      18, 0.5, 4, False, "cifar", jnp.bfloat16)
  assert models.build("tsm_resnet18", 7, dtype=jnp.float32).backbone.dtype == jnp.float32
  with pytest.raises(ValueError, match="unknown model"):
    models.build("resnet18", 7)
  with pytest.raises(ValueError, match="widht_mult"):
    models.build("tsm_resnet18", 7, widht_mult=0.5)
  with pytest.raises(ValueError, match="dtype"):
    models.build("tsm_resnet18", 7, dtype="float64x")
  with pytest.raises(ValueError, match="stem"):
    models.build("tsm_resnet18", 7, stem="tiny")
  with pytest.raises(ValueError, match="already registered"):
    models.register("tsm_resnet18")(lambda: None)


class _MeanPool(nn.Module):
  """A toy sequence backbone: [B, T, K] -> [B, width] through one dense layer."""
  width: int = 3

  @nn.compact
  def __call__(self, x, train):
    del train
    return nn.Dense(self.width)(x).mean(axis=1)


def test_registry_is_generic():
  name = "_test_mean_pool"
  models.register(name)(_MeanPool)
  try:
    assert name in models.names()
    model = models.build(name, 4, width=6)
    x = jax.ShapeDtypeStruct((2, 10, 5), jnp.float32)
    v = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    logits, features = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), v, x)
    assert logits.shape == (2, 4) and features.shape == (2, 6)
    assert v["params"]["head"]["kernel"].shape == (6, 4)
  finally:
    models._BACKBONES._items.pop(name)  # keep the shared registry clean for other tests
