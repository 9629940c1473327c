"""The jitted train / eval / embed steps on a tiny model and tiny clips."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aplt_jax.augment import video as augment
from aplt_jax import models
from aplt_jax import parallel
from aplt_jax import ssl
from aplt_jax import losses
from aplt_jax import steps
from aplt_jax.state import Prototypes

NUM_CLASSES, B, MU, T, S, OUT = 3, 4, 2, 4, 16, 12
NUM_UNLABELED, NUM_TRAIN = 8, 12


class _Cfg(dict):
  __getattr__ = dict.__getitem__


OPTIM = _Cfg(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="constant",
             grad_clip=0.0)


@pytest.fixture(scope="module")
def setup():
  model = models.build("tsm_resnet10", NUM_CLASSES, width_mult=0.125, stem="cifar")
  cfg = augment.AugmentConfig(out_size=OUT)
  views = steps.Views(weak=lambda k, x: augment.weak_batch(k, x, cfg),
                      strong=lambda k, x: augment.strong_batch(k, x, cfg),
                      center=lambda x: augment.center_batch(x, cfg))
  rng = np.random.default_rng(0)
  batch = {
      "labeled": {"x": rng.integers(0, 256, (B, T, S, S, 3), dtype=np.uint8),
                  "label": np.array([0, 1, 2, 0], np.int32)},
      "unlabeled": {"x": rng.integers(0, 256, (B * MU, T, S, S, 3), dtype=np.uint8),
                    "index": np.arange(4, 12, dtype=np.int32),
                    "uidx": np.arange(8, dtype=np.int32),
                    "hidden": np.array([0, 1, 2, 0, 1, 2, 0, -1], np.int32)}}
  tx = steps.make_optimizer(OPTIM, 100)
  d = model.backbone.feature_dim
  centers = np.linalg.qr(rng.normal(size=(d, NUM_CLASSES)))[0].T.astype(np.float32)
  protos = Prototypes(centers=jnp.asarray(centers),
                      labels=jnp.asarray(rng.integers(0, NUM_CLASSES, NUM_TRAIN), jnp.int32),
                      keep=jnp.asarray(rng.random(NUM_TRAIN) < 0.6),
                      thresholds=jnp.full((NUM_CLASSES,), 0.5), round=jnp.ones((), jnp.int32),
                      offset=jnp.zeros((d,), jnp.float32))

  def new_state(method):
    return steps.create_train_state(
        model, tx, method, key=jax.random.key(0, impl="rbg"),
        sample_x=jnp.zeros((1, T, OUT, OUT, 3)), num_classes=NUM_CLASSES,
        num_unlabeled=NUM_UNLABELED)

  return dict(model=model, views=views, batch=batch, protos=protos, new_state=new_state)


@pytest.fixture(scope="module")
def aplt_step(setup):
  """The APLT train step, jitted once, with a trace counter."""
  traces = []
  fn = steps.make_train_step(ssl.get("aplt"), setup["views"], steps.LossWeights(), 0.999)

  def counted(*args):
    traces.append(1)
    return fn(*args)

  return jax.jit(counted), traces


def test_aplt_step_runs_logs_every_term_and_does_not_retrace(setup, aplt_step):
  step, traces = aplt_step
  state = setup["new_state"](ssl.get("aplt"))
  state, m = step(state, setup["batch"], setup["protos"])
  for key in ("loss", "loss_sup_logits", "loss_sup_margin", "loss_u_logits", "loss_u_margin",
              "mask_rate", "pl_acc_masked", "proto_keep_rate", "grad_norm"):
    assert np.isfinite(m[key]), key
  assert float(m["loss_sup_margin"]) > 0 and float(m["loss_u_margin"]) > 0
  # The prototype-kept rate is the batch's share of kept rows.
  keep = np.asarray(setup["protos"].keep)[setup["batch"]["unlabeled"]["index"]]
  assert float(m["proto_keep_rate"]) == pytest.approx(keep.mean())
  swapped = setup["protos"].replace(
      centers=-setup["protos"].centers, keep=~setup["protos"].keep,
      labels=(setup["protos"].labels + 1) % NUM_CLASSES, round=jnp.asarray(2, jnp.int32))
  state, _ = step(state, setup["batch"], swapped)
  assert len(traces) == 1, "swapping the prototypes pytree must not retrace the step"
  assert int(state.step) == 2


def test_no_gradient_reaches_the_prototypes(setup):
  state = setup["new_state"](ssl.get("aplt"))
  fn = steps.make_train_step(ssl.get("aplt"), setup["views"], steps.LossWeights(), 0.999)
  loss_of_centers = lambda c: fn(state, setup["batch"], setup["protos"].replace(centers=c))[1][
      "loss"]
  g = jax.jit(jax.grad(loss_of_centers))(setup["protos"].centers)
  np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_loss_decreases_on_a_fixed_batch(setup, aplt_step):
  step, _ = aplt_step
  state = setup["new_state"](ssl.get("aplt"))
  # The weak view's CE (the strong views' random cutout and ops make the margin term swing).
  losses = []
  for _ in range(20):
    state, m = step(state, setup["batch"], setup["protos"])
    losses.append(float(m["loss_sup_logits"]))
  assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
  # EMA parameters move, but lag behind the live ones.
  leaf = lambda t: np.asarray(jax.tree.leaves(t)[0])
  init = leaf(setup["new_state"](ssl.get("aplt")).params)
  assert not np.allclose(leaf(state.ema_params), init)
  assert not np.allclose(leaf(state.ema_params), leaf(state.params))


@pytest.mark.parametrize("name", ["supervised", "fixmatch", "flexmatch", "freematch",
                                  "softmatch"])
def test_every_method_runs_and_keeps_its_state_shape(setup, name):
  method = ssl.get(name)
  state = setup["new_state"](method)
  fn = jax.jit(steps.make_train_step(method, setup["views"], steps.LossWeights(), 0.999))
  new, m = fn(state, setup["batch"], setup["protos"])
  assert np.isfinite(float(m["loss"]))
  assert float(m["loss_sup_margin"]) == 0 and float(m["loss_u_margin"]) == 0
  assert ("mask_rate" in m) == method.uses_unlabeled
  same = jax.tree.map(lambda a, b: a.shape == b.shape and a.dtype == b.dtype, state.ssl_state,
                      new.ssl_state)
  assert all(jax.tree.leaves(same))


def test_sync_ablation_uses_online_predictions(setup):
  """With sync=True the margin loss ignores the offline labels entirely."""
  method = ssl.get("aplt")
  fn = jax.jit(steps.make_train_step(method, setup["views"], steps.LossWeights(sync=True),
                                     0.999))
  state = setup["new_state"](method)
  _, m1 = fn(state, setup["batch"], setup["protos"])
  flipped = setup["protos"].replace(keep=~setup["protos"].keep,
                                    labels=(setup["protos"].labels + 1) % NUM_CLASSES)
  _, m2 = fn(state, setup["batch"], flipped)
  assert float(m1["loss_u_margin"]) == pytest.approx(float(m2["loss_u_margin"]), rel=1e-6)


def test_eval_and_embed_steps(setup):
  state = setup["new_state"](ssl.get("aplt"))
  x = jnp.asarray(setup["batch"]["unlabeled"]["x"])
  for head in ("linear", "proto", "ensemble"):
    scores, feats = jax.jit(steps.make_eval_step(setup["views"], head), static_argnums=3)(
        state, x, setup["protos"], True)
    assert scores.shape == (B * MU, NUM_CLASSES) and np.isfinite(np.asarray(scores)).all()
  embed = jax.jit(steps.make_embed_step(setup["views"]), static_argnums=(3, 4))
  key = jax.random.key(1, impl="rbg")
  z = np.asarray(embed(state, x, key, False, True))
  np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(z, np.asarray(embed(state, x, jax.random.key(2, impl="rbg"), False,
                                                 True)))  # centre view ignores the key
  zw = np.asarray(embed(state, x, key, True, True))
  assert not np.allclose(z, zw)


def test_two_devices_match_one(setup):
  """The same step on a batch sharded over 2 devices equals the 1-device step."""
  method = ssl.get("fixmatch")
  fn = steps.make_train_step(method, setup["views"], steps.LossWeights(), 0.999)
  out = []
  for n in (1, 2):
    mesh = parallel.make_mesh(jax.devices()[:n])
    rep, dat = parallel.replicated(mesh), parallel.data_sharded(mesh)
    step = jax.jit(fn, in_shardings=(rep, dat, rep), out_shardings=(rep, rep))
    state = parallel.replicate(mesh, setup["new_state"](method))
    batch = parallel.global_batch(mesh, setup["batch"])
    state, m = step(state, batch, parallel.replicate(mesh, setup["protos"]))
    out.append((m, jax.tree.leaves(state.params)[0]))
  np.testing.assert_allclose(float(out[0][0]["loss"]), float(out[1][0]["loss"]), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(out[0][1]), np.asarray(out[1][1]), rtol=1e-4, atol=1e-6)


# ---- The prototype branch's options: ramp-up, offline labels on the head, centring ------------


def test_ramp_grows_linearly_after_warmup():
  w = steps.LossWeights(rampup_start=10, rampup_steps=4)
  got = [float(w.ramp(jnp.asarray(s))) for s in (0, 9, 10, 11, 12, 13, 14, 100)]
  np.testing.assert_allclose(got, [0, 0, 0.25, 0.5, 0.75, 1, 1, 1])
  assert float(steps.LossWeights().ramp(jnp.asarray(0))) == 1.0


def test_rampup_scales_only_the_prototype_terms(setup):
  method = ssl.get("aplt")
  state = setup["new_state"](method)  # step 0
  run = lambda w: jax.jit(steps.make_train_step(method, setup["views"], w, 0.999))(
      state, setup["batch"], setup["protos"])[1]
  full = run(steps.LossWeights(head_weight=0.5))
  half = run(steps.LossWeights(head_weight=0.5, rampup_start=-1, rampup_steps=4))  # ramp 0.5
  for m in (full, half):
    assert float(m["loss_u_head"]) > 0
  for k in ("loss_sup_logits", "loss_sup_margin", "loss_u_logits", "loss_u_margin",
            "loss_u_head"):
    np.testing.assert_allclose(float(full[k]), float(half[k]), rtol=1e-6)
  assert float(half["proto_ramp"]) == 0.5
  proto = (float(full["loss_sup_margin"]) + float(full["loss_u_margin"])
           + 0.5 * float(full["loss_u_head"]))
  np.testing.assert_allclose(float(full["loss"]) - float(half["loss"]), 0.5 * proto, rtol=1e-5)


def test_head_weight_trains_the_head_on_kept_offline_labels(setup):
  """loss_u_head is the masked CE of the strong view's logits against the offline labels."""
  method = ssl.get("aplt")
  state = setup["new_state"](method)
  fn = jax.jit(steps.make_train_step(method, setup["views"], steps.LossWeights(head_weight=1.0),
                                     0.999))
  _, m = fn(state, setup["batch"], setup["protos"])
  none_kept = setup["protos"].replace(keep=jnp.zeros_like(setup["protos"].keep))
  _, m0 = fn(state, setup["batch"], none_kept)
  assert float(m["loss_u_head"]) > 0 and float(m0["loss_u_head"]) == 0
  _, off = jax.jit(steps.make_train_step(method, setup["views"], steps.LossWeights(), 0.999))(
      state, setup["batch"], setup["protos"])
  assert float(off["loss_u_head"]) == 0
  np.testing.assert_allclose(float(m["loss"]) - float(off["loss"]), float(m["loss_u_head"]),
                             rtol=1e-5)


