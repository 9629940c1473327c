"""One run on the real smartwatch `watch` set (seglearn's data), sized for 2 CPU cores.

Data: 6-axis inertial recordings at 50 Hz of 10 subjects doing 7 shoulder exercises (both arms),
cut into 4 s windows (200 steps) every 2 s; subjects 8, 9 and 10 are the test set (707 windows),
subjects 1-7 the training set (1,522 windows), labeled or not. The final model is evaluated (no
model selection). Backbone: a 4-block TCN on standardised channels; every view of every method
is the body's left-right reflection with probability 1/2 (the watch reader's `WATCH_MIRROR_SIGN`;
pointed at other data, e.g. `--config.data.name=npz`, the views mirror only where that data
declares a reflection or `augment_seq.mirror_sign` gives one).

`--config=configs/watch.py` trains APLT with 8 labels per class;
`--config=configs/watch.py:<method>` trains another method on the same setting. The grid is
`configs/grids/watch.py`.
"""
from configs import default


def get_config(method: str = "aplt"):
  c = default.get_config()
  c.method = method or "aplt"
  c.data.name = "watch"
  c.data.num_classes = 7
  c.data.labels_per_class = 8
  c.data.read_threads = 2
  c.augment_seq.dataset_mirror = True  # every view of every method, like video's flip
  c.model.name = "tcn"
  c.model.tcn_width = 64
  c.model.tcn_depth = 4
  c.model.tcn_kernel = 5
  c.model.tcn_stride = 4  # 200 steps -> 50 before the blocks (receptive field ~480 steps).
  c.batch_size = 16
  c.uratio = 2
  c.total_steps = 500
  c.warmup_steps = 100
  c.steps_per_round = 80  # 5 rounds, each about 1.7 passes over the unlabeled windows.
  c.eval.every_steps = 500  # Evaluations and checkpoints fall at the end of every phase anyway.
  c.eval.batch_size = 256
  c.log_every = 20
  c.checkpoint_every = 500
  return c
