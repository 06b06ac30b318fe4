"""Porting from files and objects, saving/reloading without TensorFlow, predict, errors."""

import os
import re
import subprocess
import sys
import textwrap
import zipfile

import keras
import numpy as np
import pytest

import jaxnets
import port
from tests import parity
from tests.conftest import REPO_ROOT

L = keras.layers
INPUT_SHAPE = (9, 11, 3)

# Run first in a child interpreter: TensorFlow and Keras cannot be imported.
_BLOCK_TF = "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"


@pytest.fixture(scope="module")
def keras_model():
  model = keras.Sequential(
    [
      keras.Input(INPUT_SHAPE),
      L.Conv2D(6, 3, padding="same", activation="relu"),
      L.BatchNormalization(),
      L.MaxPooling2D(2, padding="same"),
      L.Conv2D(8, (2, 3), activation="relu"),
      L.GlobalAveragePooling2D(),
      L.Dropout(0.3),
      L.Dense(5, activation="softmax"),
    ],
    name="io_cnn",
  )
  parity.randomize_weights(model, seed=7)
  return model


@pytest.fixture(scope="module")
def images():
  return np.random.default_rng(7).normal(size=(40,) + INPUT_SHAPE).astype(np.float32)


@pytest.fixture(scope="module")
def ported(keras_model):
  return port.load(keras_model)


def _keras(model, x):
  return np.asarray(model(x, training=False))


def _run_without_tensorflow(code: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-c", _BLOCK_TF + textwrap.dedent(code)],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )


# ------------------------------------------------------------ round trips
def test_keras_file_h5_file_and_in_memory_model_predict_the_same(keras_model, images, tmp_path):
  keras_path, h5_path = tmp_path / "model.keras", tmp_path / "model.h5"
  keras_model.save(keras_path)
  keras_model.save(h5_path)
  predictions = {
    "in-memory": port.load(keras_model).predict(images),
    ".keras": port.load(str(keras_path)).predict(images),
    ".h5": port.load(h5_path).predict(images),  # a PathLike works too
  }
  expected = _keras(keras_model, images)
  for source, got in predictions.items():
    np.testing.assert_array_equal(got, predictions["in-memory"], err_msg=source)
    parity.assert_outputs_match(keras_model, got, images, keras_outputs=expected, label=source)


def test_saved_model_reloads_and_predicts_without_tensorflow(ported, images, tmp_path):
  directory = tmp_path / "saved"
  ported.save(directory)
  np.save(tmp_path / "x.npy", images)
  result = _run_without_tensorflow(f"""
      import numpy as np
      import jaxnets
      model = jaxnets.load({str(directory)!r})
      np.save({str(tmp_path / "y.npy")!r}, model.predict(np.load({str(tmp_path / "x.npy")!r})))
      assert sys.modules['tensorflow'] is None and sys.modules['keras'] is None
      print(model.summary())
      """)
  assert result.returncode == 0, result.stderr[-3000:]
  np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), ported.predict(images))
  assert "io_cnn" in result.stdout


def test_import_jaxnets_without_tensorflow():
  result = _run_without_tensorflow("import jaxnets, jaxnets.layers; print(jaxnets.__version__)")
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == jaxnets.__version__


def test_jaxnets_load_errors_name_the_directory(tmp_path):
  with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
    jaxnets.load(tmp_path / "nowhere")


# ----------------------------------------------------------------- summary
def test_summary_lists_layers_and_keras_param_counts(keras_model, ported):
  text = ported.summary()
  assert "io_cnn" in text
  for layer in keras_model.layers:
    row = next((line for line in text.splitlines() if line.startswith(layer.name + " ")), None)
    assert row is not None, f"{layer.name} missing from summary:\n{text}"
    assert f"({type(layer).__name__})" in row
    assert row.split()[-1] == f"{layer.count_params():,}", row
  assert f"Total params: {keras_model.count_params():,}" in text
  assert ported.param_count == keras_model.count_params()


# ----------------------------------------------------------------- predict
@pytest.mark.parametrize("rows", [1, 255, 257, 1000])
def test_predict_any_row_count_matches_keras(keras_model, ported, rows):
  x = np.random.default_rng(rows).normal(size=(rows,) + INPUT_SHAPE).astype(np.float32)
  got = ported.predict(x, batch_size=256)
  assert got.shape == (rows, 5)
  parity.assert_outputs_match(keras_model, got, x)