def test_centred_prototype_branch_uses_the_offset(setup):
  method = ssl.get("aplt")
  state = setup["new_state"](method)
  fn = jax.jit(steps.make_train_step(method, setup["views"], steps.LossWeights(center=True),
                                     0.999))
  d = setup["protos"].centers.shape[1]
  zero = setup["protos"]
  shifted = zero.replace(offset=jnp.full((d,), 0.3, jnp.float32))
  _, a = fn(state, setup["batch"], zero)
  _, b = fn(state, setup["batch"], shifted)
  assert float(a["loss_sup_margin"]) != pytest.approx(float(b["loss_sup_margin"]), rel=1e-4)
  # With a zero offset the centred branch equals the plain one (features are normalised anyway).
  _, plain = jax.jit(steps.make_train_step(method, setup["views"], steps.LossWeights(), 0.999))(
      state, setup["batch"], zero)
  np.testing.assert_allclose(float(a["loss_sup_margin"]), float(plain["loss_sup_margin"]),
                             rtol=1e-5)
  scores = jax.jit(steps.make_eval_step(setup["views"], "proto", 16.0, True),
                   static_argnums=3)(state, jnp.asarray(setup["batch"]["labeled"]["x"]),
                                     shifted, True)[0]
  assert np.isfinite(np.asarray(scores)).all()


