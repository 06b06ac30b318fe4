"""Round-2 faults (issue 27): nothing touched outside its target, no input kills the process.

Each test reproduces one case of the probe: a save/export/port that deleted a
user's files, a ``.lock`` symlink that made a run write through it, a folder
declaring a huge array, a damaged export, a resume that stuck on a damaged
record, CLI rows that did not match input lines, a text model that ``str()``-ed
what it should refuse, several outputs, and bare tracebacks. The cases that
could crash the interpreter run in a subprocess.
"""

import json
import os
import pathlib
import stat
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxnets
from jaxnets import export as export_lib
from jaxnets import saving
from jaxnets.layers import core, embedding, pooling, shape
from tests.conftest import REPO_ROOT
from train import workdir as workdir_lib

X = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
VOCABULARY = ("", "[UNK]", "saya", "suka", "makanan", "ini")


def _dense_model(units: int = 2, seed: int = 0) -> jaxnets.Model:
  layer = core.Dense(name="dense", units=units, activation="softmax")
  return jaxnets.Model(
    [layer], {"dense": layer.init(jax.random.key(seed), (4,))}, input_shape=(4,), name="dense"
  )


def _text_model() -> jaxnets.Model:
  layers = [
    embedding.Embedding(name="embedding", input_dim=len(VOCABULARY), output_dim=3),
    pooling.GlobalAveragePooling1D(name="pool"),
    core.Dense(name="dense", units=2, activation="softmax"),
  ]
  params = {
    "embedding": layers[0].init(jax.random.key(1), (None,)),
    "dense": layers[2].init(jax.random.key(2), (3,)),
  }
  vectorizer = jaxnets.text.TextVectorizer(vocabulary=VOCABULARY)
  return jaxnets.Model(
    layers, params, input_shape=(None,), input_dtype="string", preprocessor=vectorizer
  )


def _python(code: str, *args: str, stdin=None, env=None) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-c", code, *args],
    cwd=REPO_ROOT,
    env=dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", **(env or {})),
    input=stdin,
    capture_output=True,
    timeout=300,
  )


def _predict(*args: str, stdin: bytes | None = None, **kwargs) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", "jaxnets.cli", *args],
    cwd=REPO_ROOT,
    env=dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3"),
    input=stdin,
    capture_output=True,
    timeout=300,
    **kwargs,
  )


def _one_error_line(result: subprocess.CompletedProcess) -> str:
  """The command failed with one ``error:`` line and no traceback."""
  err = result.stderr.decode()
  assert result.returncode in (1, 2), (result.returncode, err[-2000:])
  assert "Traceback" not in err, err[-2000:]
  lines = [line for line in err.splitlines() if line.startswith("error:")]
  assert len(lines) == 1, err[-2000:]
  return lines[0]


# ------------------------------------------------- 1. nothing deleted outside the target


@pytest.mark.parametrize("writer", ["save", "export"])
def test_a_model_folder_holding_user_files_is_refused_and_kept(tmp_path, writer):
  folder = tmp_path / "m"
  getattr(_dense_model(seed=0), writer)(folder)
  (folder / "labels.txt").write_text("cat\ndog\n")
  (folder / "docs").mkdir()
  (folder / "docs" / "notes.md").write_text("mine")
  with pytest.raises(ValueError, match="holds other files") as info:
    getattr(_dense_model(seed=1), writer)(folder)
  assert "docs" in str(info.value)
  assert (folder / "labels.txt").read_text() == "cat\ndog\n"
  assert (folder / "docs" / "notes.md").read_text() == "mine"


@pytest.mark.parametrize(
  "writer, marker",
  [("save", saving.ARCHITECTURE_FILE), ("export", export_lib.META_FILE)],
)
def test_a_folder_with_a_foreign_marker_file_is_not_wiped(tmp_path, writer, marker):
  folder = tmp_path / "project"
  folder.mkdir()
  (folder / marker).write_text('{"mine": true}')
  with pytest.raises(ValueError, match=f"its {marker} was not written by jaxnets"):
    getattr(_dense_model(), writer)(folder)
  assert (folder / marker).read_text() == '{"mine": true}'


