"""``jaxnets.Model.replace``: the same model with other parameters or layers."""

import dataclasses

import keras
import numpy as np
import pytest

import port
from tests import parity

L = keras.layers


@pytest.fixture(scope="module")
def two_input_graph():
  """A graph with named inputs and a dict output: what a hand rebuild used to drop."""
  image = keras.Input((4, 3), name="image")
  extra = keras.Input((2,), name="extra")
  joined = L.Concatenate()([L.Flatten()(image), extra])
  model = keras.Model(
    {"image": image, "extra": extra},
    {"kind": L.Dense(3, activation="softmax", name="kind")(joined)},
  )
  parity.randomize_weights(model, seed=4)
  return model


def _inputs():
  rng = np.random.default_rng(0)
  return {
    "image": rng.normal(size=(5, 4, 3)).astype(np.float32),
    "extra": rng.normal(size=(5, 2)).astype(np.float32),
  }


def test_same_params_give_the_same_model(two_input_graph):
  ported = port.load(two_input_graph)
  again = ported.replace()
  assert again.graph == ported.graph and again.input_names == ported.input_names
  assert again.name == ported.name
  x = _inputs()
  np.testing.assert_array_equal(again.predict(x)["kind"], ported.predict(x)["kind"])


def test_other_params_change_only_the_numbers(two_input_graph):
  ported = port.load(two_input_graph)
  params = {k: dict(v) for k, v in ported.params.items()}
  params["kind"]["bias"] = np.asarray(params["kind"]["bias"]) + [1.0, 0.0, 0.0]  # softmax: not all
  changed = ported.replace(params=params, name="changed")
  assert changed.name == "changed" and changed.input_names == ported.input_names
  x = _inputs()
  assert not np.allclose(changed.predict(x)["kind"], ported.predict(x)["kind"])
  assert ported.params["kind"]["bias"].shape == params["kind"]["bias"].shape  # original kept


def test_a_swapped_layer_must_keep_its_name(two_input_graph):
  ported = port.load(two_input_graph)
  dense = next(layer for layer in ported.layers if layer.name == "kind")
  linear = ported.replace(layers={"kind": dataclasses.replace(dense, activation="linear")})
  assert linear.predict(_inputs())["kind"].sum(-1).max() != pytest.approx(1.0)
  with pytest.raises(ValueError, match="keeps its name"):
    ported.replace(layers={"kind": dataclasses.replace(dense, name="other")})
  with pytest.raises(ValueError, match="has no layer"):
    ported.replace(layers={"missing": dense})


def test_wrong_params_are_named(two_input_graph):
  ported = port.load(two_input_graph)
  params = {k: dict(v) for k, v in ported.params.items()}
  params["kind"]["kernel"] = np.zeros((3, 3), np.float32)
  with pytest.raises(ValueError, match="kind"):
    ported.replace(params=params)


def test_a_text_model_keeps_its_preprocessor():
  vectorizer = L.TextVectorization(max_tokens=20, output_sequence_length=5)
  vectorizer.adapt(np.asarray(["saya suka makanan", "tidak enak sekali"], dtype=object))
  model = keras.Sequential(
    [
      keras.Input((1,), dtype="string"),
      vectorizer,
      L.Embedding(20, 4, mask_zero=True),
      L.GlobalAveragePooling1D(),
      L.Dense(2, activation="softmax"),
    ]
  )
  ported = port.load(model)
  again = ported.replace()
  assert again.preprocessor is ported.preprocessor
  np.testing.assert_array_equal(again.predict(["saya suka"]), ported.predict(["saya suka"]))
