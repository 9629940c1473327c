"""Training batches read in one batched call per stream, and from worker processes, stay a pure
function of the step: the same as record-by-record reads, and the same after a resume."""
import numpy as np
import pytest

from aplt_jax.data import loader

N, CLASSES = 40, 4


class ArraySource:
  """`[i]` -> {'x': [2, 3] uint8 unique to i}; counts the records read one at a time."""

  def __init__(self):
    self.single = 0

  def __len__(self):
    return N

  def __getitem__(self, i):
    self.single += 1
    return {"x": np.full((2, 3), i, np.uint8) + np.arange(3, dtype=np.uint8)}


class BatchedArraySource(ArraySource):
  """The same records, with `__getitems__` (as `sources.Source` has)."""

  def __init__(self):
    super().__init__()
    self.calls = []

  def __getitems__(self, indices):
    self.calls.append(list(indices))
    return [{"x": np.full((2, 3), i, np.uint8) + np.arange(3, dtype=np.uint8)} for i in indices]


def _batches(source, workers: int = 0, threads: int = 2):
  labels = np.arange(N) % CLASSES
  labeled = np.arange(0, N, 5)
  unlabeled = np.setdiff1d(np.arange(N), labeled)
  return loader.TrainBatches(source, "x", labeled, unlabeled, labels, batch_size=4,
                             unlabeled_batch=8, seed=3, rows=(slice(None), slice(None)),
                             read_threads=threads, prefetch=2, read_workers=workers)


def _collect(batches, start, stop):
  return {s: b for s, b in batches.iterate(start, stop)}


def _assert_equal(a, b):
  assert sorted(a) == sorted(b)
  for s in a:
    for part in a[s]:
      for k in a[s][part]:
        np.testing.assert_array_equal(a[s][part][k], b[s][part][k], err_msg=f"{s}/{part}/{k}")


def test_batched_reads_give_the_record_by_record_batches_and_resume_exactly():
  batched = BatchedArraySource()
  got = _collect(_batches(batched), 0, 12)  # 12 steps: several epochs of the 8 labeled clips
  single = ArraySource()
  _assert_equal(got, _collect(_batches(single), 0, 12))
  assert single.single == 12 * (4 + 8)  # the fallback reads one record at a time
  assert batched.single == 0 and len(batched.calls) == 12 * 2  # one call per stream and step
  assert sorted(len(c) for c in batched.calls) == [4] * 12 + [8] * 12
  # A run resumed at step 7 reads exactly what the uninterrupted one read from step 7 on.
  _assert_equal({s: got[s] for s in range(7, 12)}, _collect(_batches(BatchedArraySource()), 7, 12))
  # The records are those the step's indices name (x encodes the record index).
  for s, b in got.items():
    np.testing.assert_array_equal(b["unlabeled"]["x"][:, 0, 0], b["unlabeled"]["index"])


@pytest.mark.slow  # worker processes start Python and import Grain (seconds each)
def test_worker_processes_give_the_same_batches_in_order():
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()  # Grain's workers read absl flags
  expected = _collect(_batches(BatchedArraySource()), 3, 9)
  got = list(_batches(BatchedArraySource(), workers=2, threads=1).iterate(3, 9))
  assert [s for s, _ in got] == list(range(3, 9))  # in step order
  _assert_equal(dict(got), expected)
