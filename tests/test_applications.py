"""Whole ``keras.applications`` models through the port, at small input sizes.

Each model is built with ``weights=None``, few classes and no final softmax
(logits compare more strictly), given seeded random weights scaled
``1/sqrt(fan_in)`` (so activations stay realistic through 50+ layers) and
random BatchNormalization statistics, and run on standard-normal images (the
scale of a preprocessed image). The port must pass ``port.compare`` (as close
to Keras's float64 evaluation as Keras's own float32 output, within the rule's
factor; identical argmax where not a tie; jitted and un-jitted) or refuse by name: every problem
names a layer, its class and the reason, and ``port.load`` raises listing
them all (today all nine port exactly). Models over ~10 s are marked ``heavy`` (``-m "not heavy"`` skips them).
"""

import jax
import keras
import numpy as np
import pytest

import port
from tests import parity

A = keras.applications
heavy = pytest.mark.heavy

# name: (constructor, smallest convenient input side)
APPLICATIONS = [
  pytest.param("MobileNetV2", A.MobileNetV2, 32),
  pytest.param("MobileNetV3Small", A.MobileNetV3Small, 32),
  pytest.param("VGG16", A.VGG16, 32),
  pytest.param("EfficientNetB0", A.EfficientNetB0, 32),
  pytest.param("ResNet50", A.ResNet50, 32, marks=heavy),
  pytest.param("ResNet50V2", A.ResNet50V2, 32, marks=heavy),
  pytest.param("DenseNet121", A.DenseNet121, 32, marks=heavy),
  pytest.param("Xception", A.Xception, 71, marks=heavy),  # Keras's minimum
  pytest.param("NASNetMobile", A.NASNetMobile, 32, marks=heavy),
]


@pytest.mark.parametrize("name,constructor,side", APPLICATIONS)
def test_application_ports_exactly(name, constructor, side):
  """Every listed application ports (a refusal here is a regression: each one
  has ported exactly since issue 14); the refusal, if any, is printed whole."""
  keras_model = constructor(
    weights=None, input_shape=(side, side, 3), classes=5, classifier_activation=None
  )
  parity.randomize_weights(keras_model, seed=0, scale=None)
  problems = port.unsupported(keras_model)
  assert not problems, f"{name} is refused: {problems}"
  x = np.random.default_rng(0).normal(size=(2, side, side, 3)).astype(np.float32)
  want = np.asarray(keras_model(x, training=False))
  model = port.load(keras_model)
  comparison = parity.assert_outputs_match(
    keras_model, model.predict(x), x, keras_outputs=want, label=name
  )
  if name in ("MobileNetV2", "VGG16"):  # un-jitted is slow: two representatives
    with jax.disable_jit():
      unjitted = np.asarray(model.apply(model.params, model.prepare_inputs(x)))
    parity.assert_outputs_match(keras_model, unjitted, x, keras_outputs=want, label="un-jitted")
  print(f"{name}: {comparison.verdict()}")
