"""Speed choices per platform (jaxnets/settings.py): the CPU's where a pass is compiled for a CPU.

The settings were measured on XLA:CPU; compiled for any other platform each CPU-only choice is
off (``settings.CPU_MEASURED``) unless set explicitly. ``Model.apply`` and ``apply_fast`` trace
both through ``jax.lax.platform_dependent``, so the platform is the one lowered for, not this
machine's: on a CPU-only machine a CUDA lowering (``jax.export``) must hold none of the CPU-only
choices (each runs in a ``cpu_only_<choice>`` named scope, which the lowered module's locations
show) while the CPU lowering keeps them, and the CPU's outputs must be what they were.
"""

import json

import jax
import keras
import numpy as np
import pytest

import jaxnets
import port
from bench import cuda_lowering
from jaxnets import export as export_lib
from jaxnets import settings
from tests import parity

BATCH = 256


def _cnn():
  """RGB input (odd channels: padded on CPU), max pooling large enough for the guarded form."""
  model = keras.Sequential(
    [
      keras.Input((16, 16, 3)),
      keras.layers.Conv2D(8, 3, activation="relu"),
      keras.layers.MaxPooling2D(2),
      keras.layers.Flatten(),
      keras.layers.Dense(10, activation="softmax"),
    ],
    name="rgb_cnn",
  )
  parity.randomize_weights(model, seed=0, scale=0.4)
  return model


def _bilstm():
  """Masked BiLSTM: padded steps skipped and rows blocked on CPU at batch 256."""
  model = keras.Sequential(
    [
      keras.Input((20,), dtype="int32"),
      keras.layers.Embedding(50, 16, mask_zero=True),
      keras.layers.Bidirectional(keras.layers.LSTM(12)),
      keras.layers.Dense(3, activation="softmax"),
    ],
    name="masked_bilstm",
  )
  parity.randomize_weights(model, seed=0, scale=0.4)
  return model


def _inputs(name: str) -> np.ndarray:
  rng = np.random.default_rng(0)
  if name == "cnn":
    return rng.normal(size=(BATCH, 16, 16, 3)).astype(np.float32)
  x = rng.integers(1, 50, (BATCH, 20))
  x[np.arange(20)[None, :] >= rng.integers(0, 15, BATCH)[:, None]] = 0
  return x.astype(np.int32)


@pytest.fixture(scope="module")
def keras_models():
  return {"cnn": _cnn(), "lstm": _bilstm()}


@pytest.fixture(scope="module")
def ported(keras_models):
  return {name: port.load(model) for name, model in keras_models.items()}


def _choices(fun, model, x, platforms) -> tuple[str, ...]:
  params = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), model.params)
  spec = jax.ShapeDtypeStruct(x.shape, x.dtype)
  exported = jax.export.export(jax.jit(fun), platforms=platforms)(params, spec)
  return cuda_lowering.cpu_only_choices(exported.mlir_module())


CPU_CHOICES = {
  ("cnn", "apply"): {"cpu_only_odd_channel_padding"},
  ("cnn", "apply_fast"): {"cpu_only_odd_channel_padding", "cpu_only_guarded_max_pool"},
  ("lstm", "apply"): {"cpu_only_skip_padded_steps", "cpu_only_rnn_row_blocks"},
  ("lstm", "apply_fast"): {"cpu_only_skip_padded_steps", "cpu_only_rnn_row_blocks"},
}


