"""Run the hyper-parameter studies from the command line.

    python -m train --family=lstm --study=direction --seeds=3 --workdir=runs
    python -m train --family=rnn                       # every rnn study
    python -m train --family=mlp --seeds=1             # seed 000's MNIST recipe
    python -m train --family=cnn --study=pooling --epochs=15 --export_dir=results

Flags are defined in ``flags/train.py`` and ``flags/common.py``; this module only
parses them and calls :func:`train.runner.run`. Re-running a command resumes it.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from flags import common as common_flags
from flags import train as train_flags


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected positional arguments: {' '.join(argv[1:])}")
  if not flags.FLAGS["verbosity"].present:
    # Libraries' INFO logs (orbax's per-checkpoint lines) would bury the progress.
    logging.set_verbosity(logging.WARNING)
  # Imported after flag parsing: a bad flag fails in a fraction of a second.
  from train import data, runner  # pylint: disable=import-outside-toplevel

  settings = runner.Settings(
      seeds=train_flags.SEEDS.value, seed=common_flags.SEED.value,
      epochs=train_flags.EPOCHS.value, patience=train_flags.PATIENCE.value,
      batch_size=train_flags.BATCH_SIZE.value, monitor=train_flags.MONITOR.value,
      lang=train_flags.LANG.value,
      max_train_rows=train_flags.MAX_TRAIN_ROWS.value,
      max_test_rows=train_flags.MAX_TEST_ROWS.value, data_dir=common_flags.DATA_DIR.value,
      trainer=train_flags.TRAINER.value)
  try:
    outputs = runner.run(train_flags.FAMILY.value, train_flags.STUDY.value,
                         common_flags.WORKDIR.value, settings,
                         export_dir=train_flags.EXPORT_DIR.value)
  except (data.DataError, runner.ConfigError, runner.SettingsMismatchError) as e:
    sys.exit(f"error: {e}")
  print("\nResults (tables: results.md / results.csv, figure: loss_curves.png):")
  for out in outputs:
    print(f"  {out.family}/{out.study}: {out.directory}")


if __name__ == "__main__":
  # Keep TensorFlow's C++ start-up chatter out of the progress output.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  app.run(main)
