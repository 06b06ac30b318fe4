"""``--tensorboard``: both trainers write per-epoch scalars TensorBoard can read.

A tiny MNIST study runs through ``train.runner.run`` (what ``python -m train``
calls) with each trainer; the events are read back with TensorBoard's own
event-file loader and must hold, per epoch, the loss and accuracy the run's
``history.json`` recorded, the validation pair, and the learning rate.
"""

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from train import runner
from train import tensorboard_logs

EPOCHS = 2
SETTINGS = dict(seeds=1, epochs=EPOCHS, patience=5, max_train_rows=300, max_test_rows=100)


@pytest.mark.parametrize("trainer", ["keras", "jax"])
def test_tensorboard_events_hold_every_epoch(trainer, real_data_dir, tmp_path):
  settings = runner.Settings(
    data_dir=str(real_data_dir),
    verbose=0,
    timing_repeats=1,
    trainer=trainer,
    tensorboard=True,
    **SETTINGS,
  )
  [output] = runner.run("mlp", "recipe", tmp_path, settings)
  [run_dir] = output.directory.glob("*/seed0")
  assert (run_dir / "tb" / "train").is_dir() and (run_dir / "tb" / "validation").is_dir()
  assert list((run_dir / "tb" / "train").glob("events.out.tfevents.*"))

  scalars = tensorboard_logs.read_scalars(run_dir)
  history = json.loads((run_dir / "history.json").read_text())
  steps = list(range(EPOCHS))
  expected = {
    ("train", "epoch_loss"): history["loss"],
    ("train", "epoch_accuracy"): history["accuracy"],
    ("validation", "epoch_loss"): history["val_loss"],
    ("validation", "epoch_accuracy"): history["val_accuracy"],
  }
  for (split, tag), values in expected.items():
    points = scalars[split][tag]
    assert [step for step, _ in points] == steps, (split, tag)
    assert [v for _, v in points] == pytest.approx(values, rel=1e-5), (split, tag)
  learning_rate = scalars["train"]["epoch_learning_rate"]
  assert [step for step, _ in learning_rate] == steps
  assert all(math.isclose(v, 1e-3, rel_tol=1e-6) for _, v in learning_rate)


def test_tensorboard_flag_is_documented():
  done = subprocess.run(
    [sys.executable, "-m", "train", "--helpfull"],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert "--[no]tensorboard" in done.stdout