@pytest.mark.parametrize("name, method", sorted(CPU_CHOICES))
def test_the_cuda_lowering_holds_no_cpu_choice_and_the_cpu_lowering_keeps_them(
  ported, name, method
):
  model = ported[name]
  fun = getattr(model, method)
  x = _inputs(name)
  assert _choices(fun, model, x, ("cuda",)) == ()
  assert set(_choices(fun, model, x, ("cpu",))) == CPU_CHOICES[(name, method)]
  # One module for both (Model.export's): each platform's branch, chosen when it runs.
  assert set(_choices(fun, model, x, ("cpu", "cuda"))) == CPU_CHOICES[(name, method)]


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_cpu_outputs_are_unchanged_and_the_plain_choices_agree(ported, keras_models, name):
  """jit(apply) on this CPU is bit for bit the pass traced with the CPU's choices directly (as
  before per-platform tracing); the other platforms' plain choices give the same numbers."""
  model, x = ported[name], _inputs(name)
  out = np.asarray(jax.jit(model.apply)(model.params, x))
  fast, flagged = jax.jit(model.apply_fast)(model.params, x)
  with settings.for_platform(settings.CPU):
    direct = np.asarray(jax.jit(lambda p, v: model.apply(p, v))(model.params, x))
  with settings.for_platform(settings.ACCELERATOR):
    plain = np.asarray(jax.jit(lambda p, v: model.apply(p, v))(model.params, x))
  np.testing.assert_array_equal(out, direct)
  np.testing.assert_array_equal(np.asarray(fast), out)
  assert not bool(flagged)
  # The plain choices round differently (odd-channel padding changes the sums'
  # order): both are held to the parity rule, not to each other.
  for label, got in (("CPU choices", out), ("plain choices", plain)):
    parity.assert_outputs_match(keras_models[name], got, x, label=label)
  np.testing.assert_array_equal(model.predict(x, batch_size=BATCH), out)


def test_export_lowers_each_platform_with_its_choices(ported, tmp_path):
  model, x = ported["lstm"], _inputs("lstm")
  folder = model.export(tmp_path / "lstm_exported")
  with open(f"{folder}/{export_lib.EXPORT_FILE}", "rb") as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  assert set(exported.platforms) == {"cpu", "cuda"}
  # Row blocks need a concrete batch (export's is symbolic); the padded steps are skipped.
  assert cuda_lowering.cpu_only_choices(exported.mlir_module()) == ("cpu_only_skip_padded_steps",)
  with open(f"{folder}/{export_lib.META_FILE}", encoding="utf-8") as f:
    assert json.load(f)["platforms"] == ["cpu", "cuda"]
  loaded = jaxnets.load_exported(folder)
  np.testing.assert_allclose(loaded.predict(x), model.predict(x, batch_size=BATCH), atol=1e-6)


def test_other_platforms_take_the_plain_choices_unless_set():
  with settings.for_platform("gpu"):
    plain = settings.current()
    assert not plain.rnn_skip_padded_steps and not plain.guard_fast_paths
    assert plain.conv_pad_odd_channels_below == 0 and plain.rnn_row_block_floats >= 2**62
    assert plain.fast_pool_min_floats == settings.Settings().fast_pool_min_floats  # not CPU-only
    with settings.override(rnn_skip_padded_steps=True):  # set explicitly: measured by the user
      assert settings.current().rnn_skip_padded_steps
      assert not settings.current().guard_fast_paths
    assert settings.platform() == "gpu"
  assert settings.current() == settings.from_environment()


def test_predict_off_the_cpu_runs_one_program_and_reads_no_flag(ported):
  """Where predict runs on another platform there is no fast form: no guarded second program,
  no per-batch flag read back to the host."""
  model, x = ported["cnn"], _inputs("cnn")
  assert model.has_fast_paths(x)
  fresh = port.load(_cnn())
  with settings.for_platform("gpu"):
    assert not fresh.has_fast_paths(x)
    assert not settings.current().guard_fast_paths


def test_the_detector_reads_scopes_not_names_that_contain_them():
  def f(x):
    with settings.cpu_only("example"):
      return jax.numpy.sin(x)

  def cpu_only_lookalike(x):  # a name, not a scope
    return jax.numpy.cos(x)

  spec = jax.ShapeDtypeStruct((3,), np.float32)
  module = jax.export.export(jax.jit(f), platforms=("cpu",))(spec).mlir_module()
  assert cuda_lowering.cpu_only_choices(module) == ("cpu_only_example",)
  lookalike = jax.export.export(jax.jit(cpu_only_lookalike), platforms=("cpu",))(spec)
  assert cuda_lowering.cpu_only_choices(lookalike.mlir_module()) == ()