def test_saving_to_the_working_directory_is_refused(tmp_path, monkeypatch):
  folder = pathlib.Path(_dense_model().save(tmp_path / "m"))
  monkeypatch.chdir(folder)
  with pytest.raises(saving.SavedModelError, match="working directory"):
    _dense_model(seed=1).save(".")
  assert jaxnets.load(folder).name == "dense"


def test_port_refuses_a_foreign_out_dir_before_any_work(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  (out / "architecture.json").write_text("{}")
  (out / "labels.txt").write_text("mine")
  result = subprocess.run(
    [sys.executable, "-m", "port.cli", str(tmp_path / "missing.keras"), str(out)],
    cwd=REPO_ROOT,
    env=dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3"),
    capture_output=True,
    timeout=300,
  )
  line = _one_error_line(result)
  assert "OUT_DIR" in line and "labels.txt" in line  # checked before the missing model file
  assert sorted(p.name for p in out.iterdir()) == ["architecture.json", "labels.txt"]


# --------------------------------------------------------- 2. no write through a link


def test_a_lock_symlink_is_refused_and_its_target_untouched(tmp_path):
  victim = tmp_path / "precious.txt"
  victim.write_text("keep me")
  workdir = tmp_path / "runs"
  workdir.mkdir()
  (workdir / workdir_lib.LOCK_FILE).symlink_to(victim)
  with pytest.raises(workdir_lib.WorkdirError, match="symbolic link"):
    with workdir_lib.WorkdirLock(workdir):
      pass
  assert victim.read_text() == "keep me"


def test_predict_output_is_never_written_through_a_symlink(tmp_path):
  folder = _dense_model().save(tmp_path / "m")
  np.save(tmp_path / "x.npy", X)
  victim = tmp_path / "precious.txt"
  victim.write_text("keep me")
  (tmp_path / "y.npy").symlink_to(victim)
  result = _predict(folder, f"--input={tmp_path / 'x.npy'}", f"--output={tmp_path / 'y.npy'}")
  assert "symbolic link" in _one_error_line(result)
  assert victim.read_text() == "keep me"


# ------------------------------------------------ 3. sizes checked before allocating


def _declare_huge_kernel(folder: str) -> None:
  """Rewrites the checkpoint's own metadata of dense/kernel to (4, 4e9)."""
  ts = pytest.importorskip("tensorstore")
  base = pathlib.Path(folder, saving.PARAMS_DIR).as_uri() + "/"
  kv = ts.KvStore.open({"driver": "ocdbt", "base": base}).result()
  zarray = json.loads(kv.read(b"dense.kernel/.zarray").result().value)
  zarray["shape"] = [4, 4 * 10**9]
  kv.write(b"dense.kernel/.zarray", json.dumps(zarray).encode()).result()


_LOAD = (
  "import sys, jaxnets\n"
  "try:\n"
  "  jaxnets.load(sys.argv[1])\n"
  "except ValueError as e:\n"
  "  print('refused:', e)\n"
)


@pytest.mark.parametrize("manifest", ["kept", "edited", "absent"])
def test_a_folder_declaring_a_huge_array_is_refused_before_restoring(tmp_path, manifest):
  folder = _dense_model().save(tmp_path / "m")
  _declare_huge_kernel(folder)
  arch_path = pathlib.Path(folder, saving.ARCHITECTURE_FILE)
  arch = json.loads(arch_path.read_text())
  if manifest == "edited":  # both parts agree: the layers still say (4, 2)
    arch["params_manifest"]["dense/kernel"] = [[4, 4 * 10**9], "float32"]
  elif manifest == "absent":  # a format-1 folder has neither manifest nor digest
    arch = dict(arch, format_version=1)
    del arch["params_manifest"], arch["params_digest"]
  arch_path.write_text(json.dumps(arch))
  result = _python(_LOAD, folder)
  assert result.returncode == 0, result.stderr.decode()[-2000:]
  out = result.stdout.decode()
  assert "refused:" in out and folder in out and "dense" in out and "4000000000" in out, out


def test_an_architecture_nested_200k_deep_is_a_clear_error(tmp_path):
  folder = tmp_path / "m"
  folder.mkdir()
  (folder / saving.ARCHITECTURE_FILE).write_text("[" * 200_000 + "]" * 200_000)
  with pytest.raises(saving.SavedModelError, match="nested too deeply"):
    jaxnets.load(folder)


# ---------------------------------------------------- 4. export folders validated


@pytest.fixture
def exported(tmp_path):
  return pathlib.Path(_dense_model().export(tmp_path / "e"))


def test_an_export_carries_digests_of_its_files(exported):
  meta = json.loads((exported / export_lib.META_FILE).read_text())
  assert set(meta["digests"]) == {export_lib.EXPORT_FILE, export_lib.PARAMS_FILE}
  np.testing.assert_allclose(
    jaxnets.load_exported(exported).predict(X), _dense_model().predict(X), atol=1e-6
  )


def test_one_changed_byte_in_the_stablehlo_is_refused_before_deserialising(exported):
  path = exported / export_lib.EXPORT_FILE
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(data))
  code = (
    "import sys, numpy as np, jaxnets\n"
    "try:\n"
    "  jaxnets.load_exported(sys.argv[1]).predict(np.zeros((2, 4), np.float32))\n"
    "except ValueError as e:\n"
    "  print('refused:', e)\n"
  )
  result = _python(code, str(exported))
  assert result.returncode == 0, result.stderr.decode()[-2000:]
  out = result.stdout.decode()
  assert "refused:" in out and str(exported) in out and export_lib.EXPORT_FILE in out, out


