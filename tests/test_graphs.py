"""Functional graphs: branches, merges, several inputs/outputs, nested and shared layers.

Each Keras model gets seeded random (asymmetric) weights and random BN
statistics; the port must match Keras's own ``model(x)`` (structure and
values, <= 1e-5, same argmax) jitted and un-jitted, from the in-memory object
and from a saved ``.keras`` file, and after ``Model.save`` -> ``jaxnets.load``
in a process where TensorFlow and Keras cannot be imported.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import keras
import numpy as np
import pytest

import jaxnets
import port
from jaxnets import graph as graph_lib
from tests import parity

L = keras.layers
RNG = np.random.default_rng(0)


def _images(shape, batch=5, seed=0):
  return np.random.default_rng(seed).normal(size=(batch,) + tuple(shape)).astype(np.float32)


def _leaves(value):
  """(structure tag, list of numpy arrays) of an array, list or dict."""
  if isinstance(value, dict):
    return ("dict", tuple(value)), [np.asarray(value[k]) for k in value]
  if isinstance(value, (list, tuple)):
    return ("list", len(value)), [np.asarray(v) for v in value]
  return ("array",), [np.asarray(value)]


# The Keras model and inputs of the last ``check``: what later ``_compare`` calls
# of the same test (saved, exported, reordered inputs) are judged against.
_CHECKED: dict = {}


def _compare(label, got, want, keras_model=None, x=None, *, ordered=True):
  keras_model = _CHECKED["keras_model"] if keras_model is None else keras_model
  x = _CHECKED["x"] if x is None else x
  got_tag, _ = _leaves(got)
  want_tag, _ = _leaves(want)
  if not ordered:
    got_tag, want_tag = got_tag[:1], want_tag[:1]
  assert got_tag == want_tag, f"{label}: structure {got_tag} != Keras {want_tag}"
  if got_tag[0] == "dict" and ordered:  # apply's dict is a pytree: sorted keys
    assert list(got) == list(want), f"{label}: keys {list(got)} != Keras {list(want)}"
  parity.assert_outputs_match(keras_model, got, x, keras_outputs=want, label=label)


def _keras_output(keras_model, x):
  out = keras_model(x, training=False)
  if isinstance(out, dict):
    return {k: np.asarray(v) for k, v in out.items()}
  if isinstance(out, (list, tuple)):
    return [np.asarray(v) for v in out]
  return np.asarray(out)


def check(keras_model, x, tmp_path=None, *, seed=0):
  """Ports ``keras_model`` (object, and .keras file when ``tmp_path``) and checks it."""
  parity.randomize_weights(keras_model, seed=seed)
  want = _keras_output(keras_model, x)
  _CHECKED.update(keras_model=keras_model, x=x)
  sources = [keras_model]
  if tmp_path is not None:
    path = tmp_path / "model.keras"
    keras_model.save(path)
    sources.append(str(path))
  model = None
  for source in sources:
    model = port.load(source)
    _compare("jitted predict", model.predict(x, batch_size=4), want, keras_model, x)
    _compare("jitted call", model(x), want, keras_model, x)
    with jax.disable_jit():
      unjitted = model.apply(model.params, model.prepare_inputs(x))
    _compare("un-jitted apply", unjitted, want, keras_model, x, ordered=False)
  return model, want


def saved_predict_without_tensorflow(model, x, work: pathlib.Path):
  """``jaxnets.load(saved).predict(x)`` in a process where TF/Keras imports fail."""
  model.save(work / "saved")
  arrays = x if isinstance(x, (list, tuple)) else [x]
  np.savez(work / "x.npz", *arrays)
  script = textwrap.dedent(f"""
      import sys, json
      sys.modules["tensorflow"] = None
      sys.modules["keras"] = None
      import numpy as np
      import jaxnets
      model = jaxnets.load({str(work / "saved")!r})
      data = np.load({str(work / "x.npz")!r})
      xs = [data[f"arr_{{i}}"] for i in range(len(data.files))]
      out = model.predict(xs if len(xs) > 1 else xs[0], batch_size=4)
      if isinstance(out, dict):
        keys, values = list(out), list(out.values())
      elif isinstance(out, list):
        keys, values = None, out
      else:
        keys, values = "array", [out]
      np.savez({str(work / "got.npz")!r}, *values)
      json.dump(keys, open({str(work / "keys.json")!r}, "w"))
      assert not any(m.startswith(("tensorflow", "keras")) for m in sys.modules
                     if sys.modules[m] is not None)
  """)
  repo = pathlib.Path(__file__).resolve().parent.parent
  env = dict(os.environ, PYTHONPATH=str(repo))
  subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=work)
  got = np.load(work / "got.npz")
  values = [got[f"arr_{i}"] for i in range(len(got.files))]
  keys = json.loads((work / "keys.json").read_text())
  if keys == "array":
    return values[0]
  if keys is None:
    return values
  return dict(zip(keys, values))


# ------------------------------------------------------------------ models
def residual_block():
  x_in = keras.Input((9, 7, 3))
  x = L.Conv2D(6, 3, padding="same")(x_in)
  x = L.BatchNormalization()(x)
  x = L.Activation("relu")(x)
  y = L.Conv2D(6, 3, padding="same")(x)
  y = L.BatchNormalization()(y)
  x = L.Add()([x, y])
  x = L.Activation("relu")(x)
  x = L.GlobalAveragePooling2D()(x)
  return keras.Model(x_in, L.Dense(5, activation="softmax")(x), name="residual")


def inception_block():
  x_in = keras.Input((11, 13, 4))
  a = L.Conv2D(3, 1, activation="relu")(x_in)
  b = L.Conv2D(5, 3, padding="same", activation="relu")(x_in)
  c = L.MaxPooling2D(3, strides=1, padding="same")(x_in)
  c = L.Conv2D(2, 1)(c)
  x = L.Concatenate(axis=-1)([a, b, c])
  x = L.Conv2D(4, 3, strides=2)(x)
  x = L.Flatten()(x)
  return keras.Model(x_in, L.Dense(6, activation="softmax")(x), name="inception")


def two_in_two_out(as_dict: bool):
  image = keras.Input((7, 9, 2), name="image")
  features = keras.Input((5,), name="features")
  x = L.Conv2D(3, 3)(image)
  x = L.GlobalMaxPooling2D()(x)
  f = L.Dense(3, activation="tanh")(features)
  joined = L.Concatenate()([x, f])
  logits = L.Dense(4, activation="softmax", name="cls")(joined)
  value = L.Dense(1, name="value")(L.Subtract()([x, f]))
  if as_dict:
    return keras.Model({"image": image, "features": features}, {"value": value, "cls": logits})
  return keras.Model([image, features], [logits, value])


def nested():
  inner_seq = keras.Sequential([L.Dense(6, activation="relu"), L.Dense(6)], name="inner_seq")
  block_in = keras.Input((6,))
  block = keras.Model(block_in, L.Add()([block_in, L.Dense(6)(block_in)]), name="block")
  x_in = keras.Input((4,))
  x = inner_seq(x_in)
  x = block(x)
  x = block(x)  # the same nested model twice: shared weights
  return keras.Model(x_in, L.Dense(3, activation="softmax")(x), name="nested")


def shared_layer():
  a_in = keras.Input((5,))
  b_in = keras.Input((5,))
  shared = L.Dense(4, activation="relu", name="shared")
  a, b = shared(a_in), shared(b_in)
  x = L.Maximum()([a, b])
  x = shared(L.Dense(5)(x))  # a third call, on a derived tensor
  return keras.Model([a_in, b_in], L.Dense(3, activation="softmax")(x))


def ops_arithmetic():
  x_in = keras.Input((6, 5, 3))
  x = L.Conv2D(4, 3, padding="same")(x_in)
  hard_sigmoid = L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)  # MobileNetV3's form
  x = x * hard_sigmoid
  x = 2.0 - x
  x = x / (L.Activation("sigmoid")(x) + 1.0)
  x = keras.ops.add(x, L.Conv2D(4, 1)(x_in))
  return keras.Model(x_in, L.Dense(3)(L.Flatten()(x)))


# ------------------------------------------------------------------ tests
def test_residual_block(tmp_path):
  x = _images((9, 7, 3))
  model, want = check(residual_block(), x, tmp_path)
  assert not model.graph.is_chain
  _compare("saved, TF blocked", saved_predict_without_tensorflow(model, x, tmp_path), want)
  exported = jaxnets.load_exported(model.export(tmp_path / "exported"))
  _compare("exported", exported.predict(x), want)


def test_inception_concatenate(tmp_path):
  x = _images((11, 13, 4), batch=6)
  model, want = check(inception_block(), x)
  assert "Connected to" in model.summary()
  loaded = jaxnets.load(model.save(tmp_path / "inception"))
  _compare("saved and loaded", loaded.predict(x), want)


@pytest.mark.parametrize("as_dict", [False, True], ids=["list", "dict"])
def test_two_inputs_two_outputs(as_dict, tmp_path):
  keras_model = two_in_two_out(as_dict)
  x = [_images((7, 9, 2), batch=5, seed=1), _images((5,), batch=5, seed=2)]
  if as_dict:
    x = {"image": x[0], "features": x[1]}
  model, want = check(keras_model, x, tmp_path)
  assert model.num_inputs == 2
  if as_dict:
    assert list(want) == ["value", "cls"]
    x = [x[name] for name in model.input_names]  # a list in the model's input order
    _compare("list input", model.predict(x), want)
  # several batches (the general predict path) give the same rows
  _compare("batched", model.predict(x, batch_size=2), want)
  _compare("saved, TF blocked", saved_predict_without_tensorflow(model, x, tmp_path), want)
  with pytest.raises(ValueError, match="one input and one output"):
    model.export(tmp_path / "exported")


def test_nested_models_are_inlined(tmp_path):
  x = _images((4,), batch=7)
  model, want = check(nested(), x, tmp_path)
  # The nested model used twice is one set of weights, applied twice.
  block_layers = [n for node in model.graph.nodes for n in node.layers if "dense" in n]
  assert len(block_layers) > len(set(block_layers))
  _compare("saved, TF blocked", saved_predict_without_tensorflow(model, x, tmp_path), want)


def test_shared_layer(tmp_path):
  x = [_images((5,), seed=3), _images((5,), seed=4)]
  model, want = check(shared_layer(), x, tmp_path)
  applications = [n for node in model.graph.nodes for n in node.layers]
  assert applications.count("shared") == 3
  assert list(model.params).count("shared") == 1
  loaded = jaxnets.load(model.save(tmp_path / "shared"))
  _compare("saved and loaded", loaded.predict(x), want)


def test_ops_arithmetic():
  check(ops_arithmetic(), _images((6, 5, 3)))


def test_masks_through_graph(tmp_path):
  """Embedding(mask_zero) feeds two recurrent branches; masks ride along each edge."""
  tokens = keras.Input((None,), dtype="int32")
  e = L.Embedding(30, 6, mask_zero=True)(tokens)
  a = L.Bidirectional(L.LSTM(4))(e)
  b = L.GRU(4, return_sequences=True)(e)
  b = L.GlobalAveragePooling1D()(b)  # mask-aware
  x = L.Concatenate()([a, b])
  keras_model = keras.Model(tokens, L.Dense(3, activation="softmax")(x))
  ids = RNG.integers(1, 30, (7, 11))
  ids[:, 8:] = 0
  ids[2, 3:] = 0
  ids[4, 1:] = 0
  model, want = check(keras_model, ids, tmp_path)
  _compare("saved, TF blocked", saved_predict_without_tensorflow(model, ids, tmp_path), want)


def test_functional_text_model_ports(tmp_path):
  """string Input -> TextVectorization -> Embedding(mask_zero) -> Bidirectional(LSTM) -> Dense."""
  texts = ["saya suka makanan ini", "tidak enak sama sekali", "biasa saja", "enak", "", "a b c d"]
  vectorize = L.TextVectorization(max_tokens=40, output_sequence_length=9)
  vectorize.adapt(texts)
  text_in = keras.Input((), dtype="string")
  x = vectorize(text_in)
  x = L.Embedding(40, 5, mask_zero=True)(x)
  x = L.Bidirectional(L.LSTM(4))(x)
  keras_model = keras.Model(text_in, L.Dense(3, activation="softmax")(x))
  parity.randomize_weights(keras_model)
  want = np.asarray(keras_model(np.asarray(texts)))
  model = port.load(keras_model)
  assert model.preprocessor is not None and model.input_dtype == "string"
  assert model.trims_padding  # as fast as the Sequential form: batches cut to real lengths
  strings = np.asarray(texts)
  _compare("text predict", model.predict(texts), want, keras_model, strings)
  model.save(tmp_path / "text")
  got = parity.predict_saved_without_tensorflow(tmp_path / "text", texts, tmp_path)
  _compare("saved, TF blocked", got, want, keras_model, strings)


def test_unsupported_lists_every_problem():
  x_in = keras.Input((4, 4, 2))
  a = L.Conv2D(3, 1, dtype="float16")(x_in)
  b = keras.ops.sin(L.Conv2D(3, 1)(x_in))
  x = L.Add()([keras.ops.cast(a, "float32"), b])
  x = L.Flatten()(x)
  keras_model = keras.Model(x_in, L.Dense(2)(x))
  problems = port.unsupported(keras_model)
  text = "\n".join(f"{n} {c} {r}" for n, c, r in problems)
  assert "float16" in text
  assert "Sin" in text
  with pytest.raises(port.registry.UnsupportedModelError) as info:
    port.load(keras_model)
  assert len(info.value.problems) == len(problems) >= 2


def test_explicit_training_true_is_refused():
  x_in = keras.Input((4,))
  x = L.Dropout(0.5)(x_in, training=True)
  problems = port.unsupported(keras.Model(x_in, L.Dense(2)(x)))
  assert any("training=True" in r for _, _, r in problems)


def test_chain_is_the_default_graph(tmp_path):
  keras_model = keras.Sequential([keras.Input((5,)), L.Dense(4, activation="relu"), L.Dense(3)])
  parity.randomize_weights(keras_model)
  model = port.load(keras_model)
  assert model.graph == graph_lib.Graph.chain([layer.name for layer in model.layers])
  assert model.graph.is_chain
  # A folder saved before graphs existed (format 2: no graph, no inputs) loads as a chain.
  folder = pathlib.Path(model.save(tmp_path / "chain"))
  arch = json.loads((folder / "architecture.json").read_text())
  del arch["graph"], arch["inputs"]
  arch["format_version"] = 2
  (folder / "architecture.json").write_text(json.dumps(arch))
  loaded = jaxnets.load(folder)
  x = _images((5,))
  np.testing.assert_allclose(loaded.predict(x), model.predict(x), atol=0)


def test_malformed_graph_is_refused(tmp_path):
  model = port.load(residual_block())
  folder = pathlib.Path(model.save(tmp_path / "m"))
  arch = json.loads((folder / "architecture.json").read_text())
  arch["graph"]["nodes"][1]["inputs"] = [99]
  (folder / "architecture.json").write_text(json.dumps(arch))
  with pytest.raises(jaxnets.saving.SavedModelError, match="tensor 99"):
    jaxnets.load(folder)


def test_ops_arithmetic_rounds_as_tensorflow():
  """Division by a constant and multiply-then-add round as TF does (bit for bit):
  XLA would otherwise use a reciprocal or a fused multiply-add."""
  x_in = keras.Input((6, 5))
  outputs = [x_in / 3.0, 3.0 / x_in, x_in * 0.1 + 0.3, (x_in - 1.7) * x_in, 0.5 - x_in]
  keras_model = keras.Model(x_in, outputs + [L.Average()([x_in, x_in * 2.0, x_in])])
  x = _images((6, 5), batch=64)
  want = _keras_output(keras_model, x)
  for got, expected in zip(port.load(keras_model).predict(x), want):
    np.testing.assert_array_equal(got, expected)
