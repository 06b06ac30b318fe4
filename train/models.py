"""Keras reference models: every hyper-parameter the studies vary is an argument.

All builders return an **uncompiled** ``keras.Sequential`` (a single chain of
layers, built-in activations, float32: what ``port.load`` converts);
:func:`compile_model` adds the spec's loss and optimiser.

Layouts: images are NHWC float32 in [0, 1]; MNIST rows are flat float32
(batch, 784); text models take a 1-D batch of raw Python strings (the
``TextVectorization`` layer is the first layer, so a saved model is
self-contained).
"""

from typing import Sequence

import keras
import numpy as np

POOLING = ("max", "avg")
HEADS = ("flatten", "global_avg", "global_max")
CELLS = ("simple_rnn", "lstm")
TEXT_HEADS = ("last", "global_max")


def build_cnn(
  *,
  filters: Sequence[int] = (32, 64, 128),
  kernel_sizes: Sequence[int] = (3, 3, 3),
  pooling: str = "max",
  head: str = "flatten",
  dense_units: int = 128,
  dropout: float = 0.5,
  input_shape: Sequence[int] = (32, 32, 3),
  num_classes: int = 10,
  name: str = "cnn",
) -> keras.Model:
  """Conv blocks -> Flatten or global pooling -> Dense + Dropout -> softmax.

  Block ``i`` is ``Conv2D(filters[i], kernel_sizes[i], padding="same", ReLU)``
  followed by a 2x2 ``MaxPooling2D``/``AveragePooling2D`` (``pooling``), so
  the spatial size halves per block (32 -> 16 -> 8 -> 4 for three blocks).

  Args:
    filters: output channels of each conv layer; its length is the block count.
    kernel_sizes: square kernel size of each conv layer (same length).
    pooling: ``"max"`` or ``"avg"``.
    head: ``"flatten"``, ``"global_avg"`` or ``"global_max"``.
    dense_units: units of the hidden Dense layer (ReLU); 0 for none.
    dropout: rate of the Dropout before the output layer.
    input_shape: (height, width, channels).
    num_classes: softmax outputs.
  """
  filters, kernel_sizes = tuple(filters), tuple(kernel_sizes)
  if not filters or len(filters) != len(kernel_sizes):
    raise ValueError(
      f"need one kernel size per conv layer, got filters={filters} and kernel_sizes={kernel_sizes}"
    )
  _check_choice("pooling", pooling, POOLING)
  _check_choice("head", head, HEADS)
  pool = keras.layers.MaxPooling2D if pooling == "max" else keras.layers.AveragePooling2D
  layers = [keras.Input(shape=tuple(input_shape), dtype="float32", name="image")]
  for i, (f, k) in enumerate(zip(filters, kernel_sizes), start=1):
    layers += [
      keras.layers.Conv2D(int(f), int(k), padding="same", activation="relu", name=f"conv{i}"),
      pool(2, name=f"pool{i}"),
    ]
  if head == "flatten":
    layers.append(keras.layers.Flatten(name="flatten"))
  elif head == "global_avg":
    layers.append(keras.layers.GlobalAveragePooling2D(name="global_avg"))
  else:
    layers.append(keras.layers.GlobalMaxPooling2D(name="global_max"))
  if dense_units:
    layers.append(keras.layers.Dense(int(dense_units), activation="relu", name="dense"))
  layers += [
    keras.layers.Dropout(float(dropout), name="dropout"),
    keras.layers.Dense(num_classes, activation="softmax", name="output"),
  ]
  return keras.Sequential(layers, name=name)


def make_vectorizer(
  train_texts: np.ndarray, *, max_tokens: int | None = 10000, sequence_length: int = 64
) -> keras.layers.TextVectorization:
  """A ``TextVectorization`` (lower-case, strip punctuation, split on whitespace)
  adapted on ``train_texts`` only, giving int token ids (0 = padding, 1 = OOV)
  padded/truncated to ``sequence_length``."""
  vectorizer = keras.layers.TextVectorization(
    max_tokens=max_tokens,
    output_mode="int",
    output_sequence_length=int(sequence_length),
    name="vectorizer",
  )
  vectorizer.adapt(np.asarray(train_texts, dtype=object))
  return vectorizer


