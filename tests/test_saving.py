"""Saved model folders: replaced whole or not at all, loaded only when both parts agree."""

import errno
import json
import os
import shutil

import jax
import numpy as np
import pytest

import jaxnets
from jaxnets import saving
from jaxnets.layers import conv, core


def _model(units: int = 4, seed: int = 0, name: str = "small") -> jaxnets.Model:
  layers = [
    conv.Conv2D(name="conv", filters=3, kernel_size=(3, 3), padding="same", activation="relu"),
    core.Flatten(name="flatten"),
    core.Dense(name="dense", units=units, activation="softmax"),
  ]
  shapes = [(5, 5, 2), (5, 5, 3), (75,)]
  params = {
    layer.name: layer.init(jax.random.key(seed * 10 + i), shape)
    for i, (layer, shape) in enumerate(zip(layers, shapes))
  }
  params = {k: v for k, v in params.items() if v}
  return jaxnets.Model(layers, params, input_shape=(5, 5, 2), name=name)


X = np.random.default_rng(0).normal(size=(3, 5, 5, 2)).astype(np.float32)


def _no_staging_left(folder):
  parent = os.path.dirname(folder)
  return [e for e in os.listdir(parent) if ".saving-" in e] == []


def test_save_and_load_round_trip(tmp_path):
  model = _model()
  path = model.save(tmp_path / "m")
  np.testing.assert_array_equal(jaxnets.load(path).predict(X), model.predict(X))
  assert _no_staging_left(path)


@pytest.mark.parametrize("stage", ["params", "architecture"])
def test_a_failed_overwrite_leaves_the_old_model(tmp_path, monkeypatch, stage):
  old, new = _model(seed=0), _model(seed=1)
  path = old.save(tmp_path / "m")
  expected = old.predict(X)

  def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  if stage == "params":
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", disk_full)
  else:
    monkeypatch.setattr(saving.os, "fsync", disk_full)
  with pytest.raises(OSError, match="No space left"):
    new.save(path)
  np.testing.assert_array_equal(jaxnets.load(path).predict(X), expected)
  assert _no_staging_left(path)


def test_overwrite_replaces_the_whole_folder(tmp_path):
  path = _model(seed=0).save(tmp_path / "m")
  new = _model(units=6, seed=1)
  new.save(path)
  np.testing.assert_array_equal(jaxnets.load(path).predict(X), new.predict(X))
  assert _no_staging_left(path)


def test_parts_of_two_saves_do_not_load_as_one_model(tmp_path):
  a = _model(seed=0).save(tmp_path / "a")
  b = _model(seed=1).save(tmp_path / "b")
  shutil.rmtree(os.path.join(a, "params"))
  shutil.copytree(os.path.join(b, "params"), os.path.join(a, "params"))
  with pytest.raises(saving.SavedModelError, match=r"saved model .*a: params/ does not belong"):
    jaxnets.load(a)


def _edit(path, edit):
  arch_path = os.path.join(path, "architecture.json")
  with open(arch_path) as f:
    arch = json.load(f)
  arch = edit(arch)
  with open(arch_path, "w") as f:
    json.dump(arch, f)


def _set_option(layer_index, key, value):
  def edit(arch):
    arch["layers"][layer_index]["config"][key] = value
    return arch

  return edit


@pytest.mark.parametrize(
  "edit, message",
  [
    (
      _set_option(2, "units", 5),
      r"layer 'dense'/kernel: expected \(75, 5\) float32, found \(75, 4\)",
    ),
    (_set_option(0, "filters", 4), r"layer 'conv'/kernel: expected \(3, 3, 2, 4\)"),
    (_set_option(0, "kernel_size", [5, 5]), r"layer 'conv'/kernel: expected \(5, 5, 2, 3\)"),
    (_set_option(2, "use_bias", False), r"layer 'dense'/bias: unexpected weight"),
    (_set_option(2, "units", "4"), r"layers\[2\] \(Dense\): option units='4' is not of type int"),
    (_set_option(0, "strides", 1.5), r"layers\[0\] \(Conv2D\): option strides=1.5"),
    (_set_option(2, "colour", "red"), r"unknown option\(s\) colour for Dense"),
    (lambda arch: [arch], "the top level must be a JSON object"),
    (lambda arch: {k: v for k, v in arch.items() if k != "layers"}, "missing key 'layers'"),
    (lambda arch: dict(arch, input_shape=[5, "5", 2]), r"input_shape\[1\] must be a positive int"),
    (lambda arch: dict(arch, input_dtype="float64"), "input_dtype must be one of"),
    (lambda arch: dict(arch, layers=[1, 2]), r"layers\[0\] must be an object"),
    (lambda arch: dict(arch, format_version=99), "unsupported format_version 99"),
  ],
)
def test_an_edited_architecture_is_refused_naming_folder_layer_and_weight(tmp_path, edit, message):
  path = _model().save(tmp_path / "m")
  _edit(path, edit)
  with pytest.raises(saving.SavedModelError, match=message) as info:
    jaxnets.load(path)
  assert str(tmp_path / "m") in str(info.value)


def test_edited_params_digest_is_refused(tmp_path):
  path = _model().save(tmp_path / "m")
  _edit(path, lambda arch: dict(arch, params_digest="0" * 64))
  with pytest.raises(saving.SavedModelError, match="does not belong"):
    jaxnets.load(path)


@pytest.mark.parametrize(
  "change, message",
  [
    (
      lambda p: p["dense"].update(bias=np.zeros((1,), np.float32)),
      r"'dense'/bias: expected \(4,\) float32, found \(1,\)",
    ),
    (lambda p: p["dense"].pop("bias"), r"'dense'/bias: missing"),
    (lambda p: p["dense"].update(weights=p["dense"].pop("kernel")), r"'dense'/kernel: missing"),
    (lambda p: p.update(extra={"w": np.zeros(2)}), r"parameters for 'extra', which is not a layer"),
    (
      lambda p: p["conv"].update(kernel=np.zeros((3, 3, 2, 3), np.int32)),
      r"'conv'/kernel: expected \(3, 3, 2, 3\) float32, found \(3, 3, 2, 3\) int32",
    ),
  ],
)
def test_parameters_that_do_not_fit_the_layers_are_refused(change, message):
  model = _model()
  params = jax.tree_util.tree_map(np.asarray, model.params)
  change(params)
  with pytest.raises(ValueError, match=message):
    jaxnets.Model(model.layers, params, input_shape=model.input_shape, name="small")


def test_save_refuses_a_folder_holding_other_files(tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  with pytest.raises(saving.SavedModelError, match="holds other files"):
    _model().save(tmp_path)
  assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_format_1_folder_still_loads(tmp_path):
  model = _model()
  path = model.save(tmp_path / "m")
  _edit(
    path,
    lambda arch: {
      k: v
      for k, v in dict(arch, format_version=1).items()
      if k not in ("params_manifest", "params_digest")
    },
  )
  np.testing.assert_array_equal(jaxnets.load(path).predict(X), model.predict(X))


def test_a_missing_folder_points_at_an_interrupted_save(tmp_path):
  (tmp_path / ".m.saving-abc").mkdir()
  with pytest.raises(FileNotFoundError, match=r"interrupted save left .*\.m\.saving-abc"):
    jaxnets.load(tmp_path / "m")
