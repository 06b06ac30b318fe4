"""The parity rule still catches real bugs: every mutation of ``bench/mutations.py``
(a 1 % BatchNorm channel error, a flipped kernel, swapped LSTM gates, a shifted
mask, a dropped bias, softmax on the wrong axis) is rejected by ``port.compare``
on every model it applies to, while the unmutated port passes.

Each mutation is also shown to matter: the mutated port, evaluated in float64
(``mutations.exact_outputs``), is further from Keras's float64 evaluation than
the bound, so a rule that let it through would be a rule that cannot fail.
"""

import keras
import numpy as np
import pytest

import port
from bench import mutations
from tests import parity

L = keras.layers


def _cnn():
  """Conv-BN-ReLU-pool twice, dense softmax: the spec CNN's shape with BN."""
  return keras.Sequential(
    [
      keras.Input((13, 11, 3)),
      L.Conv2D(8, 3, padding="same"),
      L.BatchNormalization(),
      L.ReLU(),
      L.MaxPooling2D(2),
      L.Conv2D(6, 3),
      L.BatchNormalization(),
      L.ReLU(),
      L.GlobalAveragePooling2D(),
      L.Dense(4, activation="softmax"),
    ]
  )


def _text():
  """Embedding (mask_zero) -> BiLSTM -> Dense softmax, the spec text model's shape."""
  return keras.Sequential(
    [
      keras.Input((9,), dtype="int32"),
      L.Embedding(30, 6, mask_zero=True),
      L.Bidirectional(L.LSTM(5)),
      L.Dense(3, activation="softmax"),
    ]
  )


def _mlp():
  return keras.Sequential(
    [keras.Input((12,)), L.Dense(16, activation="relu"), L.Dense(5), L.Softmax()]
  )


def _inputs(kind):
  rng = np.random.default_rng(3)
  if kind == "text":
    ids = rng.integers(1, 30, size=(16, 9)).astype(np.int32)
    lengths = rng.integers(1, 9, size=16)  # every row has padding to shift into
    ids[np.arange(9)[None, :] >= lengths[:, None]] = 0
    return ids
  shape = {"cnn": (13, 11, 3), "mlp": (12,)}[kind]
  return rng.normal(size=(16,) + shape).astype(np.float32)


MODELS = {"cnn": _cnn, "text": _text, "mlp": _mlp}
# Which mutations each model has something for (the rest must return None).
APPLIES = {
  "cnn": {"batchnorm_channel", "flipped_kernel", "dropped_bias", "softmax_wrong_axis"},
  "text": {"swapped_lstm_gates", "shifted_mask", "dropped_bias", "softmax_wrong_axis"},
  "mlp": {"dropped_bias", "softmax_wrong_axis"},
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request):
  kind = request.param
  keras_model = MODELS[kind]()
  parity.randomize_weights(keras_model, seed=7)
  x = _inputs(kind)
  ported = port.load(keras_model)
  keras_outputs = port.comparison.run_keras(keras_model, x)
  reference = port.comparison.run_keras(
    port.float64_reference(keras_model), port.comparison.to_float64(x)
  )
  return kind, keras_model, ported, x, keras_outputs, reference


def _compare(case, model):
  _, keras_model, _, x, keras_outputs, reference = case
  return port.compare(
    keras_model, model, x, keras_outputs=keras_outputs, reference_outputs=reference
  )


def test_the_unmutated_port_passes(case):
  comparison = _compare(case, case[2])
  assert comparison.ok, comparison.verdict()


@pytest.mark.parametrize("kind", mutations.MUTATIONS)
def test_every_mutation_is_rejected(case, kind):
  name, _, ported, x, _, reference = case
  mutated = mutations.mutate(ported, kind)
  if kind not in APPLIES[name]:
    assert mutated is None, f"{kind} should not apply to the {name} model"
    return
  assert mutated is not None, f"{kind} found nothing to mutate in the {name} model"
  bound = _compare(case, ported).bound
  exact = mutations.exact_outputs(mutated, ported.prepare_inputs(x))
  moved = max(float(np.max(np.abs(a - r))) for a, r in zip(exact, reference))
  assert moved > bound, f"{kind} barely changes the {name} model's exact output ({moved:.2g})"
  comparison = _compare(case, mutated)
  assert not comparison.ok, f"{kind} on {name} passed: {comparison.verdict()}"


def test_the_float64_evaluation_of_the_port_is_the_reference(case):
  """``exact_outputs`` (the port's own layers in float64) agrees with Keras's
  float64 evaluation to float64 rounding: the two references are independent
  and agree, so neither hides a bug the other has."""
  _, _, ported, x, _, reference = case
  exact = mutations.exact_outputs(ported, ported.prepare_inputs(x))
  for a, r in zip(exact, reference):
    assert a.dtype == np.float64
    np.testing.assert_allclose(a, r, rtol=0, atol=1e-12 * max(1.0, float(np.max(np.abs(r)))))


def test_mutations_refuse_an_unknown_kind(case):
  with pytest.raises(ValueError, match="unknown mutation 'typo'"):
    mutations.mutate(case[2], "typo")