def build_text(
  vectorizer: keras.layers.TextVectorization,
  *,
  cell: str = "lstm",
  units: Sequence[int] = (64,),
  bidirectional: bool = True,
  embedding_dim: int = 64,
  dropout: float = 0.5,
  spatial_dropout: float = 0.0,
  head: str = "last",
  num_classes: int = 3,
  max_tokens: int | None = None,
  sequence_length: int | None = None,
  name: str | None = None,
) -> keras.Model:
  """strings -> TextVectorization -> Embedding(mask_zero) -> recurrent layer(s)
  -> Dropout -> Dense softmax.

  Args:
    vectorizer: an adapted :func:`make_vectorizer` layer (becomes layer 0).
    cell: ``"simple_rnn"`` or ``"lstm"``.
    units: cells of each recurrent layer; its length is the layer count. All
      but the last return sequences (batch, time, features); the last returns
      its final state (batch, features).
    bidirectional: wrap every recurrent layer in ``Bidirectional`` (concat).
    embedding_dim: embedding width.
    dropout: rate of the Dropout after the last recurrent layer.
    spatial_dropout: rate of a ``SpatialDropout1D`` after the embedding (whole
      embedding channels dropped for every time step); 0 for none. Identity at
      inference.
    head: ``"last"`` (the last recurrent layer returns its final state) or
      ``"global_max"`` (it returns every step, (batch, time, features), and
      ``GlobalMaxPooling1D`` takes the per-feature maximum over time; as in
      Keras 3 the pooling ignores the mask).
    num_classes: softmax outputs.
    max_tokens, sequence_length: accepted (and ignored) so that a study config
      can be passed whole; they configure :func:`make_vectorizer`.
  """
  del max_tokens, sequence_length
  _check_choice("cell", cell, CELLS)
  _check_choice("head", head, TEXT_HEADS)
  units = tuple(units)
  if not units:
    raise ValueError("need at least one recurrent layer (units is empty)")
  rnn_class = keras.layers.LSTM if cell == "lstm" else keras.layers.SimpleRNN
  # shape (): a 1-D batch of strings, which is what both Keras and the port take.
  layers = [
    keras.Input(shape=(), dtype="string", name="text"),
    vectorizer,
    keras.layers.Embedding(
      vectorizer.vocabulary_size(), int(embedding_dim), mask_zero=True, name="embedding"
    ),
  ]
  if spatial_dropout:
    layers.append(keras.layers.SpatialDropout1D(float(spatial_dropout), name="spatial_dropout"))
  for i, n in enumerate(units, start=1):
    sequences = i < len(units) or head == "global_max"
    layer = rnn_class(int(n), return_sequences=sequences, name=f"{cell}{i}")
    if bidirectional:
      layer = keras.layers.Bidirectional(layer, name=f"bi_{cell}{i}")
    layers.append(layer)
  if head == "global_max":
    layers.append(keras.layers.GlobalMaxPooling1D(name="global_max"))
  layers += [
    keras.layers.Dropout(float(dropout), name="dropout"),
    keras.layers.Dense(num_classes, activation="softmax", name="output"),
  ]
  return keras.Sequential(layers, name=name or cell)


