"""Models from outside the course: ``keras.applications`` and a transformer.

The port's claim is a fast exact path for Keras models in general, so the
benchmark also times, with every peer, models a user would bring:

- ``keras.applications`` image classifiers at their real input size (224x224x3;
  Xception's 299x299x3), built with ``weights=None`` (no download), 1,000
  classes, given seeded random weights scaled ``1/sqrt(fan_in)`` and random
  BatchNormalization statistics (``bench/weights.py``); inputs are uniform
  images in [0, 255) pushed through the model's own ``preprocess_input`` on the
  host (outside every timed call).
- ``transformer``: a text classifier of the kind Keras's examples build
  (token Embedding with ``mask_zero``, one MultiHeadAttention block with
  LayerNormalization and a feed-forward Dense pair, global average pooling,
  Dense softmax) on ``int32 (batch, 128)`` token ids with real lengths 8..128
  and zero padding. (No position embedding: Keras has no built-in layer for
  it, and a custom one would be refused.)
"""

import numpy as np

from bench import frameworks
from bench import weights as weights_lib

# name: (keras.applications constructor, its preprocessing module, input side)
IMAGE_MODELS = {
  "mobilenetv2": ("MobileNetV2", "mobilenet_v2", 224),
  "mobilenetv3small": ("MobileNetV3Small", "mobilenet_v3", 224),
  "resnet50": ("ResNet50", "resnet", 224),
  "resnet50v2": ("ResNet50V2", "resnet_v2", 224),
  "densenet121": ("DenseNet121", "densenet", 224),
  "efficientnetb0": ("EfficientNetB0", "efficientnet", 224),
  "vgg16": ("VGG16", "vgg16", 224),
  "xception": ("Xception", "xception", 299),
  "nasnetmobile": ("NASNetMobile", "nasnet", 224),
}
TRANSFORMER = "transformer"
MODELS = (*IMAGE_MODELS, TRANSFORMER)

# The transformer's size: a small model of the kind trained on NusaX-sized data.
TRANSFORMER_VOCABULARY = 10_000
TRANSFORMER_LENGTH = 128
TRANSFORMER_WIDTH = 64
TRANSFORMER_HEADS = 4
TRANSFORMER_CLASSES = 3


def build(name: str, num_inputs: int, seed: int):
  """(Keras model, rows, weights in words, inputs in words) of model ``name``."""
  keras = frameworks.keras()
  keras.utils.set_random_seed(seed)
  rng = np.random.default_rng(seed)
  if name == TRANSFORMER:
    model = _transformer(keras)
    x, inputs = (
      _token_ids(rng, num_inputs),
      (
        f"synthetic token ids, int32 (batch, {TRANSFORMER_LENGTH}), lengths 8..{TRANSFORMER_LENGTH}"
      ),
    )
  elif name in IMAGE_MODELS:
    constructor, module, side = IMAGE_MODELS[name]
    model = getattr(keras.applications, constructor)(
      weights=None, input_shape=(side, side, 3), classes=1000
    )
    images = rng.uniform(0.0, 255.0, size=(num_inputs, side, side, 3)).astype(np.float32)
    preprocess = getattr(keras.applications, module).preprocess_input
    x = np.asarray(preprocess(images), np.float32)
    inputs = f"uniform images {side}x{side}x3 in [0, 255) through {module}.preprocess_input"
  else:
    raise ValueError(f"unknown application model {name!r}; valid: {', '.join(MODELS)}")
  weights_lib.randomize_weights(model, seed, scale=None)
  return model, x, f"seeded random (seed {seed}), 1/sqrt(fan_in)", inputs


def _transformer(keras):
  layers = keras.layers
  tokens = keras.Input((TRANSFORMER_LENGTH,), dtype="int32", name="tokens")
  x = layers.Embedding(TRANSFORMER_VOCABULARY, TRANSFORMER_WIDTH, mask_zero=True)(tokens)
  attention = layers.MultiHeadAttention(
    TRANSFORMER_HEADS, TRANSFORMER_WIDTH // TRANSFORMER_HEADS, name="attention"
  )(x, x)
  x = layers.LayerNormalization(epsilon=1e-6)(x + attention)
  feed_forward = layers.Dense(4 * TRANSFORMER_WIDTH, activation="relu")(x)
  feed_forward = layers.Dense(TRANSFORMER_WIDTH)(feed_forward)
  x = layers.LayerNormalization(epsilon=1e-6)(x + feed_forward)
  x = layers.GlobalAveragePooling1D()(x)
  outputs = layers.Dense(TRANSFORMER_CLASSES, activation="softmax")(x)
  return keras.Model(tokens, outputs, name=TRANSFORMER)


def _token_ids(rng: np.random.Generator, count: int) -> np.ndarray:
  lengths = rng.integers(8, TRANSFORMER_LENGTH + 1, size=count)
  x = rng.integers(1, TRANSFORMER_VOCABULARY, size=(count, TRANSFORMER_LENGTH)).astype(np.int32)
  x[np.arange(TRANSFORMER_LENGTH)[None, :] >= lengths[:, None]] = 0
  return x
