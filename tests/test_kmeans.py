"""k-means (DESIGN E2): scikit-learn and numpy oracles, clamping, edge cases, sharding."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans

from aplt_jax import kmeans

K, D, N = 4, 5, 31  # N odd: a 2-device run needs padding


@pytest.fixture(scope="module")
def blobs():
  """Four well separated Gaussian blobs in R^5 and, per blob, two labeled points."""
  rng = np.random.RandomState(0)
  means = 6.0 * np.eye(D)[:K] + 1.0
  truth = np.arange(N) % K
  x = (means[truth] + 0.5 * rng.randn(N, D)).astype(np.float32)
  labels = np.full(N, -1, np.int32)
  labels[:2 * K] = truth[:2 * K]
  return x, labels, truth


@pytest.fixture(scope="module")
def mesh2():
  return jax.make_mesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:2])


def _np_spherical(z, labels, valid, k, max_iter, tol):
  """Independent float64 reference of semi-supervised spherical k-means."""
  z = np.where(valid[:, None], z, 0.0).astype(np.float64)
  z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
  clamped = valid & (labels >= 0)

  def centres(assign, mask, prev):
    sums = np.zeros((k, z.shape[1]))
    np.add.at(sums, assign[mask], z[mask])
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return np.where(norms > 0, sums / np.maximum(norms, 1e-300), prev)

  def assign_to(c):
    return np.where(clamped, labels, np.argmax(z @ c.T, axis=1))

  c, it, shift = centres(labels, clamped, np.zeros((k, z.shape[1]))), 0, np.inf
  while it < max_iter and shift >= tol:
    new = centres(assign_to(c), valid, c)
    shift, c, it = np.linalg.norm(new - c, axis=1).max(), new, it + 1
  a = assign_to(c)
  objective = np.sum((1.0 - np.sum(z * c[a], axis=1))[valid])
  return c, a, objective, it


@pytest.mark.parametrize("init_kind,max_iter", [("data", 2), ("data", 30), ("perturbed", 30)])
def test_euclidean_matches_sklearn(blobs, init_kind, max_iter):
  x, _, _ = blobs
  rng = np.random.RandomState(1)
  if init_kind == "data":
    init = x[rng.choice(N, K, replace=False)]
  else:
    init = (6.0 * np.eye(D)[:K] + 1.0 + rng.randn(K, D)).astype(np.float32)
  ref = KMeans(K, init=init, n_init=1, max_iter=max_iter, tol=0.0, algorithm="lloyd").fit(x)
  assert np.bincount(ref.labels_, minlength=K).min() > 0  # no relocation happened in sklearn

  res = kmeans.jit_euclidean_kmeans(x, init, np.ones(N, bool), max_iter=max_iter, tol=0.0)
  np.testing.assert_array_equal(np.asarray(res.assign), ref.labels_)
  np.testing.assert_allclose(np.asarray(res.centers), ref.cluster_centers_, atol=1e-5)
  np.testing.assert_allclose(float(res.objective), ref.inertia_, rtol=1e-3)
  assert int(res.num_iters) == max_iter  # tol = 0 never stops early


def test_spherical_matches_numpy_oracle_and_ignores_padding():
  rng = np.random.RandomState(2)
  z = rng.randn(N, D).astype(np.float32)
  labels = np.full(N, -1, np.int32)
  labels[:8] = np.arange(8) % K
  valid = np.ones(N, bool)
  valid[-3:] = False
  z[-3:] = np.nan  # padding content must not leak anywhere
  labels[-1] = 2
  want_c, want_a, want_obj, want_it = _np_spherical(z, labels, valid, K, 100, 1e-5)

  res = kmeans.jit_spherical_kmeans(z, labels, valid, K, max_iter=100, tol=1e-5)
  np.testing.assert_array_equal(np.asarray(res.assign)[valid], want_a[valid])
  np.testing.assert_allclose(np.asarray(res.centers), want_c, atol=1e-5)
  np.testing.assert_allclose(float(res.objective), want_obj, rtol=1e-5)
  assert int(res.num_iters) == want_it
  assert np.isfinite(np.asarray(res.centers)).all()


def test_spherical_clamping_zero_rows_and_single_point_class():
  z = np.array([
      [1.0, 0.0, 0.0],   # 0: class 0
      [2.0, 0.1, 0.0],   # 1: class 0
      [0.0, 1.0, 0.0],   # 2: class 1
      [0.0, 3.0, 0.2],   # 3: class 1
      [0.1, 1.0, 0.0],   # 4: labeled 0 though it sits next to class 1
      [0.1, 1.0, 0.0],   # 5: the same point unlabeled -> class 1
      [0.0, 0.0, 5.0],   # 6: the only point of class 2
      [0.0, 0.0, 0.0],   # 7: all-zero, unlabeled
      [0.0, 0.0, 0.0],   # 8: all-zero, labeled 1
      [0.9, 0.1, 0.0],   # 9: unlabeled -> class 0
  ], np.float32)
  labels = np.array([0, 0, 1, 1, 0, -1, 2, -1, 1, -1], np.int32)
  res = kmeans.jit_spherical_kmeans(z, labels, np.ones(10, bool), 3)
  assign, centers = np.asarray(res.assign), np.asarray(res.centers)
  assert np.isfinite(centers).all() and np.isfinite(float(res.objective))
  np.testing.assert_array_equal(assign[[0, 1, 2, 3, 4, 5, 6, 8, 9]], [0, 0, 1, 1, 0, 1, 2, 1, 0])
  assert 0 <= assign[7] < 3

  unit = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
  for c in range(3):  # each centre is the normalised sum of its members
    s = unit[assign == c].sum(0)
    np.testing.assert_allclose(centers[c], s / np.linalg.norm(s), atol=1e-6)
  np.testing.assert_allclose(centers[2], [0.0, 0.0, 1.0], atol=1e-6)
  # Objective: zero rows are at distance 1 from any centre.
  want = np.sum(1.0 - np.sum(unit * centers[assign], axis=1))
  np.testing.assert_allclose(float(res.objective), want, rtol=1e-5)


def test_spherical_stops_before_max_iter_on_easy_data(blobs):
  x, labels, truth = blobs
  res = kmeans.jit_spherical_kmeans(x, labels, np.ones(N, bool), K, max_iter=50, tol=1e-5)
  assert 1 <= int(res.num_iters) < 50
  assert float(res.shift) < 1e-5
  np.testing.assert_array_equal(np.asarray(res.assign), truth)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(res.centers), axis=1), 1.0, atol=1e-6)


def test_sharded_spherical_equals_single_device(blobs, mesh2):
  x, labels, _ = blobs
  labels = labels.copy()
  labels[2 * K:] = -1
  labels[K:2 * K] = -1  # one labeled point per class: more movement
  valid = np.ones(N, bool)
  valid[5] = False
  one = kmeans.jit_spherical_kmeans(x, labels, valid, K, max_iter=100, tol=1e-5)
  fn = kmeans._sharded_fn("spherical", mesh2, K)
  sizes = []
  for _ in range(2):  # the second call must reuse the compiled function
    two = kmeans.sharded_spherical_kmeans(mesh2, x, labels, valid, K, max_iter=100, tol=1e-5)
    sizes.append(fn._cache_size() if hasattr(fn, "_cache_size") else 0)
  assert two.assign.shape == (N,)
  np.testing.assert_array_equal(np.asarray(two.assign)[valid], np.asarray(one.assign)[valid])
  np.testing.assert_allclose(np.asarray(two.centers), np.asarray(one.centers), atol=1e-5)
  np.testing.assert_allclose(float(two.objective), float(one.objective), rtol=1e-5)
  assert int(two.num_iters) == int(one.num_iters)
  # Other tests in this worker may have compiled it for other shapes: count only this one's.
  assert sizes[1] == sizes[0]


def test_sharded_euclidean_equals_single_device(blobs, mesh2):
  x, _, _ = blobs
  init = x[np.random.RandomState(3).choice(N, K, replace=False)]
  valid = np.ones(N, bool)
  valid[[0, 7]] = False
  one = kmeans.jit_euclidean_kmeans(x, init, valid, max_iter=20, tol=1e-6)
  two = kmeans.sharded_euclidean_kmeans(mesh2, x, init, valid, max_iter=20, tol=1e-6)
  assert two.assign.shape == (N,)
  np.testing.assert_array_equal(np.asarray(two.assign)[valid], np.asarray(one.assign)[valid])
  np.testing.assert_allclose(np.asarray(two.centers), np.asarray(one.centers), atol=1e-5)
  np.testing.assert_allclose(float(two.objective), float(one.objective), rtol=1e-5)
  # Padding rows must not move centres: compare with a run on the valid rows only.
  ref = KMeans(K, init=init, n_init=1, max_iter=20, tol=0.0, algorithm="lloyd").fit(x[valid])
  np.testing.assert_allclose(np.asarray(two.centers), ref.cluster_centers_, atol=1e-5)


def test_first_arg_matches_numpy_arg_reductions_with_ties():
  rng = np.random.RandomState(4)
  v = rng.randint(0, 3, size=(5, 40)).astype(np.float32)  # many ties along axis 0
  np.testing.assert_array_equal(np.asarray(kmeans._first_arg(v, np.min)), v.argmin(0))
  np.testing.assert_array_equal(np.asarray(kmeans._first_arg(v, np.max)), v.argmax(0))


def test_balance_offsets_give_the_masses_asked_for():
  """After Sinkhorn, softmax over clusters of `logits + g` sums, over the free rows, to the
  masses asked for; rows that are not free carry nothing."""
  rng = np.random.RandomState(4)
  logits = jnp.asarray(4.0 * rng.randn(3, 40), jnp.float32)
  free = np.ones(40, bool)
  free[[3, 17]] = False
  mass = np.array([0.5, 0.3, 0.2]) * free.sum()
  g = kmeans.balance_offsets(logits, jnp.asarray(free), jnp.log(jnp.asarray(mass, jnp.float32)),
                             num_iters=200)
  plan = np.asarray(jax.nn.softmax(logits + g[:, None], axis=0))[:, free]
  np.testing.assert_allclose(plan.sum(1), mass, rtol=1e-3)
  # Without offsets the nearest-centre masses are far from these (the test means something).
  assert np.abs(np.asarray(jax.nn.softmax(logits, axis=0))[:, free].sum(1) - mass).max() > 1.0


@pytest.mark.parametrize("sharded", [False, True])
def test_balanced_spherical_follows_the_labeled_frequencies(sharded, mesh2):
  """Class 1 has a mode nearer class 0's labeled points: nearest-centre k-means gives class 0
  three quarters of the points; balanced on the labeled frequencies (1:1) splits them by class,
  and the labeled points stay clamped."""
  rng = np.random.RandomState(5)
  def arc(deg, n):
    t = np.deg2rad(deg) + 0.05 * rng.randn(n)
    return np.stack([np.cos(t), np.sin(t)], 1).astype(np.float32)
  x = np.concatenate([arc(0, 100), arc(57, 50), arc(23, 50)])
  truth = np.repeat([0, 1], 100)
  labels = np.full(200, -1, np.int32)
  labels[[0, 1, 100, 101]] = [0, 0, 1, 1]
  valid = np.ones(200, bool)
  plain = kmeans.jit_spherical_kmeans(x, labels, valid, 2)
  if sharded:  # 199 rows over 2 shards: one padding row
    res = kmeans.sharded_spherical_kmeans(mesh2, x[:199], labels[:199], valid[:199], 2,
                                          balance_scale=16.0)
    one = kmeans.jit_spherical_kmeans(x[:199], labels[:199], valid[:199], 2, balance_scale=16.0)
    np.testing.assert_array_equal(np.asarray(res.assign), np.asarray(one.assign))
    x, truth = x[:199], truth[:199]
  else:
    res = kmeans.jit_spherical_kmeans(x, labels, valid, 2, balance_scale=16.0)
  assert np.bincount(np.asarray(plain.assign)).tolist() == [150, 50]
  np.testing.assert_array_equal(np.asarray(res.assign), truth)