def build_mlp(
  *,
  hidden_units: Sequence[int] = (256, 128),
  dropout: float = 0.3,
  shift: float = 0.0,
  input_dim: int = 784,
  num_classes: int = 10,
  name: str = "mlp",
) -> keras.Model:
  """Seed 000's MLP: (batch, 784) -> [Dense ReLU -> Dropout] per hidden layer
  -> Dense softmax.

  ``shift`` > 0 adds training-time augmentation in front: the flat rows are
  viewed as (28, 28, 1) images, ``RandomTranslation`` moves them by up to
  ``shift`` of their height/width (zero fill; identity at inference), and
  ``Flatten`` gives the (batch, 784) rows back, so the Dense layers see the
  same layout either way.
  """
  layers = [keras.Input(shape=(int(input_dim),), dtype="float32", name="pixels")]
  if shift:
    side = int(round(int(input_dim) ** 0.5))
    layers += [
      keras.layers.Reshape((side, side, 1), name="as_image"),
      keras.layers.RandomTranslation(
        float(shift), float(shift), fill_mode="constant", name="shift"
      ),
      keras.layers.Flatten(name="as_rows"),
    ]
  for i, n in enumerate(hidden_units, start=1):
    layers += [
      keras.layers.Dense(int(n), activation="relu", name=f"dense{i}"),
      keras.layers.Dropout(float(dropout), name=f"dropout{i}"),
    ]
  layers.append(keras.layers.Dense(num_classes, activation="softmax", name="output"))
  return keras.Sequential(layers, name=name)


def build_cnn_bn(
  *,
  filters: Sequence[int] = (64, 128, 256),
  convs_per_block: int = 2,
  batch_norm: bool = True,
  flip: bool = True,
  translate: float = 0.125,
  head: str = "global_max",
  dense_units: int = 0,
  dropout: float = 0.2,
  input_shape: Sequence[int] = (32, 32, 3),
  num_classes: int = 10,
  name: str = "cnn_bn",
) -> keras.Model:
  """The ``best`` CNN: augmentation -> conv blocks with batch norm -> head.

  Still a plain CNN of Conv2D / pooling / Dense blocks (NHWC float32 in
  [0, 1]): optional ``RandomFlip("horizontal")`` and ``RandomTranslation``
  (up to ``translate`` of the size, reflect fill) at the input, identity at
  inference; then per block ``convs_per_block`` times ``Conv2D 3x3 'same'``
  (no bias when followed by ``BatchNormalization``) -> BN -> ReLU, and a 2x2
  max pooling; then ``head`` (``"flatten"``, ``"global_avg"``,
  ``"global_max"``), an optional hidden Dense(ReLU), Dropout and softmax.
  """
  _check_choice("head", head, HEADS)
  layers = [keras.Input(shape=tuple(input_shape), dtype="float32", name="image")]
  if flip:
    layers.append(keras.layers.RandomFlip("horizontal", name="flip"))
  if translate:
    layers.append(
      keras.layers.RandomTranslation(
        float(translate), float(translate), fill_mode="reflect", name="translate"
      )
    )
  for b, f in enumerate(filters, start=1):
    for c in range(1, int(convs_per_block) + 1):
      tag = f"{b}_{c}"
      layers.append(
        keras.layers.Conv2D(
          int(f),
          3,
          padding="same",
          use_bias=not batch_norm,
          name=f"conv{tag}",
          activation=None if batch_norm else "relu",
        )
      )
      if batch_norm:
        layers += [
          keras.layers.BatchNormalization(name=f"bn{tag}"),
          keras.layers.Activation("relu", name=f"relu{tag}"),
        ]
    layers.append(keras.layers.MaxPooling2D(2, name=f"pool{b}"))
  layers.append(
    {
      "flatten": keras.layers.Flatten,
      "global_avg": keras.layers.GlobalAveragePooling2D,
      "global_max": keras.layers.GlobalMaxPooling2D,
    }[head](name=head)
  )
  if dense_units:
    layers.append(keras.layers.Dense(int(dense_units), activation="relu", name="dense"))
  layers += [
    keras.layers.Dropout(float(dropout), name="dropout"),
    keras.layers.Dense(num_classes, activation="softmax", name="output"),
  ]
  return keras.Sequential(layers, name=name)


def compile_model(model: keras.Model, learning_rate: float = 1e-3) -> keras.Model:
  """Adam + sparse categorical cross-entropy (integer labels) + accuracy."""
  model.compile(
    optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
    loss=keras.losses.SparseCategoricalCrossentropy(),
    metrics=["accuracy"],
  )
  return model


def _check_choice(what: str, value, allowed) -> None:
  if value not in allowed:
    raise ValueError(f"{what} must be one of {', '.join(allowed)}; got {value!r}")
