"""Run the hyper-parameter studies from the command line.

    python -m train --family=lstm --study=direction --seeds=3 --workdir=runs
    python -m train --family=rnn                       # every rnn study
    python -m train --family=mlp --seeds=1             # seed 000's MNIST recipe
    python -m train --family=cnn --study=pooling --epochs=15 --export_dir=results
    python -m train --family=rnn --study=cells --workers=2        # 2 runs at once
    python -m train --family=cnn --executor=ray --ray_address=head:6379 --gpus_per_run=1

Flags are defined in ``flags/train.py`` and ``flags/common.py``; this module checks
their values against the studies and datasets that define them (at parse time,
before any work), then calls :func:`train.runner.run`. Re-running a command
resumes it.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from flags import common as common_flags
from flags import train as train_flags
from train import data as data_lib
from train import studies
from train import workdir as workdir_lib
from train.executors import base as executors_base
from train.executors import choose as executors
from train.executors import ray_cluster
from jaxnets import cli_support
from jaxnets import device_policy


def _one_of(allowed):
  allowed = tuple(allowed)

  def check(value) -> bool:
    if value is not None and value not in allowed:
      raise flags.ValidationError(f"value should be one of {', '.join(allowed)}")
    return True

  return check


# --help lists the flags of flags/ (absl shows only the main module's own).
flags.adopt_module_key_flags(train_flags)
flags.adopt_module_key_flags(common_flags)

flags.register_validator(train_flags.FAMILY, _one_of([*studies.FAMILIES, studies.ALL]))
flags.register_validator(train_flags.MONITOR, _one_of(studies.MONITORS))
flags.register_validator(train_flags.LANG, _one_of(data_lib.NUSAX_LANGUAGES))


@flags.multi_flags_validator(
  ["family", "study"], message="--study does not name a study of --family"
)
def _study_belongs_to_family(values) -> bool:
  if values["family"] not in (*studies.FAMILIES, studies.ALL):
    return True  # reported by the --family checks
  try:
    studies.resolve(values["family"], values["study"])
  except ValueError as e:
    raise flags.ValidationError(str(e)) from None
  return True


@flags.multi_flags_validator(
  ["executor", "workers", "ray_address", "cpus_per_run", "gpus_per_run"],
  message="executor flags do not fit together",
)
def _executor_flags(values) -> bool:
  if values["executor"] == "ray":
    if values["workers"] != 1:
      raise flags.ValidationError(
        "--workers is for --executor=local; with --executor=ray, --cpus_per_run and "
        "--gpus_per_run decide how many runs share the nodes"
      )
    if not values["cpus_per_run"] and not values["gpus_per_run"]:
      raise flags.ValidationError("--cpus_per_run=0 needs --gpus_per_run > 0")
    if not ray_cluster.ray_installed():
      raise flags.ValidationError(
        f"--executor=ray needs Ray, which is not installed: {ray_cluster.INSTALL}"
      )
  else:
    ray_only = {
      "ray_address": values["ray_address"] is not None,
      "cpus_per_run": values["cpus_per_run"] != 1.0,
      "gpus_per_run": values["gpus_per_run"] != 0.0,
    }
    given = [f"--{name}" for name, set_ in ray_only.items() if set_]
    if given:
      raise flags.ValidationError(f"{', '.join(given)} only apply to --executor=ray")
  return True


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected positional arguments: {' '.join(argv[1:])}")
  if not flags.FLAGS["verbosity"].present:
    # Libraries' INFO logs (orbax's per-checkpoint lines) would bury the progress.
    logging.set_verbosity(logging.WARNING)
  if train_flags.EXPORT_DIR.value is not None:
    try:  # before any work: a file there would be found only after every run
      workdir_lib.resolve(train_flags.EXPORT_DIR.value, what="--export_dir")
    except workdir_lib.WorkdirError as e:
      sys.exit(f"error: {e}")
  try:
    # Checked before any work: Ray importable, --ray_address answering (seconds).
    # --report_only trains nothing: no worker pool, no Ray connection.
    executor = (
      None
      if train_flags.REPORT_ONLY.value
      else executors.make(
        train_flags.EXECUTOR.value,
        workers=train_flags.WORKERS.value,
        ray_address=train_flags.RAY_ADDRESS.value,
        cpus_per_run=train_flags.CPUS_PER_RUN.value,
        gpus_per_run=train_flags.GPUS_PER_RUN.value,
      )
    )
  except executors_base.ExecutorError as e:
    sys.exit(f"error: {e}")
  # Imported after flag parsing (not to dodge a cycle): the runner pulls in
  # Keras and TensorFlow, and a bad flag should fail in a fraction of a second.
  # TensorFlow's C++ start-up notices (oneDNN, no CUDA driver) are dropped, anything else kept.
  with cli_support.filtered_native_stderr():
    from train import runner  # pylint: disable=import-outside-toplevel

    device_policy.configure_tensorflow()  # TF32 off (parity), memory growth: Keras is loaded now
  settings = runner.Settings(
    seeds=train_flags.SEEDS.value,
    seed=common_flags.SEED.value,
    epochs=train_flags.EPOCHS.value,
    patience=train_flags.PATIENCE.value,
    batch_size=train_flags.BATCH_SIZE.value,
    monitor=train_flags.MONITOR.value,
    lang=train_flags.LANG.value,
    max_train_rows=train_flags.MAX_TRAIN_ROWS.value,
    max_test_rows=train_flags.MAX_TEST_ROWS.value,
    data_dir=common_flags.DATA_DIR.value,
    trainer=train_flags.TRAINER.value,
    tensorboard=train_flags.TENSORBOARD.value,
  )
  try:
    outputs = runner.run(
      train_flags.FAMILY.value,
      train_flags.STUDY.value,
      common_flags.WORKDIR.value,
      settings,
      export_dir=train_flags.EXPORT_DIR.value,
      executor=executor,
      report_only=train_flags.REPORT_ONLY.value,
    )
  except (
    data_lib.DataError,
    runner.ConfigError,
    runner.SettingsMismatchError,
    executors_base.ExecutorError,
    executors_base.RunFailed,
  ) as e:
    sys.exit(f"error: {e}")
  except KeyboardInterrupt:
    print("\ninterrupted: every finished run is kept; re-run the command to resume", flush=True)
    sys.exit(130)
  print("\nResults (tables: results.md / results.csv, figure: loss_curves.png):")
  for out in outputs:
    print(f"  {out.family}/{out.study}: {out.directory}")


def run() -> None:
  """Console-script entry point (``jaxnets-train``)."""
  # Keep TensorFlow's C++ start-up chatter out of the progress output.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # Before JAX or TensorFlow start a GPU backend (nothing imported so far starts one).
  device_policy.apply()
  cli_support.run(main)


if __name__ == "__main__":
  run()