def _edit_meta(folder: pathlib.Path, edit) -> None:
  path = folder / export_lib.META_FILE
  path.write_text(json.dumps(edit(json.loads(path.read_text()))))


@pytest.mark.parametrize(
  "damage, part",
  [
    (lambda f: (f / export_lib.PARAMS_FILE).write_bytes(b"PK\x03\x04 truncated"), "params.npz"),
    (lambda f: (f / export_lib.META_FILE).write_bytes(b"\xff\xfe not json"), "export.json"),
    (lambda f: (f / export_lib.META_FILE).write_text("[1, 2]"), "export.json"),
    (lambda f: _edit_meta(f, lambda m: dict(m, param_paths=7)), "param_paths"),
    (lambda f: _edit_meta(f, lambda m: dict(m, input_shape=[-1])), "input_shape"),
    (lambda f: _edit_meta(f, lambda m: dict(m, preprocessor={"x": 1})), "input_dtype"),
    (
      lambda f: _edit_meta(f, lambda m: {k: v for k, v in m.items() if k != "preprocessor"}),
      "preprocessor",
    ),
    (
      lambda f: _edit_meta(f, lambda m: dict(m, param_paths=[["dense", "kernel"]] * 2)),
      "param_paths",
    ),
    (lambda f: _edit_meta(f, lambda m: dict(m, input_shape=[5])), "input_shape"),
    (lambda f: (f / export_lib.EXPORT_FILE).unlink(), "missing forward.jaxexport"),
  ],
)
def test_a_damaged_export_is_an_error_naming_folder_and_part(exported, damage, part):
  damage(exported)
  with pytest.raises(export_lib.ExportedModelError, match=part) as info:
    jaxnets.load_exported(exported)
  assert str(exported) in str(info.value)


def test_an_npz_header_declaring_a_huge_array_is_refused_before_reading(exported):
  """Even with the digest updated to match, the header must fit the signature."""
  import zipfile  # pylint: disable=import-outside-toplevel

  path = exported / export_lib.PARAMS_FILE
  with zipfile.ZipFile(path) as archive:
    members = {name: archive.read(name) for name in archive.namelist()}
  array = np.lib.format.read_array(__import__("io").BytesIO(members["arr_1.npy"]))
  header = {"descr": "<f4", "fortran_order": False, "shape": (4, 7 * 10**9)}
  buffer = __import__("io").BytesIO()
  np.lib.format.write_array_header_1_0(buffer, header)
  members["arr_1.npy"] = buffer.getvalue() + array.tobytes()
  with zipfile.ZipFile(path, "w") as archive:
    for name, data in members.items():
      archive.writestr(name, data)
  _edit_meta(
    exported,
    lambda m: dict(m, digests=dict(m["digests"], **{"params.npz": export_lib._sha256(path)})),
  )
  with pytest.raises(export_lib.ExportedModelError, match=r"arr_1 .*7000000000"):
    jaxnets.load_exported(exported)


