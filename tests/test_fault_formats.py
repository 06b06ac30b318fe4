"""Generated bad inputs over the saved-folder, export-folder and CLI input formats.

Every mutation of a file jaxnets reads (a JSON value replaced or removed, a bit
flipped, a file truncated or removed, arbitrary bytes) must end in the format's
own error naming the folder, or in a model that loads and runs: never another
exception type, never a crash, never a huge allocation.

The default profile (``ci``) tries a few dozen cases per format; the long one
tries 1,000 or more:

    python -m pytest tests/test_fault_formats.py --hypothesis-profile=long
"""

import io
import json
import os
import pathlib
import shutil

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxnets
from jaxnets import cli_support
from jaxnets import export as export_lib
from jaxnets import saving
from jaxnets.layers import core, embedding, pooling

# Folder cases cost a load each (~0.1 s): a few dozen in the default profile,
# the profile's own count (>= 1,000) in the long one.
_PROFILE_EXAMPLES = settings.default.max_examples
FOLDER_EXAMPLES = _PROFILE_EXAMPLES if _PROFILE_EXAMPLES >= 1000 else 25
FOLDER_SETTINGS = settings(
  max_examples=FOLDER_EXAMPLES,
  deadline=None,
  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
VOCABULARY = ("", "[UNK]", "saya", "suka", "makanan")
X = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)


def _dense_model() -> jaxnets.Model:
  layer = core.Dense(name="dense", units=2, activation="softmax")
  return jaxnets.Model([layer], {"dense": layer.init(jax.random.key(0), (4,))}, input_shape=(4,))


def _text_model() -> jaxnets.Model:
  layers = [
    embedding.Embedding(name="embedding", input_dim=len(VOCABULARY), output_dim=3),
    pooling.GlobalAveragePooling1D(name="pool"),
    core.Dense(name="dense", units=2),
  ]
  params = {
    "embedding": layers[0].init(jax.random.key(1), (None,)),
    "dense": layers[2].init(jax.random.key(2), (3,)),
  }
  return jaxnets.Model(
    layers,
    params,
    input_shape=(None,),
    input_dtype="string",
    preprocessor=jaxnets.text.TextVectorizer(vocabulary=VOCABULARY),
  )


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
  root = tmp_path_factory.mktemp("originals")
  return {
    "saved": _dense_model().save(root / "saved"),
    "saved_text": _text_model().save(root / "saved_text"),
    "exported": _dense_model().export(root / "exported"),
    "exported_text": _text_model().export(root / "exported_text"),
  }


# ---------------------------------------------------------------- mutations

JSON_VALUES = st.recursive(
  st.none()
  | st.booleans()
  | st.integers(min_value=-(2**70), max_value=2**70)
  | st.floats(allow_nan=True, allow_infinity=True)
  | st.text(max_size=8),
  lambda inner: (
    st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
  ),
  max_leaves=6,
)


@st.composite
def json_edit(draw, document):
  """``document`` with one value somewhere in it replaced or removed."""
  document = json.loads(json.dumps(document))
  node, key = None, None
  current = document
  while isinstance(current, (dict, list)) and current and draw(st.booleans()):
    keys = list(current) if isinstance(current, dict) else list(range(len(current)))
    node, key = current, draw(st.sampled_from(keys))
    current = current[key]
  if node is None:
    return draw(JSON_VALUES)
  if isinstance(node, dict) and draw(st.booleans()):
    del node[key]
  else:
    node[key] = draw(JSON_VALUES)
  return document


def _files(folder: str) -> list[str]:
  return sorted(
    os.path.relpath(os.path.join(root, name), folder)
    for root, _, names in os.walk(folder)
    for name in names
  )


@st.composite
def folder_mutation(draw, folder: str, json_file: str):
  """A function that damages a copy of ``folder`` one way."""
  kind = draw(st.sampled_from(["json", "json", "flip", "truncate", "remove", "garbage"]))
  if kind == "json":
    with open(os.path.join(folder, json_file), encoding="utf-8") as f:
      edited = draw(json_edit(json.load(f)))
    return kind, lambda copy: pathlib.Path(copy, json_file).write_text(json.dumps(edited))
  name = draw(st.sampled_from(_files(folder)))
  size = os.path.getsize(os.path.join(folder, name))
  where = draw(st.integers(min_value=0, max_value=max(size - 1, 0)))
  bit = draw(st.integers(min_value=0, max_value=7))
  garbage = draw(st.binary(max_size=64))

  def damage(copy):
    path = pathlib.Path(copy, name)
    data = bytearray(path.read_bytes())
    if kind == "flip" and data:
      data[where] ^= 1 << bit
    elif kind == "truncate":
      data = data[:where]
    elif kind == "garbage":
      data = bytearray(garbage)
    if kind == "remove":
      path.unlink()
    else:
      path.write_bytes(bytes(data))

  return f"{kind} {name}", damage


