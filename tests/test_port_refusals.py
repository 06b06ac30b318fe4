"""Models the port cannot read as a graph are refused with a message that says what to do."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
import port  # noqa: E402


def test_a_never_built_model_is_refused_with_what_to_do():
  model = keras.Sequential([keras.layers.Dense(3)], name="unbuilt")
  with pytest.raises(
    port.UnsupportedLayerError, match="'unbuilt' has never been built.*keras.Input"
  ):
    port.load(model)


def test_a_subclassed_model_is_refused_by_class_name():
  class Doubler(keras.Model):
    def __init__(self):
      super().__init__(name="doubler")
      self.dense = keras.layers.Dense(2)

    def call(self, x):
      return self.dense(x) * 2

  model = Doubler()
  model(np.zeros((1, 4), np.float32))
  with pytest.raises(
    port.UnsupportedLayerError,
    match=r"subclassed keras.Model \(Doubler\).*"
    "Sequential or functional",
  ):
    port.load(model)


def test_a_custom_layer_is_named_with_where_it_comes_from():
  class Twice(keras.layers.Layer):
    def call(self, x):
      return x * 2

  model = keras.Sequential([keras.Input((4,)), Twice(name="twice"), keras.layers.Dense(2)])
  problems = port.unsupported(model)
  assert [(name, cls) for name, cls, _ in problems] == [("twice", "Twice")]
  assert "custom layer" in problems[0][2] and __name__ in problems[0][2]
  with pytest.raises(port.UnsupportedModelError, match="'twice' \\(Twice\\)"):
    port.load(model)


@pytest.mark.parametrize("value", ["nope", None, 3])
def test_to_keras_names_a_wrong_argument(value):
  with pytest.raises(TypeError, match="port.to_keras takes a jaxnets.Model"):
    port.to_keras(value)