# ------------------------------------------- 6. resume redoes a record that fails


def _finished_run(run_dir: pathlib.Path) -> dict:
  record = {
    "variant": "base",
    "seed": 0,
    "run_key": "k",
    "versions": {"jax": "x"},
    "wall_time_s": 1.0,
    "reused_from": None,
    "test": {
      k: 0.5
      for k in (
        "keras_macro_f1",
        "keras_accuracy",
        "keras_infer_s",
        "port_infer_s",
        "port_macro_f1",
        "agreement_pct",
        "max_abs_diff",
      )
    },
    "train": {"epochs_run": 2, "best_epoch": 1, "best_val_loss": 0.3, "train_time_s": 1.0},
  }
  run_dir.mkdir(parents=True)
  (run_dir / "result.json").write_text(json.dumps(record))
  (run_dir / "history.json").write_text(json.dumps({"loss": [1.0, 0.5], "val_loss": [1, 0.7]}))
  return record


def _read(run_dir):
  return workdir_lib.read_record(run_dir, "result.json", "history.json")


@pytest.mark.parametrize(
  "damage",
  [
    lambda d: (d / "result.json").write_text((d / "result.json").read_text()[:40]),
    lambda d: (d / "result.json").write_text("[1, 2]"),
    lambda d: (d / "result.json").write_text(
      (d / "result.json").read_text().replace('"keras_macro_f1": 0.5', '"keras_macro_f1": "hi"')
    ),
    lambda d: (d / "history.json").write_text('{"loss": [1.0, '),
    lambda d: (d / "history.json").write_text('{"loss": "high"}'),
  ],
  ids=["truncated", "a-list", "non-numeric-score", "truncated-history", "bad-history"],
)
def test_a_record_that_does_not_validate_makes_the_run_unfinished(tmp_path, damage):
  run_dir = tmp_path / "seed0"
  record = _finished_run(run_dir)
  assert _read(run_dir) == record
  damage(run_dir)
  assert _read(run_dir) is None
  assert not (run_dir / "result.json").exists()  # so train_and_check redoes the run
  assert (run_dir / ("result.json" + workdir_lib.DAMAGED_SUFFIX)).exists()


def test_the_runner_reads_records_through_the_validation(tmp_path):
  runner = pytest.importorskip("train.runner")
  run_dir = tmp_path / "seed0"
  _finished_run(run_dir)
  (run_dir / "result.json").write_text('{"variant": "base", "se')
  assert runner.read_result(run_dir) is None
  assert not (run_dir / runner.RESULT_FILE).exists()


def test_a_run_directory_that_is_a_file_is_named(tmp_path):
  (tmp_path / "seed0").write_text("not a folder")
  with pytest.raises(workdir_lib.WorkdirError, match="seed0 should be a run directory"):
    _read(tmp_path / "seed0")


# ------------------------------------------------------- 7. rows match input lines


@pytest.fixture
def text_folder(tmp_path):
  return _text_model().save(tmp_path / "text")


def test_predict_rows_match_input_lines(text_folder, tmp_path):
  lines = ["saya suka\u2028makanan", "ini\x85saya\x0csuka", "", "makanan ini\r"]
  path = tmp_path / "texts.txt"
  path.write_bytes(("\ufeff" + "\n".join(lines) + "\n").encode())
  result = _predict(text_folder, f"--input={path}")
  assert result.returncode == 0, result.stderr.decode()[-2000:]
  rows = result.stdout.decode().splitlines()
  assert len(rows) == 4
  expected = _text_model().predict(
    ["saya suka\u2028makanan", "ini\x85saya\x0csuka", "", "makanan ini"]
  )
  np.testing.assert_allclose(np.loadtxt(rows), expected, atol=1e-6)


