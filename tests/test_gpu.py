"""On a GPU: the device policy in force, and the port equal to Keras there.

Every test here is marked ``gpu``: tests/conftest.py skips them unless JAX's default backend is
a GPU. On a GPU machine: ``python -m pytest -m gpu`` (README, "Tests on a GPU"). Both
frameworks share the GPU in this process, as they do in ``python -m train`` and the notebook.
"""

import os

import jax
import keras
import numpy as np
import pytest

import port
from jaxnets import device_policy
from tests import parity

pytestmark = pytest.mark.gpu

BATCHES = (1, 7, 256)


def _tensorflow():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  device_policy.configure_tensorflow(tf)
  return tf


def test_the_policy_is_in_force_on_the_gpu():
  tf = _tensorflow()
  policy = device_policy.describe()
  assert policy["jax_backend"] == "gpu", policy
  assert policy["mode"] == device_policy.PARITY
  assert jax.config.jax_default_matmul_precision == "highest"
  assert not tf.config.experimental.tensor_float_32_execution_enabled()
  assert tf.config.list_physical_devices("GPU"), "TensorFlow sees no GPU beside JAX"
  assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
  assert os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"


def test_jax_did_not_preallocate_the_gpu():
  """Without preallocation JAX's pool holds what was used, far from 75 % of the memory."""
  stats = jax.devices()[0].memory_stats() or {}
  if "pool_bytes" not in stats or "bytes_limit" not in stats:
    pytest.skip(f"this JAX reports no pool size: {sorted(stats)}")
  assert stats["pool_bytes"] < 0.5 * stats["bytes_limit"], stats


def _cnn():
  model = keras.Sequential(
    [
      keras.Input((16, 16, 3)),
      keras.layers.Conv2D(8, 3, activation="relu"),
      keras.layers.MaxPooling2D(2),
      keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
      keras.layers.AveragePooling2D(2),
      keras.layers.Flatten(),
      keras.layers.Dense(32, activation="relu"),
      keras.layers.Dense(10, activation="softmax"),
    ],
    name="small_cnn",
  )
  parity.randomize_weights(model, seed=0, scale=0.4)
  return model


def _lstm():
  model = keras.Sequential(
    [
      keras.Input((20,), dtype="int32"),
      keras.layers.Embedding(50, 16, mask_zero=True),
      keras.layers.Bidirectional(keras.layers.LSTM(12, return_sequences=True)),
      keras.layers.Bidirectional(keras.layers.LSTM(12)),
      keras.layers.Dense(3, activation="softmax"),
    ],
    name="small_bilstm",
  )
  parity.randomize_weights(model, seed=0, scale=0.4)
  return model


def _images(rows: int) -> np.ndarray:
  return np.random.default_rng(rows).normal(size=(rows, 16, 16, 3)).astype(np.float32)


def _texts(rows: int) -> np.ndarray:
  """Token ids with real lengths 0..20 (one empty row), zero padding at the end."""
  rng = np.random.default_rng(rows)
  x = rng.integers(1, 50, (rows, 20))
  lengths = rng.integers(0, 21, rows)
  lengths[0] = 0
  x[np.arange(20)[None, :] >= lengths[:, None]] = 0
  return x.astype(np.int32)


@pytest.mark.parametrize("rows", BATCHES)
@pytest.mark.parametrize("build, inputs", [(_cnn, _images), (_lstm, _texts)], ids=["cnn", "lstm"])
def test_port_equals_keras_on_the_gpu(build, inputs, rows):
  _tensorflow()
  keras_model = build()
  ported = port.load(keras_model)
  comparison = port.compare(keras_model, ported, inputs(rows))
  assert comparison.ok, comparison.verdict()
  assert comparison.max_abs_diff <= 1e-5, comparison.verdict()
  assert comparison.argmax_agreement == 1.0, comparison.verdict()


def test_port_on_the_gpu_equals_port_on_the_cpu():
  ported = port.load(_lstm())
  x = _texts(256)
  on_gpu = np.asarray(jax.jit(ported.apply)(ported.params, x))
  cpu = jax.devices("cpu")[0]
  on_cpu = np.asarray(
    jax.jit(ported.apply)(jax.device_put(ported.params, cpu), jax.device_put(x, cpu))
  )
  np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-5)


def test_the_trainer_keeps_its_data_on_the_gpu():
  from train import jax_trainer  # pylint: disable=import-outside-toplevel

  x = _texts(64)
  data = jax_trainer._to_device(x, (x[:, 0] % 3).astype(np.int32), trim=True)
  assert {d.platform for d in data.x.devices()} == {"gpu"}
  model = port.load(_lstm())
  result = jax_trainer.fit(
    model,
    x,
    (x[:, 0] % 3).astype(np.int32),
    x[:16],
    (x[:16, 0] % 3).astype(np.int32),
    jax_trainer.TrainConfig(batch_size=16, epochs=2, patience=1),
    log=lambda _: None,
  )
  assert result.epochs_run >= 1 and np.isfinite(result.history["loss"]).all()