def test_supervised_proto_control_uses_labels_only(setup):
  """The control: E5 + alpha E6, no unlabeled view in the forward pass, no unlabeled loss."""
  method = ssl.get("supervised_proto")
  state = setup["new_state"](method)
  fn = jax.jit(steps.make_train_step(method, setup["views"], steps.LossWeights(), 0.999))
  _, m = fn(state, setup["batch"], setup["protos"])
  assert float(m["loss_sup_margin"]) > 0
  assert float(m["loss_u_logits"]) == 0 and float(m["loss_u_margin"]) == 0
  assert "mask_rate" not in m
  garbage = jax.tree.map(lambda a: a, setup["batch"])
  garbage["unlabeled"] = {k: np.zeros_like(v) for k, v in garbage["unlabeled"].items()}
  _, m2 = fn(state, garbage, setup["protos"])
  np.testing.assert_allclose(float(m["loss"]), float(m2["loss"]), rtol=1e-6)


def test_online_agree_keeps_only_online_labels_that_match_the_offline_cluster(setup):
  """With tau = 0 every row passes E7's mask; agreement with the offline cluster then decides:
  over the C cyclic shifts of the offline labels, each row agrees exactly once."""
  method = ssl.get("aplt", {"threshold": 0.0})
  state = setup["new_state"](method)
  plain = jax.jit(steps.make_train_step(method, setup["views"], steps.LossWeights(), 0.999))
  assert float(plain(state, setup["batch"], setup["protos"])[1]["mask_rate"]) == 1.0
  agree = jax.jit(steps.make_train_step(method, setup["views"],
                                        steps.LossWeights(online_agree=True), 0.999))
  rates = []
  for k in range(NUM_CLASSES):
    shifted = setup["protos"].replace(labels=(setup["protos"].labels + k) % NUM_CLASSES)
    rates.append(float(agree(state, setup["batch"], shifted)[1]["mask_rate"]))
  np.testing.assert_allclose(sum(rates), 1.0, rtol=1e-6)
  assert max(rates) < 1.0


