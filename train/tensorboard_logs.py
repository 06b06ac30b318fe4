"""Live training metrics in TensorBoard's event format (``--tensorboard``).

Both trainers write the same layout, the one Keras's own callback writes, so a
Keras run and a JAX run read alike in TensorBoard (``tensorboard --logdir runs``)::

    <run_dir>/tb/train/       epoch_loss, epoch_accuracy, epoch_learning_rate
    <run_dir>/tb/validation/  epoch_loss, epoch_accuracy

one scalar per epoch, at step ``epoch - 1`` (Keras counts epochs from 0).

- Keras trainer: ``keras.callbacks.TensorBoard`` itself (:func:`keras_callback`).
- JAX trainer: tensorboardX's ``SummaryWriter`` (:class:`EpochWriter`), fed by
  ``jax_trainer.fit``'s ``on_epoch_end`` hook. tensorboardX writes the event
  protocol buffers with numpy alone, so the JAX path loads no TensorFlow.
"""

import collections
import os
import pathlib

import keras
import numpy as np

TB_DIR = "tb"
TRAIN, VALIDATION = "train", "validation"


def log_dir(run_dir: os.PathLike) -> pathlib.Path:
  """Where a run's TensorBoard events go: ``<run_dir>/tb``."""
  return pathlib.Path(run_dir) / TB_DIR


def keras_callback(run_dir: os.PathLike) -> keras.callbacks.TensorBoard:
  """Keras's TensorBoard callback writing per-epoch scalars (and the learning
  rate, which the callback adds itself) to ``<run_dir>/tb``. No graph, no
  profiler, no per-batch scalars: the point is the live curves."""
  return keras.callbacks.TensorBoard(
    log_dir=os.fspath(log_dir(run_dir)),
    histogram_freq=0,
    write_graph=False,
    write_images=False,
    update_freq="epoch",
    profile_batch=0,
  )


class EpochWriter:
  """Per-epoch scalars of the JAX trainer, in the Keras callback's layout.

  ``writer(epoch, metrics)`` takes the 1-based epoch and a dict with ``loss``,
  ``accuracy``, ``learning_rate`` and, when there is validation data,
  ``val_loss`` and ``val_accuracy``; each is flushed at once so TensorBoard
  shows the epoch while training goes on. Use as a context manager (closes the
  files).
  """

  def __init__(self, run_dir: os.PathLike):
    from tensorboardX import SummaryWriter  # heavy-ish; only when asked for

    root = log_dir(run_dir)
    self._writers = {
      TRAIN: SummaryWriter(root / TRAIN),
      VALIDATION: SummaryWriter(root / VALIDATION),
    }

  def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
    step = epoch - 1
    for name, value in metrics.items():
      split, tag = (VALIDATION, name[4:]) if name.startswith("val_") else (TRAIN, name)
      self._writers[split].add_scalar(f"epoch_{tag}", float(value), global_step=step)
    for writer in self._writers.values():
      writer.flush()

  def close(self) -> None:
    for writer in self._writers.values():
      writer.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def read_scalars(run_dir: os.PathLike) -> dict[str, dict[str, list[tuple[int, float]]]]:
  """Reads back a run's events with TensorBoard's own loader.

  Returns ``{"train": {"epoch_loss": [(step, value), ...], ...}, "validation":
  {...}}``, steps in the order written. Handles both encodings: Keras (through
  ``tf.summary``) stores a scalar as a tensor, tensorboardX as ``simple_value``.
  """
  from tensorboard.backend.event_processing import event_file_loader
  from tensorboard.util import tensor_util

  scalars: dict[str, dict[str, list]] = {}
  for split_dir in sorted(p for p in log_dir(run_dir).iterdir() if p.is_dir()):
    tags = collections.defaultdict(list)
    for path in sorted(split_dir.glob("events.out.tfevents.*")):
      for event in event_file_loader.EventFileLoader(os.fspath(path)).Load():
        for value in event.summary.value:
          if value.HasField("simple_value"):
            number = value.simple_value
          elif value.HasField("tensor") and value.metadata.plugin_data.plugin_name == "scalars":
            number = tensor_util.make_ndarray(value.tensor)
          else:
            continue
          tags[value.tag].append((int(event.step), float(np.asarray(number).reshape(()))))
    scalars[split_dir.name] = dict(tags)
  return scalars
