"""The command lines, through their real entry points in subprocesses.

``python -m port.cli MODEL.keras OUT_DIR`` (``jaxnets-port``) and
``python -m jaxnets.cli MODEL_DIR`` (``jaxnets-predict``): happy paths on a tiny
CNN (``.npy`` in and out) and a tiny text model (a text file, stdin), ``--help``,
and the exit codes scripts rely on: 1 with one ``error:`` line naming the culprit
for bad input, 2 listing the refused layer for a model that cannot be ported.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")
import jaxnets  # noqa: E402

from tests import parity  # noqa: E402
from tests.conftest import REPO_ROOT  # noqa: E402

L = keras.layers
TEXTS = ["saya suka makanan ini", "tidak enak sekali", "biasa saja", "makanan ini enak"]


def _run(*args, stdin: str | bytes | None = None) -> subprocess.CompletedProcess:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
  return subprocess.run(
    [sys.executable, "-m", *args],
    cwd=REPO_ROOT,
    env=env,
    input=stdin.encode() if isinstance(stdin, str) else stdin,
    capture_output=True,
    timeout=300,
  )


def _error_lines(result) -> list[str]:
  return [line for line in result.stderr.decode().splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
  """A tiny CNN and a tiny string-input LSTM, saved as .keras files."""
  folder = tmp_path_factory.mktemp("keras")
  keras.utils.set_random_seed(0)
  cnn = keras.Sequential(
    [
      keras.Input((8, 8, 3)),
      L.Conv2D(4, 3, activation="relu", name="conv"),
      L.Flatten(),
      L.Dense(3, activation="softmax"),
    ],
    name="tiny_cnn",
  )
  vectorizer = L.TextVectorization()
  vectorizer.adapt(TEXTS)
  text = keras.Sequential(
    [
      keras.Input((), dtype="string"),
      vectorizer,
      L.Embedding(vectorizer.vocabulary_size(), 8, mask_zero=True),
      L.LSTM(4),
      L.Dense(3, activation="softmax"),
    ],
    name="tiny_text",
  )
  # EinsumDense has no converter: a built-in class, so the file loads anywhere.
  custom = keras.Sequential(
    [keras.Input((4,)), L.EinsumDense("ab,bc->ac", output_shape=3, name="einsum"), L.Dense(2)],
    name="custom",
  )
  paths = {}
  for name, model in (("cnn", cnn), ("text", text), ("custom", custom)):
    paths[name] = folder / f"{name}.keras"
    model.save(paths[name])
  paths["text_model"] = text
  return paths


@pytest.fixture(scope="module")
def ported(keras_files, tmp_path_factory):
  """Both models ported by the command (generated and file check inputs)."""
  folder = tmp_path_factory.mktemp("ported")
  texts = folder / "texts.txt"
  texts.write_text("\n".join(TEXTS) + "\nkata baru\n", encoding="utf-8")
  cnn = _run("port.cli", str(keras_files["cnn"]), str(folder / "cnn"))
  text = _run("port.cli", str(keras_files["text"]), str(folder / "text"), f"--check_inputs={texts}")
  return {"cnn": cnn, "text": text, "dir": folder, "texts": texts}


def test_port_prints_summary_checks_parity_and_saves(ported):
  for name in ("cnn", "text"):
    result = ported[name]
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    out = result.stdout.decode()
    assert "Total params" in out and "argmax agreement 100.00%" in out and "-> ok" in out
    assert "from float64: port " in out and f"saved: {ported['dir'] / name}" in out
  assert "parity on 5 rows" in ported["text"].stdout.decode()  # the --check_inputs file
  assert "parity on 16 rows" in ported["cnn"].stdout.decode()  # generated


def test_predict_npy_to_npy_matches_the_saved_model(ported, tmp_path):
  x = np.random.default_rng(1).random((7, 8, 8, 3), dtype=np.float32)
  np.save(tmp_path / "x.npy", x)
  result = _run(
    "jaxnets.cli",
    str(ported["dir"] / "cnn"),
    f"--input={tmp_path / 'x.npy'}",
    f"--output={tmp_path / 'y.npy'}",
    "--batch_size=4",
    "--device=cpu",
    "--progress_rows=3",  # 7 rows in chunks of 3: the progress line shows
  )
  assert result.returncode == 0, result.stderr.decode()[-2000:]
  assert "predict: 7/7 rows" in result.stderr.decode()
  expected = jaxnets.load(ported["dir"] / "cnn").predict(x)
  np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=0, atol=1e-6)


def test_predict_text_file_and_stdin_print_rows(ported, keras_files):
  model_dir = str(ported["dir"] / "text")
  expected = np.asarray(keras_files["text_model"].predict(np.asarray(TEXTS, object), verbose=0))
  from_file = _run("jaxnets.cli", model_dir, f"--input={ported['texts']}")
  from_stdin = _run("jaxnets.cli", model_dir, "--input=-", stdin="\n".join(TEXTS) + "\n")
  for result in (from_file, from_stdin):
    assert result.returncode == 0, result.stderr.decode()[-2000:]
  printed = np.loadtxt(from_file.stdout.decode().splitlines())
  assert printed.shape == (5, 3)
  texts = np.asarray(TEXTS, object)
  model = keras_files["text_model"]
  parity.assert_outputs_match(model, printed[:4], texts, keras_outputs=expected)
  from_stdin_rows = np.loadtxt(from_stdin.stdout.decode().splitlines())[:4]
  parity.assert_outputs_match(model, from_stdin_rows, texts, keras_outputs=expected)


@pytest.mark.parametrize("module", ["port.cli", "jaxnets.cli"])
def test_help_describes_the_command(module):
  result = _run(module, "--help")
  assert result.returncode == 0
  out = result.stdout.decode()
  assert "Exit codes" in out
  assert ("--check_inputs" if module == "port.cli" else "--input") in out


def test_an_unsupported_model_exits_2_listing_the_layer(keras_files, tmp_path):
  result = _run("port.cli", str(keras_files["custom"]), str(tmp_path / "out"))
  assert result.returncode == 2
  err = result.stderr.decode()
  assert "1 refused layer(s)" in err and "- einsum (EinsumDense): no jaxnets converter" in err
  assert not (tmp_path / "out").exists()


def test_bad_inputs_exit_1_naming_the_culprit(ported, keras_files, tmp_path):
  (tmp_path / "bad.npy").write_bytes(b"not an array")
  cases = [
    (("port.cli", str(tmp_path / "missing.keras"), str(tmp_path / "o")), "missing.keras"),
    (("port.cli", str(keras_files["cnn"])), "positional"),
    (
      ("port.cli", str(keras_files["cnn"]), str(tmp_path / "o"), f"--check_inputs={tmp_path}"),
      "--check_inputs",
    ),
    (("jaxnets.cli", str(ported["dir"] / "cnn"), f"--input={ported['texts']}"), "texts.txt"),
    (("jaxnets.cli", str(ported["dir"] / "cnn"), f"--input={tmp_path / 'bad.npy'}"), "bad.npy"),
    (("jaxnets.cli", str(ported["dir"] / "cnn")), "--input is required"),
    (("jaxnets.cli", str(tmp_path), f"--input={ported['texts']}"), "architecture.json"),
    (("jaxnets.cli", str(ported["dir"] / "cnn"), "--input=x.npy", "--batch_size=0"), "batch_size"),
  ]
  for args, culprit in cases:
    result = _run(*args)
    assert result.returncode == 1, (args, result.stderr.decode()[-2000:])
    assert culprit in result.stderr.decode(), (args, result.stderr.decode()[-2000:])


def test_predict_exits_2_on_a_folder_jaxnets_cannot_load(ported, tmp_path):
  broken = tmp_path / "broken"
  shutil.copytree(ported["dir"] / "cnn", broken)
  architecture = json.loads((broken / "architecture.json").read_text(encoding="utf-8"))
  architecture["layers"][0]["class"] = "NoSuchLayer"
  (broken / "architecture.json").write_text(json.dumps(architecture), encoding="utf-8")
  result = _run("jaxnets.cli", str(broken), f"--input={ported['texts']}")
  assert result.returncode == 2
  [line] = _error_lines(result)
  assert "NoSuchLayer" in line


def test_a_graph_with_two_inputs_and_outputs_is_checked_on_each(tmp_path):
  """Generated inputs per input (token ids below the reading Embedding's size),
  a .npz archive by input name, every output compared."""
  import port  # pylint: disable=import-outside-toplevel

  # parity_check, not cli: importing cli would define its flags in this process.
  from port import parity_check  # pylint: disable=import-outside-toplevel

  L = keras.layers
  image = keras.Input((5, 3), name="image")
  tokens = keras.Input((4,), dtype="int32", name="tokens")
  a = L.Flatten()(L.Dense(4, activation="relu")(image))
  b = L.Flatten()(L.Embedding(7, 2)(tokens))
  joined = L.Concatenate()([a, b])
  model = keras.Model(
    [image, tokens],
    [L.Dense(3, activation="softmax", name="kind")(joined), L.Dense(1, name="score")(joined)],
  )
  ported = port.load(model)
  generated = parity_check.generated_inputs(ported, rows=8, length=4, seed=0)
  assert [g.shape for g in generated] == [(8, 5, 3), (8, 4)]
  assert generated[1].max() < 7
  assert "argmax agreement 100.00%" in parity_check.check_parity(model, ported, generated)
  archive = tmp_path / "x.npz"
  np.savez(archive, image=generated[0], tokens=generated[1])
  read = parity_check.read_check_inputs(str(archive), ported)
  assert "parity on 8 rows" in parity_check.check_parity(model, ported, read)
  np.save(tmp_path / "x.npy", generated[0])
  with pytest.raises(parity_check.CheckError, match=r"takes 2 inputs.*\.npz"):
    parity_check.read_check_inputs(str(tmp_path / "x.npy"), ported)
  np.savez(archive, image=generated[0])
  with pytest.raises(parity_check.CheckError, match=r"lacks array\(s\) \['tokens'\]"):
    parity_check.read_check_inputs(str(archive), ported)


# ------------------------------------ the check catches NaN (issue 27, case 5)
def _dense_pair():
  keras = pytest.importorskip("keras")
  import port  # pylint: disable=import-outside-toplevel

  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
  parity.randomize_weights(model, seed=2)
  return model, port.load(model)


def test_the_check_fails_a_port_that_returns_nan():
  """``max(0.0, nan)`` is 0.0: the old check let a NaN port through."""
  from port import parity_check  # pylint: disable=import-outside-toplevel

  model, ported = _dense_pair()
  params = {k: dict(v) for k, v in ported.params.items()}
  name = next(iter(params))
  params[name]["bias"] = np.full_like(np.asarray(params[name]["bias"]), np.nan)
  broken = ported.replace(params=params)
  x = np.random.default_rng(0).random((6, 4), dtype=np.float32)
  assert "-> ok" in parity_check.check_parity(model, ported, x)
  with pytest.raises(parity_check.CheckError, match="another kind"):
    parity_check.check_parity(model, broken, x)


def test_check_inputs_that_verify_nothing_are_refused():
  from port import parity_check  # pylint: disable=import-outside-toplevel

  model, ported = _dense_pair()
  with pytest.raises(parity_check.CheckError, match="verifies nothing"):
    parity_check.check_parity(model, ported, np.full((5, 4), np.nan, np.float32))
  with pytest.raises(parity_check.CheckError, match="no rows"):
    parity_check.check_parity(model, ported, np.zeros((0, 4), np.float32))


def test_check_input_rows_match_lines_like_predict(tmp_path):
  """``--check_inputs`` reads a text file as jaxnets-predict does: one row per line."""
  from port import parity_check  # pylint: disable=import-outside-toplevel

  keras = pytest.importorskip("keras")
  import port  # pylint: disable=import-outside-toplevel

  vectorizer = keras.layers.TextVectorization(max_tokens=10, output_sequence_length=4)
  vectorizer.adapt(np.asarray(["saya suka", "tidak"], dtype=object))
  model = keras.Sequential(
    [keras.Input((1,), dtype="string"), vectorizer, keras.layers.Embedding(10, 2)]
  )
  path = tmp_path / "texts.txt"
  path.write_bytes("\ufeffsaya\u2028suka\rtidak\r\nsaya\n".encode())
  rows = parity_check.read_check_inputs(str(path), port.load(model))
  assert list(rows) == ["saya\u2028suka\rtidak", "saya"]
