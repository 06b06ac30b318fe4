"""Multi-device inference: ``Model.predict`` shards each batch over every local
device and gives the one-device results.

JAX fixes the device count when it starts, so each configuration runs in a
fresh subprocess; ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` makes
four CPU devices. The models are built from jaxnets layers (no TensorFlow):
a small CNN and a masked 2 x Bidirectional LSTM text model (whose predict also
sorts rows by length and trims padding).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

SCRIPT = r"""
import json, sys
import numpy as np
import jax
import jaxnets
from jaxnets.layers import conv, core, embedding, pooling, recurrent


def cnn():
  layers = [
      conv.Conv2D(name="conv1", filters=8, kernel_size=(3, 3), padding="same", activation="relu"),
      pooling.MaxPooling2D(name="pool1", pool_size=(2, 2)),
      conv.Conv2D(name="conv2", filters=16, kernel_size=(3, 3), padding="same", activation="relu"),
      pooling.MaxPooling2D(name="pool2", pool_size=(2, 2)),
      core.Flatten(name="flatten"),
      core.Dense(name="dense", units=32, activation="relu"),
      core.Dropout(name="dropout", rate=0.5),
      core.Dense(name="out", units=10, activation="softmax")]
  shapes = [(16, 16, 3), (16, 16, 8), (8, 8, 8), (8, 8, 16), (4, 4, 16), (256,), (32,), (32,)]
  return layers, shapes, dict(input_shape=(16, 16, 3))


def lstm():
  # As Keras builds Bidirectional: zero_output_for_mask = return_sequences.
  def cell(name, sequences, backwards):
    return recurrent.LSTM(name=name, units=8, return_sequences=sequences,
                          go_backwards=backwards, zero_output_for_mask=sequences)
  layers = [
      embedding.Embedding(name="embedding", input_dim=50, output_dim=8, mask_zero=True),
      recurrent.Bidirectional(name="bi1", forward_layer=cell("f1", True, False),
                              backward_layer=cell("b1", True, True)),
      recurrent.Bidirectional(name="bi2", forward_layer=cell("f2", False, False),
                              backward_layer=cell("b2", False, True)),
      core.Dense(name="out", units=3, activation="softmax")]
  shapes = [(12,), (12, 8), (12, 16), (16,)]
  return layers, shapes, dict(input_shape=(12,), input_dtype="int32")


def build(make):
  layers, shapes, kwargs = make()
  params = {layer.name: layer.init(jax.random.key(i), shape)
            for i, (layer, shape) in enumerate(zip(layers, shapes))}
  return jaxnets.Model(layers, params, **kwargs)


rng = np.random.default_rng(0)
images = rng.uniform(size=(21, 16, 16, 3)).astype(np.float32)
tokens = rng.integers(1, 50, size=(21, 12)).astype(np.int32)
tokens[np.arange(12)[None, :] >= rng.integers(0, 13, size=21)[:, None]] = 0
report = {"devices": jax.local_device_count()}
arrays = {}
for name, make, x in (("cnn", cnn, images), ("lstm", lstm, tokens)):
  model = build(make)
  chunks = []
  # predict runs the guarded fast pass where a model has one (the CNN's max
  # pooling, jaxnets.guards), the exact pass otherwise: spy on both.
  def spy_on(forward):
    def spy(params, chunk):
      # One device: predict hands the jitted call the numpy chunk as it is.
      devices = len(chunk.sharding.device_set) if hasattr(chunk, "sharding") else 1
      chunks.append([int(chunk.shape[0]), devices])
      return forward(params, chunk)
    return spy
  model._forward = spy_on(model._forward)
  model._fast_forward = spy_on(model._fast_forward)
  for batch_size in (8, 6, 1):
    rows = x if batch_size > 1 else x[:3]
    arrays[f"{name}_b{batch_size}"] = model.predict(rows, batch_size=batch_size)
  report[name] = {"trimmed": bool(model.trims_padding), "chunks": chunks}
  if name == "cnn" and jax.local_device_count() == 4:
    # What each device computes for predict(x, 8): 2-row slices of the padded
    # batches, here run one by one on device 0 -- must be bit-identical.
    padded = np.concatenate([x, np.zeros((3,) + x.shape[1:], x.dtype)])
    single = jax.jit(lambda params, x: model.apply_fast(params, x)[0])
    arrays["cnn_per_device"] = np.concatenate(
        [np.asarray(single(model.params, jax.device_put(padded[i:i + 2], jax.devices()[0])))
         for i in range(0, len(padded), 2)])[:len(x)]
np.savez(sys.argv[1], **arrays)
print(json.dumps(report))
"""


def _run(tmp_path, devices: int):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  if devices > 1:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  out = tmp_path / f"devices{devices}.npz"
  done = subprocess.run(
    [sys.executable, "-c", SCRIPT, str(out)],
    cwd=REPO_ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout.strip().splitlines()[-1]), dict(np.load(out))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("multidevice")
  return _run(tmp_path, 1), _run(tmp_path, 4)


def test_four_devices_are_used_and_batches_padded_to_a_multiple_of_four(runs):
  (one, _), (four, _) = runs
  assert one["devices"] == 1 and four["devices"] == 4
  for name in ("cnn", "lstm"):
    chunks = four[name]["chunks"]
    # 21 rows: batch 8 -> 8, 8, 5 (padded to 8); batch 6 -> 6 x3 (padded to 8)
    # and 3 (to 4); three single rows -> each padded to 4.
    assert [rows for rows, _ in chunks] == [8, 8, 8, 8, 8, 8, 4, 4, 4, 4], name
    assert all(spread == 4 for _, spread in chunks), name
    assert all(spread == 1 for _, spread in one[name]["chunks"]), name
  assert four["lstm"]["trimmed"], "the text model should take the length-trimming path"


@pytest.mark.parametrize("name", ["cnn", "lstm"])
@pytest.mark.parametrize("batch_size", [8, 6, 1])
def test_four_devices_equal_one_device(runs, name, batch_size):
  (_, one), (_, four) = runs
  key = f"{name}_b{batch_size}"
  assert four[key].shape == one[key].shape
  # A device computes fewer rows per call than the single device does, and
  # XLA's CPU kernels may round differently per batch shape (changing the
  # batch size on ONE device moves a CNN's outputs by ~1e-8 too): equal to
  # float32 rounding, same predictions.
  np.testing.assert_allclose(four[key], one[key], rtol=0, atol=1e-6)
  np.testing.assert_array_equal(four[key].argmax(-1), one[key].argmax(-1))


def test_sharded_rows_are_bit_identical_to_the_same_rows_on_one_device(runs):
  _, (_, four) = runs
  np.testing.assert_array_equal(four["cnn_b8"], four["cnn_per_device"])
