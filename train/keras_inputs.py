"""Numpy arrays -> the ``tf.data`` pipeline Keras's ``fit``/``predict`` would build.

Why this exists: with ``tf.config.experimental.enable_op_determinism()`` (on
for every study, so a seed gives the same numbers), Keras's array adapter
(``keras.src.trainers.data_adapters.array_data_adapter``) slices batches with a
*parallel* ``Dataset.map``; TensorFlow's determinism rewrite turns that node
into a sequential ``MapDataset`` but copies the ``use_unbounded_threadpool``
attribute, which ``MapDataset`` does not define, and the C++ runtime logs
``E0000 ... NodeDef mentions attribute use_unbounded_threadpool which is not in
the op definition`` on every epoch of a text model (string inputs). It is a
TensorFlow rewrite bug, not version skew between packages: one TF 2.21 wheel
builds and runs the graph.

:func:`array_dataset` builds the same pipeline with a sequential map: the same
permutation op (``tf.random.shuffle`` of the indices, drawn from the same seed),
the same full batches plus one partial batch, in the same order -- checked
against Keras's adapter batch for batch (``tests/test_keras_inputs.py``).
"""

import numpy as np
import tensorflow as tf


def needs_own_pipeline(inputs) -> bool:
  """Whether Keras would hit the rewrite bug on ``inputs``: string batches.

  Numeric arrays go to Keras as they are, so the image and MNIST studies keep
  Keras's own pipeline (and their recorded numbers)."""
  return np.asarray(inputs).dtype.kind in "OSU"


def array_dataset(
  inputs: np.ndarray, targets: np.ndarray | None, batch_size: int, *, shuffle: bool
) -> tf.data.Dataset:
  """Batches of ``inputs`` (and ``targets``) as Keras's array adapter cuts them.

  Args:
    inputs: ``(rows, ...)`` features, or a 1-D object array of strings.
    targets: ``(rows,)`` labels, or ``None`` for ``predict``.
    batch_size: rows per batch; the last batch holds the remainder.
    shuffle: a fresh permutation of the rows each epoch (each iteration).

  Returns:
    A dataset of ``(x, y)`` batches (``x`` alone when ``targets`` is None).
  """
  rows = len(inputs)
  full_batches, partial = divmod(rows, batch_size)

  def permutation(_):
    indices = tf.range(rows, dtype=tf.int64)
    return tf.random.shuffle(indices) if shuffle else indices

  def batch_indices(indices):
    in_full = full_batches * batch_size
    batches = tf.data.Dataset.from_tensor_slices(
      tf.reshape(tf.slice(indices, [0], [in_full]), [full_batches, batch_size])
    )
    if partial:
      batches = batches.concatenate(
        tf.data.Dataset.from_tensors(tf.slice(indices, [in_full], [partial]))
      )
    return batches

  indices = tf.data.Dataset.range(1).map(permutation).prefetch(1).flat_map(batch_indices)
  data = (tf.convert_to_tensor(inputs),)
  if targets is not None:
    data += (tf.convert_to_tensor(targets),)
  dataset = tf.data.Dataset.zip((indices, tf.data.Dataset.from_tensors(data).repeat()))

  def grab_batch(i, tensors):
    batch = tuple(tf.gather(t, i, axis=0) for t in tensors)
    return batch if targets is not None else batch[0]

  # Sequential on purpose (see the module docstring); slicing a batch is cheap.
  dataset = dataset.map(grab_batch)
  options = tf.data.Options()
  options.experimental_optimization.apply_default_optimizations = False
  if shuffle:
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
  # The batch count stated: without it (flat_map hides it) Keras warns on every fit
  # that the input "ran out of data" at each epoch's end.
  dataset = dataset.apply(tf.data.experimental.assert_cardinality(full_batches + bool(partial)))
  return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def fit_arguments(x_train, y_train, x_val, y_val, batch_size: int) -> dict:
  """``model.fit`` keywords: training batches shuffled each epoch, validation
  batches in order; string inputs through :func:`array_dataset`."""
  if not needs_own_pipeline(x_train):
    return dict(
      x=x_train,
      y=y_train,
      validation_data=(x_val, y_val),
      batch_size=batch_size,
      shuffle=True,
    )
  return dict(
    x=array_dataset(x_train, y_train, batch_size, shuffle=True),
    validation_data=array_dataset(x_val, y_val, batch_size, shuffle=False),
    shuffle=False,  # the dataset shuffles itself; fit's default True only draws a warning
  )


def predict_arguments(inputs, batch_size: int) -> dict:
  """``model.predict`` keywords: the arrays and ``batch_size``, or for strings
  the same batches in order through :func:`array_dataset`."""
  if not needs_own_pipeline(inputs):
    return dict(x=inputs, batch_size=batch_size)
  return dict(x=array_dataset(inputs, None, batch_size, shuffle=False))
