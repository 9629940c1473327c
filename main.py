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


def parse_flags(argv):
  """absl's flag parsing, with each command-line mistake (an unknown `--config.key`, a value of
  the wrong type, a missing flag) printed as one paragraph instead of a traceback."""
  try:
    rest = FLAGS(argv)
    FLAGS.config.keys()  # A --config file that failed to load raises here, not while parsing.
    return rest
  except Exception as e:  # pylint: disable=broad-except  # absl and ml_collections raise many
    from aplt_jax import config_check  # pylint: disable=g-import-not-at-top
    print(f"error: {config_check.explain_flag_error(e, argv, FLAGS['config'].parser.parse)}",
          file=sys.stderr)
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  import jax  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint step at INFO.
  if FLAGS.distributed:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  from aplt_jax import errors, preemption, train  # pylint: disable=g-import-not-at-top
  try:
    status = errors.run_cli(train.train_and_evaluate, FLAGS.config, FLAGS.workdir)
  except preemption.Preempted:  # SIGTERM: the run said where its checkpoint is; a rerun resumes
    sys.exit(0)
  if status:
    sys.exit(status)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