def test_predict_compiles_a_bounded_set_of_batch_shapes(keras_model):
  model = port.load(keras_model)
  x = np.random.default_rng(3).normal(size=(300,) + INPUT_SHAPE).astype(np.float32)
  expected = model.predict(x, batch_size=32)
  for rows in list(range(1, 34)) + [63, 64, 65, 100, 299, 300]:
    # Other batch shapes compile to other kernels: equal up to float32 rounding.
    np.testing.assert_allclose(
      model.predict(x[:rows], batch_size=32), expected[:rows], atol=1e-6, rtol=0
    )
  # Batch 32 plus the powers of two below it for short inputs: 1, 2, 4, 8, 16.
  assert model._forward._cache_size() <= 6  # pylint: disable=protected-access  (JAX has no public compile count)


def test_predict_of_zero_rows(ported):
  assert ported.predict(np.zeros((0,) + INPUT_SHAPE, np.float32)).shape == (0, 5)


def test_call_is_the_jitted_forward(keras_model, ported, images):
  parity.assert_outputs_match(keras_model, np.asarray(ported(images[:8])), images[:8])


# ------------------------------------------------------------ input errors
@pytest.mark.parametrize(
  "bad,expected_message",
  [
    (np.zeros(INPUT_SHAPE, np.float32), r"rank 4.*\('batch', 9, 11, 3\).*got shape \(9, 11, 3\)"),
    (np.zeros((2, 9, 11, 4), np.float32), r"\('batch', 9, 11, 3\).*axis 3 has size 4, expected 3"),
    (np.zeros((2, 11, 9, 3), np.float32), r"axis 1 has size 11, expected 9"),
    (np.full((2,) + INPUT_SHAPE, "a"), r"numeric float32 input.*\('batch', 9, 11, 3\).*dtype <U1"),
    (np.zeros((2,) + INPUT_SHAPE, np.complex64), r"numeric float32.*complex64"),
  ],
)
def test_bad_input_is_rejected_before_compiling(keras_model, bad, expected_message):
  model = port.load(keras_model)
  for call in (model.predict, model):
    with pytest.raises(jaxnets.InputError, match=expected_message):
      call(bad)
  assert model._forward._cache_size() == 0  # pylint: disable=protected-access  (JAX has no public compile count)


def test_bad_batch_size_is_rejected(ported, images):
  with pytest.raises(ValueError, match="batch_size"):
    ported.predict(images, batch_size=0)


# ------------------------------------------------------------- path errors
def test_missing_path_is_named(tmp_path):
  path = tmp_path / "absent.keras"
  with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
    port.load(path)


def test_directory_path_is_named(tmp_path):
  with pytest.raises(ValueError, match=re.escape(str(tmp_path)) + ".*directory"):
    port.load(tmp_path)


def test_wrong_suffix_is_named(tmp_path):
  path = tmp_path / "model.onnx"
  path.write_bytes(b"\x08\x01")
  with pytest.raises(ValueError, match=re.escape(str(path)) + r".*\.keras or \.h5"):
    port.load(path)


def test_truncated_keras_file_is_named(keras_model, tmp_path):
  whole = tmp_path / "whole.keras"
  keras_model.save(whole)
  data = whole.read_bytes()
  half = tmp_path / "half.keras"
  half.write_bytes(data[: len(data) // 2])
  with pytest.raises(ValueError, match=re.escape(str(half)) + ".*(truncated|not a zip)"):
    port.load(half)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_non_keras_file_renamed_is_named(tmp_path, suffix):
  path = tmp_path / f"notes{suffix}"
  path.write_text("this is a text file, not a model\n" * 20)
  with pytest.raises(ValueError, match=re.escape(str(path))):
    port.load(path)


def test_zip_that_is_not_a_keras_archive_is_named(tmp_path):
  path = tmp_path / "other.keras"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("readme.txt", "not a model")
  with pytest.raises(ValueError, match=re.escape(str(path))):
    port.load(path)


def test_unsupported_source_type_is_named():
  with pytest.raises(TypeError, match="keras.Model or a path"):
    port.load(42)


def test_no_tensorflow_import_in_jaxnets_sources():
  """``jaxnets`` must stay importable and usable with JAX alone."""
  offenders = []
  for root, _, files in os.walk(REPO_ROOT / "jaxnets"):
    for name in files:
      if name.endswith(".py"):
        text = open(os.path.join(root, name), encoding="utf-8").read()
        if re.search(r"^\s*(import|from)\s+(tensorflow|keras)\b", text, re.M):
          offenders.append(name)
  assert not offenders
