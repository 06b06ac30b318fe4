"""Depthwise convolution formulations timed on MobileNet-like shapes.

    python -m bench.depthwise                      # the table in BENCHMARKS.md
    python -m bench.depthwise --batch_sizes=1 --repeats=15 --keras=false

For each shape ``(H, W, C)`` (3x3 kernel, depth multiplier 1, ``same`` padding,
stride 1 and, for the first two, stride 2 as MobileNetV2's downsampling blocks)
and batch size, three systems run interleaved (``bench.timing.interleaved``):

- ``grouped``: ``lax.conv_general_dilated`` with ``feature_group_count = C`` --
  XLA's default lowering of a depthwise convolution;
- ``taps``: ``jaxnets.layers.conv_extra``'s multiply-adds over the 9 kernel cells
  (one shifted, strided slice of the padded input per cell, times that cell's
  per-channel weights, summed), over the whole batch at once;
- ``blocked``: the same over blocks of ``conv_extra.TAPS_BLOCK_IMAGES`` images
  (``lax.map``), what the layers run at inference on CPU (batch 1: the same as taps);
- ``keras``: ``keras.layers.DepthwiseConv2D`` called eagerly (TF backend) on the
  same weights, for reference (``--keras=false`` leaves it out).

Every system's output is checked against the others first (max abs diff printed;
must be <= 1e-5). Times are medians in ms; ``taps x`` is grouped / taps, ``block x``
taps / blocked (medians of per-round ratios).
"""

import os
import sys

from absl import app
from absl import flags

import jax
import jax.numpy as jnp
import numpy as np

from bench import timing
from jaxnets.layers import conv
from jaxnets.layers import conv_extra

_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "32"], "Batch sizes to time.")
_REPEATS = flags.DEFINE_integer("repeats", 9, "Interleaved rounds per case.")
_KERAS = flags.DEFINE_bool("keras", True, "Also time Keras's DepthwiseConv2D (TF).")

# (H, W, C, stride): MobileNetV2's depthwise layers at 224x224 input.
SHAPES = [
  (112, 112, 32, 1),
  (112, 112, 96, 2),
  (56, 56, 144, 1),
  (56, 56, 144, 2),
  (14, 14, 576, 1),
  (7, 7, 960, 1),
]


def _forward(algorithm, strides, pads, block_images=None):
  @jax.jit
  def run(x, kernel):
    return conv_extra.depthwise_conv(
      x,
      kernel,
      strides=strides,
      pads=pads,
      dilation=(1, 1),
      algorithm=algorithm,
      block_images=block_images,
    )

  return run


def _case(h, w, c, stride, batch, keras_layer_class):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(batch, h, w, c)).astype(np.float32)
  kernel = rng.normal(size=(3, 3, c, 1)).astype(np.float32)
  strides = (stride, stride)
  pads = conv.spatial_padding("same", (h, w), (3, 3), strides, (1, 1))
  xj, kj = jnp.asarray(x), jnp.asarray(kernel)
  systems, outputs = {}, {}
  block = conv_extra.taps_block_images(batch, training=False)
  for name, algorithm, block_images in (
    ("grouped", "grouped", None),
    ("taps", "taps", None),
    ("blocked", "taps", block),
  ):
    fn = _forward(algorithm, strides, pads, block_images)
    outputs[name] = np.asarray(fn(xj, kj))
    systems[name] = lambda fn=fn: fn(xj, kj).block_until_ready()
  if keras_layer_class is not None:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    layer = keras_layer_class(3, strides=stride, padding="same", use_bias=False)
    layer.build((None, h, w, c))
    layer.set_weights([kernel])
    xt = tf.constant(x)
    outputs["keras"] = np.asarray(layer(xt))
    systems["keras"] = lambda: layer(xt).numpy()
  diff = max(float(np.max(np.abs(o - outputs["grouped"]))) for o in outputs.values())
  result = timing.interleaved(systems, repeats=_REPEATS.value)
  return result, diff


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  keras_layer_class = None
  if _KERAS.value:
    import keras  # pylint: disable=import-outside-toplevel

    keras_layer_class = keras.layers.DepthwiseConv2D
  print(
    f"jax {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} CPUs; "
    f"load {os.getloadavg()[0]:.2f}"
  )
  header = f"{'shape':>16} {'s':>2} {'batch':>5} {'grouped':>9} {'taps':>9} {'taps x':>7}"
  header += f" {'blocked':>9} {'block x':>7}"
  header += f" {'keras':>9} {'diff':>8}" if keras_layer_class else f" {'diff':>8}"
  print(header)
  for h, w, c, stride in SHAPES:
    for batch in (int(b) for b in _BATCH_SIZES.value):
      result, diff = _case(h, w, c, stride, batch, keras_layer_class)
      med = {k: v * 1e3 for k, v in result["median"].items()}
      line = (
        f"{f'{h}x{w}x{c}':>16} {stride:>2} {batch:>5} {med['grouped']:>9.3f} {med['taps']:>9.3f}"
        f" {result['ratio'][('taps', 'grouped')]:>7.2f}"
        f" {med['blocked']:>9.3f} {result['ratio'][('blocked', 'taps')]:>7.2f}"
      )
      if keras_layer_class:
        line += f" {med['keras']:>9.3f}"
      print(line + f" {diff:>8.1e}", flush=True)
      if diff > 1e-5:
        print("  formulations disagree beyond 1e-5", file=sys.stderr)


if __name__ == "__main__":
  app.run(main)
