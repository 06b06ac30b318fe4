"""What the study runner and the best recipes share around Keras ``fit``.

``subsample`` picks which rows ``--max_train_rows`` / ``--max_test_rows`` keep
(the same rows in every run), ``EpochTimer`` records each epoch's wall time.
Kept apart from ``train.runner`` so ``train.recipes`` can use them without an
import cycle (``runner`` calls ``recipes`` for the ``best`` studies).
"""

import time

import keras
import numpy as np

SUBSAMPLE_SEED = 0  # which rows --max_*_rows keeps; fixed so every run sees the same rows


def subsample(x: np.ndarray, y: np.ndarray, limit: int | None):
  """``limit`` rows of ``(x, y)`` drawn with a fixed seed, in their original order."""
  if limit is None or len(y) <= limit:
    return x, y
  rng = np.random.default_rng(SUBSAMPLE_SEED)
  keep = np.sort(rng.choice(len(y), size=int(limit), replace=False))
  return x[keep], y[keep]


class EpochTimer(keras.callbacks.Callback):
  """Records each epoch's wall time in seconds (``times``)."""

  def __init__(self):
    super().__init__()
    self.times, self._start = [], 0.0

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    self.times.append(time.perf_counter() - self._start)
