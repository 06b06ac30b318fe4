"""The JAX trainer: gradients through every layer, fit/resume, data parallelism."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
from jax import test_util as jtu
import keras
import numpy as np
import pytest

import port
from jaxnets import batching
from tests import parity
from train import jax_trainer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tokens(rng, batch, steps, vocab):
  """Token ids with variable real lengths, zero padding at the end, one empty row."""
  x = rng.integers(1, vocab, (batch, steps))
  lengths = rng.integers(1, steps + 1, batch)
  lengths[0] = 0
  x[np.arange(steps)[None, :] >= lengths[:, None]] = 0
  return x.astype(np.int32)


def _x64():
  """float64 context (finite differences in float32 are too coarse to check)."""
  if hasattr(jax, "enable_x64"):
    return jax.enable_x64(True)
  from jax.experimental import enable_x64  # pylint: disable=import-outside-toplevel

  return enable_x64()


def _gradient_cases():
  rng = np.random.default_rng(0)
  text = _tokens(rng, 5, 7, 12)
  yield (
    "dense",
    [
      keras.Input((6,)),
      keras.layers.Dense(4, activation="tanh"),
      keras.layers.Dense(3, activation="softmax"),
    ],
    rng.normal(size=(4, 6)),
  )
  yield (
    "cnn",
    [
      keras.Input((7, 6, 2)),
      keras.layers.Conv2D(3, 3, padding="same", activation="elu"),
      keras.layers.BatchNormalization(),
      keras.layers.AveragePooling2D(2),
      keras.layers.MaxPooling2D(2, strides=1, padding="same"),
      keras.layers.Flatten(),
      keras.layers.Dense(3, activation="softmax"),
    ],
    rng.normal(size=(3, 7, 6, 2)),
  )
  for name, cell in (
    ("simple_rnn", keras.layers.SimpleRNN(4)),
    ("lstm", keras.layers.LSTM(4)),
    ("gru", keras.layers.GRU(4)),
  ):
    yield (
      name,
      [
        keras.Input((7,), dtype="int32"),
        keras.layers.Embedding(12, 5, mask_zero=True),
        cell,
        keras.layers.Dense(3, activation="softmax"),
      ],
      text,
    )
  yield (
    "bi_lstm_stacked",
    [
      keras.Input((7,), dtype="int32"),
      keras.layers.Embedding(12, 5, mask_zero=True),
      keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True)),
      keras.layers.Bidirectional(keras.layers.SimpleRNN(3), merge_mode="ave"),
      keras.layers.Dense(3, activation="softmax"),
    ],
    text,
  )


@pytest.mark.parametrize(
  "name,layers,x", list(_gradient_cases()), ids=[c[0] for c in _gradient_cases()]
)
def test_gradients_match_finite_differences(name, layers, x):
  keras_model = keras.Sequential(layers, name=name)
  parity.randomize_weights(keras_model, seed=1, scale=0.4)
  model = port.load(keras_model)
  with _x64():
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), model.params)
    inputs = jnp.asarray(x, jnp.float64 if x.dtype.kind == "f" else jnp.int32)
    weights = jnp.asarray(np.random.default_rng(2).normal(size=(3,)))

    # Recurrent layers compute every step when training (no padded-step skipping
    # under jax.grad): both paths must give true gradients. (BatchNormalization
    # has no training mode, so the CNN case is checked at inference only.)
    for training in (False, True) if name != "cnn" else (False,):

      def objective(p, training=training):
        return jnp.sum(model.apply(p, inputs, training=training) * weights)

      jtu.check_grads(objective, (params,), order=1, modes=["rev"], eps=1e-4, atol=1e-5, rtol=1e-4)


def _small_text_model():
  keras_model = keras.Sequential(
    [
      keras.Input((9,), dtype="int32"),
      keras.layers.Embedding(30, 8, mask_zero=True),
      keras.layers.Bidirectional(keras.layers.LSTM(6)),
      keras.layers.Dropout(0.2),
      keras.layers.Dense(3, activation="softmax"),
    ]
  )
  return port.load(keras_model)


def _text_data(n, seed):
  rng = np.random.default_rng(seed)
  x = _tokens(rng, n, 9, 30)
  y = (x[:, 0] % 3).astype(np.int32)  # learnable: the first token decides the class
  return x, y


def test_fit_learns_and_resume_gives_identical_params(tmp_path):
  model = _small_text_model()
  x, y = _text_data(256, 0)
  xv, yv = _text_data(64, 1)
  config = jax_trainer.TrainConfig(
    batch_size=32, epochs=4, patience=None, seed=3, learning_rate=0.01
  )
  logs = []
  full = jax_trainer.fit(model, x, y, xv, yv, config, log=logs.append)
  assert full.epochs_run == 4 and len(full.history["val_loss"]) == 4
  assert full.history["loss"][-1] < full.history["loss"][0]
  assert any(line.startswith("Epoch 4/4") and "val_loss" in line for line in logs)

  checkpoints = str(tmp_path / "ckpt")
  jax_trainer.fit(model, x, y, xv, yv, config, checkpoint_dir=checkpoints, stop_after_epoch=2)
  resumed = jax_trainer.fit(model, x, y, xv, yv, config, checkpoint_dir=checkpoints)
  assert resumed.history == full.history
  for a, b in zip(
    jax.tree_util.tree_leaves(full.params), jax.tree_util.tree_leaves(resumed.params)
  ):
    np.testing.assert_array_equal(a, b)


def test_early_stopping_restores_best_epoch():
  model = _small_text_model()
  x, y = _text_data(128, 0)
  xv = np.zeros((32, 9), np.int32)  # an unlearnable validation set: val_loss soon rises
  yv = np.random.default_rng(5).integers(0, 3, 32).astype(np.int32)
  config = jax_trainer.TrainConfig(batch_size=32, epochs=30, patience=1, seed=0, learning_rate=0.05)
  result = jax_trainer.fit(model, x, y, xv, yv, config, log=lambda _: None)
  assert result.epochs_run < 30
  best = int(np.argmin(result.history["val_loss"])) + 1
  assert result.best_epoch == best
  trained = type(model)(
    model.layers, result.params, input_shape=model.input_shape, input_dtype=model.input_dtype
  )
  probabilities = trained.predict(xv)
  loss = -np.mean(np.log(probabilities[np.arange(len(yv)), yv]))
  assert loss == pytest.approx(result.history["val_loss"][best - 1], rel=1e-4)


def test_to_keras_round_trip_of_a_jax_trained_model(tmp_path):
  model = _small_text_model()
  x, y = _text_data(128, 0)
  result = jax_trainer.fit(
    model,
    x,
    y,
    x[:32],
    y[:32],
    jax_trainer.TrainConfig(batch_size=32, epochs=1),
    log=lambda _: None,
  )
  trained = type(model)(
    model.layers, result.params, input_shape=model.input_shape, input_dtype=model.input_dtype
  )
  keras_model = port.to_keras(trained)
  path = str(tmp_path / "jax_trained.keras")
  keras_model.save(path)
  reloaded = keras.saving.load_model(path)
  np.testing.assert_allclose(reloaded.predict(x, verbose=0), trained.predict(x), atol=1e-5)


def test_rejects_a_model_without_softmax_output():
  model = port.load(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
  with pytest.raises(ValueError, match="softmax"):
    jax_trainer.fit(
      model,
      np.zeros((4, 4)),
      np.zeros(4),
      np.zeros((4, 4)),
      np.zeros(4),
      jax_trainer.TrainConfig(epochs=1),
    )


def test_rejects_a_graph_rather_than_training_it_as_a_chain():
  inputs = keras.Input((4,))
  branch = keras.layers.Dense(4, name="branch")(inputs)
  merged = keras.layers.Add()([inputs, branch])
  outputs = keras.layers.Dense(2, activation="softmax")(merged)
  model = port.load(keras.Model(inputs, outputs, name="residual"))
  with pytest.raises(ValueError, match=r"'residual'.*chains of layers"):
    jax_trainer.logits_model(model)


def test_data_parallel_training_matches_one_device():
  """Four forced CPU devices shard each batch; the result equals one device's."""
  script = textwrap.dedent("""
      import json, sys
      import jax, numpy as np, keras
      import port
      from train import jax_trainer
      keras_model = keras.Sequential([
          keras.Input((9,), dtype="int32"), keras.layers.Embedding(30, 8, mask_zero=True),
          keras.layers.LSTM(6), keras.layers.Dense(3, activation="softmax")])
      model = port.load(keras_model)
      rng = np.random.default_rng(0)
      x = rng.integers(1, 30, (96, 9)).astype(np.int32); x[:, 6:] = 0
      y = (x[:, 0] % 3).astype(np.int32)
      result = jax_trainer.fit(model, x, y, x[:16], y[:16],
                               jax_trainer.TrainConfig(batch_size=32, epochs=2, seed=1),
                               log=lambda _: None)
      leaves = jax.tree_util.tree_leaves(result.params)
      print(json.dumps({"devices": jax.local_device_count(),
                        "params": [np.asarray(l).ravel().tolist() for l in leaves]}))
  """)
  outputs = {}
  for devices in (1, 4):
    env = dict(
      os.environ,
      XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
      PYTHONPATH=REPO_ROOT,
      JAX_PLATFORMS="cpu",
    )
    proc = subprocess.run(
      [sys.executable, "-c", script],
      capture_output=True,
      text=True,
      env=env,
      cwd=REPO_ROOT,
      timeout=300,
      check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json  # pylint: disable=import-outside-toplevel

    outputs[devices] = json.loads(proc.stdout.strip().splitlines()[-1])
  assert outputs[4]["devices"] == 4 and outputs[1]["devices"] == 1
  for a, b in zip(outputs[1]["params"], outputs[4]["params"]):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_an_epoch_runs_on_the_device_without_reading_back_and_donates_the_state():
  """The data is put on the device once; a step gathers its batch there, takes the state's
  buffers (donation) and reads nothing back: the epoch's sums are read once, at its end."""
  model = _small_text_model()
  train_model = jax_trainer.logits_model(model)
  x, y = _text_data(70, 0)  # 3 batches of 32, the last one partial
  config = jax_trainer.TrainConfig(batch_size=32, epochs=1, seed=0)
  data = jax_trainer._to_device(x, y, trim=True)
  assert isinstance(data.x, jax.Array) and data.lengths is not None
  state = jax_trainer.TrainState.create(
    apply_fn=train_model.apply,
    params=jax_trainer._copy(model.params),
    tx=jax_trainer.make_optimizer(config),
    best_params=jax_trainer._copy(model.params),
  )
  before = jax.tree_util.tree_leaves(state.params)
  train_step, _ = jax_trainer._make_steps(train_model.apply)
  order = np.random.default_rng(0).permutation(len(x))
  with jax.transfer_guard_device_to_host("disallow"):
    state, sums = jax_trainer._train_epoch(
      train_step, state, data, order, config.batch_size, jax.random.PRNGKey(1)
    )
  assert all(leaf.is_deleted() for leaf in before)  # donated to the first step
  total, correct = np.asarray(sums)
  assert 0 < total and 0 <= correct <= len(x)
  assert int(state.step) == 3


def test_plan_pads_a_partial_batch_with_zero_weight_rows_and_cuts_token_rows():
  x, y = _text_data(40, 0)
  data = jax_trainer._to_device(x, y, trim=True)
  order = np.arange(40)[::-1]
  plan, cuts = jax_trainer._plan(data, order, 32)
  plan = np.asarray(plan)
  assert plan.shape == (2, 32)
  np.testing.assert_array_equal(plan.ravel()[:40], order)
  assert (plan.ravel()[40:] == 40).all()  # the gather's zero rows of weight 0
  lengths = data.lengths
  assert cuts == [
    batching.bucketed_length(int(lengths[order[:32]].max()), 9),
    batching.bucketed_length(int(lengths[order[32:]].max()), 9),
  ]
  bx, by, bw = jax.jit(jax_trainer._gather, static_argnums=3)(data.x, data.y, plan[1], cuts[1])
  np.testing.assert_array_equal(np.asarray(bx)[:8], x[order[32:], : cuts[1]])
  assert not np.asarray(bx)[8:].any() and not np.asarray(by)[8:].any()
  np.testing.assert_array_equal(np.asarray(bw), [1.0] * 8 + [0.0] * 24)


def test_fit_leaves_the_callers_params_intact():
  """The train state is donated to every step; the params passed in are copied first."""
  model = _small_text_model()
  x, y = _text_data(64, 0)
  given = jax.tree_util.tree_map(jnp.asarray, model.params)  # device arrays, donatable
  kept = jax.tree_util.tree_map(np.array, given)
  jax_trainer.fit(
    model,
    x,
    y,
    None,
    None,
    jax_trainer.TrainConfig(batch_size=32, epochs=1),
    params=given,
    log=lambda _: None,
  )
  for a, b in zip(jax.tree_util.tree_leaves(given), jax.tree_util.tree_leaves(kept)):
    assert not a.is_deleted()
    np.testing.assert_array_equal(np.asarray(a), b)
