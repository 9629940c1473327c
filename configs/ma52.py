"""MA-52 (52 micro-actions, 7 body parts), paper-scale: TSM-ResNet-50, 8 frames at 224 px.

Prepare the videos once (see README, "Real videos: MA-52, MA-12, your own"), then
`python main.py --config=configs/ma52.py --workdir=DIR --config.data.data_dir=DIR`.
Sized for accelerators; on a CPU check it with a tiny override only.
"""
from configs import default


def get_config(method: str = "aplt"):
  c = default.get_config()
  c.method = method or "aplt"
  c.data.name = "ma52"
  c.data.num_classes = 52
  c.data.eval_split = "val"  # MA-52's public test labels are hidden.
  # Stored clips: 8 segments x 2 frames, 256 x 224 (the 1296 x 1080 portrait clips scaled to
  # 269 x 224 and centre-cropped); the model sees 8 frames at 224 x 224. These must match the
  # `python -m aplt_jax.prepare --dataset=ma52` defaults (tests/test_video_prepare.py checks it).
  c.data.video.num_frames = 8
  c.data.video.frames_per_segment = 2
  c.data.video.height = 256
  c.data.video.width = 224
  c.data.labeled_ratio = 0.1
  c.model.name = "tsm_resnet50"
  c.model.width_mult = 1.0
  c.model.stem = "imagenet"
  c.model.input_mode = "rgb"
  c.model.image_size = 224
  c.model.dtype = "bfloat16"
  c.batch_size = 32
  c.uratio = 2
  c.total_steps = 40_000
  c.warmup_steps = 2_000
  c.steps_per_round = -1
  c.optim.lr = 0.01
  c.eval.batch_size = 64
  c.eval.every_steps = 2_000
  c.log_every = 100
  c.checkpoint_every = 1_000
  return c
