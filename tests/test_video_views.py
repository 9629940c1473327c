"""Temporal jitter of prepared videos: one stored frame per segment, identity for synthetic."""
import jax
import numpy as np

from aplt_jax import augment as views_lib
from aplt_jax.augment import video as augment
from configs import default


def _clips(b=3, t=4, k=3):
  """uint8 [b, t*k, 2, 2, 3] whose frame f of clip i holds 10 i + f."""
  frames = 10 * np.arange(b)[:, None] + np.arange(t * k)[None, :]
  return np.broadcast_to(frames[:, :, None, None, None], (b, t * k, 2, 2, 3)).astype(np.uint8)


def test_one_frame_per_segment():
  clips = _clips()
  centre = np.asarray(augment.pick_segment_frames(None, clips, 3))
  np.testing.assert_array_equal(centre[:, :, 0, 0, 0], _clips()[:, 1::3, 0, 0, 0])
  picked = np.asarray(augment.pick_segment_frames(jax.random.key(0), clips, 3))[:, :, 0, 0, 0]
  offset = picked - 10 * np.arange(3)[:, None] - 3 * np.arange(4)[None, :]
  assert picked.shape == (3, 4) and ((offset >= 0) & (offset < 3)).all()
  assert len(np.unique(offset)) > 1  # frames differ across segments and clips


def test_a_single_frame_per_segment_is_the_identity():
  clips = _clips(k=1)
  assert augment.pick_segment_frames(jax.random.key(0), clips, 1) is clips


def test_video_views_pick_before_augmenting():
  c = default.get_config()
  c.model.image_size = 2
  v = views_lib.build("video", c, frames_per_segment=3)
  out = v.center(_clips())
  assert out.shape == (3, 4, 2, 2, 3)
  np.testing.assert_allclose(np.asarray(out)[:, :, 0, 0, 0] * 255, _clips()[:, 1::3, 0, 0, 0],
                             atol=1e-3)
  assert v.weak(jax.random.key(1), _clips()).shape == (3, 4, 2, 2, 3)