def test_a_bom_is_not_part_of_the_first_token(text_folder):
  result = _predict(text_folder, "--input=-", stdin="\ufeffsaya suka\n".encode())
  assert result.returncode == 0, result.stderr.decode()[-2000:]
  expected = _text_model().predict(["saya suka"])
  np.testing.assert_allclose(
    np.loadtxt(result.stdout.decode().splitlines()), expected[0], atol=1e-6
  )


def test_undecodable_stdin_is_refused_like_a_file(text_folder):
  result = _predict(text_folder, "--input=-", stdin="caf\u00e9 enak\n".encode("latin-1"))
  assert "stdin is not UTF-8" in _one_error_line(result)


# ---------------------------------------------- 8. the exported text model refuses


@pytest.mark.parametrize("bad", [None, 3, 2.5, ["saya"]])
def test_the_exported_text_model_refuses_what_is_not_text(tmp_path, bad):
  exported_text = jaxnets.load_exported(_text_model().export(tmp_path / "e"))
  with pytest.raises(jaxnets.InputError, match="item 1"):
    exported_text.predict(["saya suka", bad])


def test_the_exported_text_model_reads_bytes_as_the_live_one(tmp_path):
  model = _text_model()
  exported_text = jaxnets.load_exported(model.export(tmp_path / "e"))
  np.testing.assert_allclose(
    exported_text.predict([b"saya suka", "ini"]), model.predict(["saya suka", "ini"]), atol=1e-6
  )
  with pytest.raises(jaxnets.InputError, match="no strings"):
    exported_text.predict([])


# --------------------------------------------------------------- 9. several outputs


@pytest.fixture(scope="module")
def two_outputs(tmp_path_factory):
  keras = pytest.importorskip("keras")
  port = pytest.importorskip("port")
  inputs = keras.Input((4,), name="x")
  hidden = keras.layers.Dense(3, name="hidden")(inputs)
  model = keras.Model(
    inputs,
    [keras.layers.Dense(2, name="left")(hidden), keras.layers.Dense(5, name="right")(hidden)],
  )
  ported = port.load(model)
  folder = tmp_path_factory.mktemp("two") / "m"
  ported.save(folder)
  return folder, ported


def test_several_outputs_go_to_an_npz_keyed_by_output_name(two_outputs, tmp_path):
  folder, ported = two_outputs
  np.save(tmp_path / "x.npy", X)
  result = _predict(folder, f"--input={tmp_path / 'x.npy'}", f"--output={tmp_path / 'y.npz'}")
  assert result.returncode == 0, result.stderr.decode()[-2000:]
  expected = ported.predict(X)
  with np.load(tmp_path / "y.npz", allow_pickle=False) as got:
    assert sorted(got.files) == ["left", "right"]
    np.testing.assert_allclose(got["left"], expected[0], atol=1e-6)
    np.testing.assert_allclose(got["right"], expected[1], atol=1e-6)


@pytest.mark.parametrize("output", ["y.npy", "-"])
def test_several_outputs_to_one_array_are_refused_before_predicting(two_outputs, tmp_path, output):
  folder, _ = two_outputs
  np.save(tmp_path / "x.npy", X)
  target = output if output == "-" else str(tmp_path / output)
  result = _predict(folder, f"--input={tmp_path / 'x.npy'}", f"--output={target}")
  assert ".npz" in _one_error_line(result)
  assert not (tmp_path / "y.npy").exists()


# --------------------------------------------- 10. one error line, never a traceback