def test_online_weight_scales_e7_only(setup):
  method = ssl.get("aplt", {"threshold": 0.0})  # every row masked in, so E7 > 0
  state = setup["new_state"](method)
  run = lambda w: jax.jit(steps.make_train_step(method, setup["views"], w, 0.999))(
      state, setup["batch"], setup["protos"])[1]
  full, none = run(steps.LossWeights()), run(steps.LossWeights(online_weight=0.0))
  # The logged term is E7 itself (so the online mask's curves stay readable); only the total
  # loss is weighted.
  assert float(full["loss_u_logits"]) > 0
  assert float(none["loss_u_logits"]) == pytest.approx(float(full["loss_u_logits"]), rel=1e-6)
  np.testing.assert_allclose(float(full["loss"]) - float(none["loss"]),
                             float(full["loss_u_logits"]), rtol=1e-5)


def test_offline_agree_keeps_only_offline_labels_the_model_predicts(setup):
  """Over the C cyclic shifts of the offline labels (all kept), each unlabeled row's label
  equals the model's weak-view argmax exactly once: the kept rates sum to the plain rate."""
  method = ssl.get("aplt")
  state = setup["new_state"](method)
  all_kept = setup["protos"].replace(keep=jnp.ones_like(setup["protos"].keep))
  plain = jax.jit(steps.make_train_step(method, setup["views"], steps.LossWeights(), 0.999))
  assert float(plain(state, setup["batch"], all_kept)[1]["proto_keep_rate"]) == 1.0
  agree = jax.jit(steps.make_train_step(method, setup["views"],
                                        steps.LossWeights(offline_agree=True, head_weight=1.0),
                                        0.999))
  rates, heads = [], []
  for k in range(NUM_CLASSES):
    shifted = all_kept.replace(labels=(all_kept.labels + k) % NUM_CLASSES)
    m = agree(state, setup["batch"], shifted)[1]
    rates.append(float(m["proto_keep_rate"]))
    heads.append(float(m["loss_u_head"]))
  np.testing.assert_allclose(sum(rates), 1.0, rtol=1e-6)
  assert max(rates) < 1.0
  # A shift nobody agrees with trains neither the head nor E8.
  for r, h in zip(rates, heads):
    assert (h == 0) == (r == 0)


def test_class_balanced_kept_weights_reweight_e8_and_the_head_term_per_class(setup):
  """With the kept rows of two classes, E8 and the head term are each class's own term (kept
  alone, where its weight is 1) times `losses.class_balanced_weights` of the mixed kept set."""
  method = ssl.get("aplt")
  state = setup["new_state"](method)
  prior = (0.5, 0.3, 0.2)
  fn = jax.jit(steps.make_train_step(
      method, setup["views"], steps.LossWeights(head_weight=1.0, class_prior=prior), 0.999))
  labels = jnp.asarray(np.arange(NUM_TRAIN) % 2, jnp.int32)  # classes 0 and 1 only
  keep = jnp.asarray(np.arange(NUM_TRAIN) % 3 != 0)  # 4 kept rows per class: weights 1.25, 0.75
  protos = setup["protos"].replace(labels=labels, keep=keep)
  only = {c: fn(state, setup["batch"], protos.replace(keep=keep & (labels == c)))[1]
          for c in (0, 1)}
  mixed = fn(state, setup["batch"], protos)[1]
  w = np.asarray(losses.class_balanced_weights(labels, keep, jnp.asarray(prior)))
  assert abs(w[0] - 1.0) > 0.05 and abs(w[1] - 1.0) > 0.05
  for term in ("loss_u_margin", "loss_u_head"):
    expected = w[0] * float(only[0][term]) + w[1] * float(only[1][term])
    assert float(mixed[term]) == pytest.approx(expected, rel=1e-5)
    assert float(only[0][term]) > 0 and float(only[1][term]) > 0
