"""Trains and evaluates aplt_jax: `python main.py --config=configs/demo.py --workdir=DIR`.

Override any knob with `--config.<key>=<value>`; pick a method preset with
`--config=configs/demo.py:fixmatch`. Rerunning the same command resumes from the last checkpoint.
On several hosts (a Cloud TPU pod, a SLURM job) add `--distributed`.
"""
import sys

from absl import app
from absl import logging
from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py[:preset]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and results are written.")
flags.DEFINE_bool("distributed", False,
                  "Call jax.distributed.initialize() (multi-host; auto-detects Cloud TPU and "
                  "SLURM, or use --coordinator_address/--num_processes/--process_id).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (with --distributed).")
flags.DEFINE_integer("num_processes", None, "Number of processes (with --distributed).")
flags.DEFINE_integer("process_id", None, "This process's index (with --distributed).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  import jax  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint step at INFO.
  if FLAGS.distributed:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  from aplt_jax import errors, train  # pylint: disable=g-import-not-at-top
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except errors.USER_ERRORS as e:
    print(f"\nerror: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