def test_bad_arrays_and_closed_streams_give_one_error_line(tmp_path):
  folder = _dense_model().save(tmp_path / "m")
  np.save(tmp_path / "scalar.npy", np.float32(1.0))
  header = {"descr": "<f4", "fortran_order": False, "shape": (7 * 2**30, 4)}  # 28 GiB
  with open(tmp_path / "huge.npy", "wb") as f:
    np.lib.format.write_array_header_1_0(f, header)
    f.write(b"\0" * 64)
  np.save(tmp_path / "x.npy", X)
  cases = [
    (dict(args=[f"--input={tmp_path / 'scalar.npy'}"]), "0-d"),
    (dict(args=[f"--input={tmp_path / 'huge.npy'}"]), "declares"),
    (dict(args=["--input=-"], stdin=subprocess.DEVNULL), "stdin"),
    (dict(args=["--input=-"], stdin=open(tmp_path / "huge.npy", "rb")), "declares"),
  ]
  for kwargs, message in cases:
    stdin = kwargs.get("stdin")
    result = subprocess.run(
      [sys.executable, "-m", "jaxnets.cli", folder, *kwargs["args"]],
      cwd=REPO_ROOT,
      env=dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3"),
      stdin=stdin,
      capture_output=True,
      timeout=300,
    )
    assert message in _one_error_line(result), kwargs
  for redirect, args, message in [
    ("<&-", ["--input=-"], "stdin is closed"),
    (">&-", [f"--input={tmp_path / 'x.npy'}"], "stdout is closed"),
  ]:
    closed = subprocess.run(
      ["bash", "-c", f'exec "$@" {redirect}', "_", sys.executable, "-m", "jaxnets.cli", folder]
      + args,
      cwd=REPO_ROOT,
      env=dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3"),
      capture_output=True,  # bash closes the stream before the command starts
      timeout=300,
    )
    assert message in _one_error_line(closed)


def test_a_layer_asking_for_terabytes_is_one_error_line(tmp_path):
  layers = [core.Dense(name="dense", units=2), shape.RepeatVector(name="repeat", n=3)]
  params = {"dense": layers[0].init(jax.random.key(0), (4,))}
  folder = jaxnets.Model(layers, params, input_shape=(4,)).save(tmp_path / "m")
  arch_path = pathlib.Path(folder, saving.ARCHITECTURE_FILE)
  arch = json.loads(arch_path.read_text())
  arch["layers"][1]["config"]["n"] = 10**12
  arch_path.write_text(json.dumps(arch))
  np.save(tmp_path / "x.npy", X)
  line = _one_error_line(_predict(folder, f"--input={tmp_path / 'x.npy'}"))
  assert "memory" in line and folder in line


def test_an_export_dir_that_is_a_file_is_refused_before_any_work(tmp_path):
  (tmp_path / "results").write_text("a file")
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "train",
      "--family=mlp",
      "--study=recipe",
      f"--workdir={tmp_path / 'runs'}",
      f"--export_dir={tmp_path / 'results'}",
      f"--data_dir={tmp_path / 'no-data'}",
    ],
    cwd=REPO_ROOT,
    env=dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3"),
    capture_output=True,
    timeout=300,
  )
  err = result.stderr.decode()
  assert result.returncode == 1 and "--export_dir" in err and "a file" in err, err[-2000:]
  assert "loading data" not in result.stdout.decode()
  assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------- the poor ones


def test_saved_and_exported_folders_follow_the_umask(tmp_path):
  old = os.umask(0o022)
  try:
    saved = _dense_model().save(tmp_path / "m")
    exported_folder = _dense_model().export(tmp_path / "e")
  finally:
    os.umask(old)
  for folder in (saved, exported_folder):
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755, folder


def test_a_symlinked_target_is_saved_through_and_left_a_link(tmp_path):
  real = pathlib.Path(_dense_model(seed=0).save(tmp_path / "real"))
  (tmp_path / "link").symlink_to(real)
  new = _dense_model(seed=1)
  new.save(tmp_path / "link")
  assert (tmp_path / "link").is_symlink()
  np.testing.assert_array_equal(jaxnets.load(real).predict(X), new.predict(X))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_a_first_save_racing_another_first_save_replaces_it(tmp_path, monkeypatch):
  folder = tmp_path / "m"
  other = _dense_model(seed=0)
  real_rename = os.rename

  def rename_after_the_other_save(src, dst):
    if os.fspath(dst) == os.fspath(folder) and not os.path.exists(dst):
      monkeypatch.setattr(saving.os, "rename", real_rename)
      other.save(dst)  # the other first save wins the race
    return real_rename(src, dst)

  monkeypatch.setattr(saving.os, "rename", rename_after_the_other_save)
  new = _dense_model(seed=1)
  new.save(folder)
  np.testing.assert_array_equal(jaxnets.load(folder).predict(X), new.predict(X))