def _damaged_copy(original: str, tmp_path: pathlib.Path, damage) -> str:
  copy = tmp_path / "copy"
  shutil.rmtree(copy, ignore_errors=True)
  shutil.copytree(original, copy)
  damage(copy)
  return os.fspath(copy)


def _inputs(text: bool):
  return ["saya suka", "makanan"] if text else X


# ---------------------------------------------------------------- the folders


@pytest.mark.parametrize("which", ["saved", "saved_text"])
@FOLDER_SETTINGS
@given(data=st.data())
def test_a_damaged_saved_folder_is_refused_by_name_or_runs(originals, tmp_path, which, data):
  original = originals[which]
  label, damage = data.draw(folder_mutation(original, saving.ARCHITECTURE_FILE))
  copy = _damaged_copy(original, tmp_path, damage)
  try:
    model = jaxnets.load(copy)
  except (saving.SavedModelError, FileNotFoundError) as e:
    assert copy in str(e), (label, str(e))
    return
  try:
    model.predict(_inputs(which == "saved_text"))
  except jaxnets.InputError:
    pass  # an edited input spec, named at predict


@pytest.mark.parametrize("which", ["exported", "exported_text"])
@FOLDER_SETTINGS
@given(data=st.data())
def test_a_damaged_export_folder_is_refused_by_name_or_runs(originals, tmp_path, which, data):
  original = originals[which]
  label, damage = data.draw(folder_mutation(original, export_lib.META_FILE))
  copy = _damaged_copy(original, tmp_path, damage)
  try:
    exported = jaxnets.load_exported(copy)
  except (export_lib.ExportedModelError, FileNotFoundError) as e:
    assert copy in str(e), (label, str(e))
    return
  expected = jaxnets.load_exported(original).predict(_inputs(which == "exported_text"))
  try:
    got = exported.predict(_inputs(which == "exported_text"))
  except jaxnets.InputError:
    return  # an edited input spec, named at predict
  if export_lib.META_FILE not in label and label != "json":
    # The digests cover both data files: what loads computes what was exported.
    # (export.json, like architecture.json, may be edited into another valid
    # model: a preprocessor's vocabulary, say.)
    np.testing.assert_array_equal(got, expected, err_msg=label)


# ------------------------------------------------------------- the CLI inputs

LINE = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=12)


@settings(deadline=None)
@given(lines=st.lists(LINE.filter(lambda s: not s.endswith("\r")), max_size=6), bom=st.booleans())
def test_text_rows_are_the_lines_split_on_newline_alone(lines, bom):
  data = (("\ufeff" if bom else "") + "".join(line + "\n" for line in lines)).encode()
  assert cli_support.text_rows(data, "t") == lines


@settings(deadline=None)
@given(data=st.binary(max_size=64))
def test_any_bytes_are_rows_or_a_named_error(data):
  try:
    rows = cli_support.text_rows(data, "texts.txt")
  except cli_support.BadInput as e:
    assert "texts.txt" in str(e) and "UTF-8" in str(e)
    return
  text = data.decode("utf-8").removeprefix("\ufeff")
  assert len(rows) == text.count("\n") + (not text.endswith("\n") and text != "")


def _npy_bytes(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  np.save(buffer, array)
  return buffer.getvalue()


@settings(deadline=None)
@given(
  shape=st.lists(st.integers(min_value=0, max_value=4), max_size=3),
  where=st.integers(min_value=0, max_value=200),
  value=st.integers(min_value=0, max_value=255),
  cut=st.integers(min_value=0, max_value=300),
)
def test_a_damaged_npy_is_an_array_or_a_named_error(shape, where, value, cut):
  data = bytearray(_npy_bytes(np.zeros(shape, np.float32)))
  if where < len(data):
    data[where] = value
  data = bytes(data[: max(cut, 1)] if cut < len(data) else data)
  try:
    array = cli_support.load_npy(io.BytesIO(data), len(data), "x.npy")
  except cli_support.BadInput as e:
    assert "x.npy" in str(e)
    return
  assert array.ndim >= 1 and array.nbytes <= len(data)