# ------------------------------------------------------------------------ quiet runs


def test_native_startup_notices_are_dropped_and_real_lines_kept():
  code = (
    "import os\n"
    "from jaxnets import cli_support\n"
    "with cli_support.filtered_native_stderr():\n"
    "  os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are "
    "written to STDERR\\n')\n"
    "  os.write(2, b'I0000 00:00:1 port.cc:153] oneDNN custom operations are on. You may\\n')\n"
    "  os.write(2, b'E0000 00:00:1 cuda_platform.cc:52] failed call to cuInit: INTERNAL\\n')\n"
    "  os.write(2, b'W0000 a real warning\\n')\n"
  )
  result = _python(code)
  assert result.returncode == 0
  assert result.stderr.decode() == "W0000 a real warning\n"


def test_port_prints_no_tensorflow_startup_lines(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  result = subprocess.run(
    [sys.executable, "-m", "port.cli", str(tmp_path / "missing.keras"), str(tmp_path / "out")],
    cwd=REPO_ROOT,
    env=dict(env, JAX_PLATFORMS="cpu"),
    capture_output=True,
    timeout=300,
  )
  assert result.returncode == 1
  assert result.stderr.decode().splitlines() == [
    f"error: no Keras model file at {str(tmp_path / 'missing.keras')!r}"
  ]


def test_fitting_on_the_text_pipeline_warns_nothing():
  keras = pytest.importorskip("keras")
  keras_inputs = pytest.importorskip("train.keras_inputs")
  texts = np.array(["saya suka", "makanan ini", "tidak enak", "biasa saja", "enak"] * 2, object)
  labels = np.array([0, 1] * 5)
  vectorizer = keras.layers.TextVectorization(output_sequence_length=3)
  vectorizer.adapt(texts)
  model = keras.Sequential(
    [
      keras.Input((), dtype="string"),
      vectorizer,
      keras.layers.Embedding(20, 2),
      keras.layers.Flatten(),
      keras.layers.Dense(2, activation="softmax"),
    ]
  )
  model.compile("adam", "sparse_categorical_crossentropy")
  import warnings  # pylint: disable=import-outside-toplevel

  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model.fit(
      **keras_inputs.fit_arguments(texts, labels, texts, labels, batch_size=4),
      epochs=2,
      verbose=0,
    )
  messages = [str(w.message) for w in caught]
  assert not [m for m in messages if "shuffle" in m or "ran out of data" in m], messages


def test_report_files_follow_the_umask(tmp_path):
  report = pytest.importorskip("train.report")
  old = os.umask(0o022)
  try:
    report.atomic_write(tmp_path / "results.md", b"table")
  finally:
    os.umask(old)
  assert stat.S_IMODE(os.stat(tmp_path / "results.md").st_mode) == 0o644


def test_a_reader_racing_a_save_reads_one_whole_model(tmp_path, monkeypatch):
  folder = _dense_model(seed=0).save(tmp_path / "m")
  new = _dense_model(seed=1)
  real_read_params = saving.read_params
  raced = []

  def save_in_between(directory, arch):
    if not raced:  # the save lands between the architecture and the params
      raced.append(True)
      new.save(directory)
    return real_read_params(directory, arch)

  monkeypatch.setattr(saving, "read_params", save_in_between)
  np.testing.assert_array_equal(jaxnets.load(folder).predict(X), new.predict(X))
  assert raced


def test_threads_saving_one_folder_each_leave_a_whole_model(tmp_path):
  import threading  # pylint: disable=import-outside-toplevel

  models = [_dense_model(seed=i) for i in range(6)]
  errors = []

  def save(model):
    try:
      model.save(tmp_path / "m")
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  threads = [threading.Thread(target=save, args=(m,)) for m in models]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join(120)
  assert not any(t.is_alive() for t in threads) and not errors, errors
  got = jaxnets.load(tmp_path / "m").predict(X)
  assert any(np.array_equal(got, m.predict(X)) for m in models)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
