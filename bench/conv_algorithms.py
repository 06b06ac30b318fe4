"""Convolution algorithms (``jaxnets.conv_algorithms``) timed on the spec CNN's convolutions.

    python -m bench.conv_algorithms                       # the table below
    python -m bench.conv_algorithms --batch_sizes=256 --modes=train --repeats=9
    python -m bench.conv_algorithms --shapes=extra        # 1x1, strided and 5x5 convs
    python -m bench.conv_algorithms --sweep=channels      # Winograd's channel threshold
    python -m bench.conv_algorithms --sweep=block_bytes   # the batch block size

For each convolution, batch size and mode, every algorithm that can compute it
is jitted and compiled (the first call, reported as ``compile s``, excluded
from the timing), then all of them and a float32 matmul of the convolution's
im2col size (``batch * out_h * out_w`` x ``kh * kw * in`` x ``filters``) run
interleaved (A B C A B C ...) for ``--repeats`` rounds; the table gives medians.

- ``forward``: the convolution alone.
- ``train``: ``jax.grad`` of the output's sum, w.r.t. the kernel and the input
  -- except for the model's input layer (3 -> 32), whose input gradient no
  trainer asks for (XLA then drops it).
- ``direct`` is today's ``Conv2D``: ``lax.conv_general_dilated``, with the
  layer's extra zero channel when the input has 3 (see
  ``jaxnets.settings.Settings.conv_pad_odd_channels_below``); ``speedup`` is
  over it.
- ``*``: what ``choose_algorithm`` picks for that batch and mode.
- ``GFLOP/s``: useful work, the direct convolution's FLOPs (``2 * kh * kw * in
  * filters`` per output value; x2 for ``train`` of the input layer, x3
  otherwise) over the time. ``% peak``: that over the float32 square-matmul
  peak timed at start and end (``bench.measure.matmul_peak``). Winograd does
  fewer multiplies than the direct convolution it replaces, so it can exceed
  100 %.

The machine is shared: the 1-minute load average is printed with every group
(the benchmark's own two busy threads count about 1 of it), and ``--max_load``
waits (up to ``--max_wait_s``) for a quieter moment first.

Measured (``--batch_sizes=256,1 --repeats=9``; 2-core AMD EPYC, AVX2 + FMA,
jax 0.10.2; load 0.91 at the start, 1.0-1.4 while running; square-matmul peak
161 GFLOP/s at the start, 185 at the end). ms, and speedup over ``direct``;
``*`` = chosen by ``choose_algorithm``::

  conv               batch mode     direct  winograd_f2   winograd_f4       im2col  chosen GFLOP/s
  conv1 3->32 @32      256 forward   24.82  27.68 0.90x   45.63 0.54x  22.80 1.09x  direct   18
  conv1 3->32 @32      256 train    139.85  14.68 9.53x*  10.43 13.4x  31.50 4.44x  wino     62
  conv1 3->32 @32        1 forward    0.07   0.14 0.48x    0.17 0.41x   0.07 0.97x  direct   26
  conv1 3->32 @32        1 train      0.16   0.27 0.59x    0.47 0.35x   0.23 0.69x  direct   22
  conv2 32->64 @16     256 forward   33.70  31.86 1.06x*  33.43 1.01x  25.96 1.30x  wino     76
  conv2 32->64 @16     256 train    225.24  59.19 3.81x*  37.26 6.04x  67.49 3.34x  wino    122
  conv2 32->64 @16       1 forward    0.18   0.39 0.47x    0.64 0.29x   0.22 0.82x  direct   51
  conv2 32->64 @16       1 train      0.83   0.93 0.89x    1.43 0.58x   0.52 1.60x  direct   34
  conv3 64->128 @8     256 forward   38.96  24.43 1.59x*  25.78 1.51x  20.06 1.94x  wino     99
  conv3 64->128 @8     256 train     72.00  29.70 2.42x*  36.44 1.98x  47.53 1.51x  wino    244
  conv3 64->128 @8       1 forward    0.24   0.69 0.35x    1.57 0.15x   0.20 1.21x  direct   40
  conv3 64->128 @8       1 train      0.75   1.86 0.41x    2.92 0.26x   0.54 1.39x  direct   38

A second run right after (load 0.86 at the start) gave Winograd 1.30x / 1.40x
forward and 8.1x / 4.5x / 2.5x training, but im2col 0.63x / 0.77x / 1.81x
forward: im2col's forward speed is the least stable (see
``jaxnets.conv_algorithms.AlgorithmSettings``). The three spec convolutions
together, batch 256: forward 97.5 -> 81.1 ms (1.20x), training 437 -> 104 ms
(4.2x). Winograd's useful GFLOP/s exceed the matmul peak (151 % for conv3
training) because it does 16 multiplies where the direct convolution does 36.
"""

import json
import os
import time

from absl import app
from absl import flags

import jax
import jax.numpy as jnp
import numpy as np

from bench import measure
from bench import timing
from jaxnets import conv_algorithms as ca
from jaxnets.layers import conv as jconv

# (name, height/width, in_channels, filters, kernel, stride, input layer?)
SPEC_SHAPES = [
  ("conv1 3->32 @32", 32, 3, 32, 3, 1, True),
  ("conv2 32->64 @16", 16, 32, 64, 3, 1, False),
  ("conv3 64->128 @8", 8, 64, 128, 3, 1, False),
]
EXTRA_SHAPES = [
  ("1x1 64->128 @16", 16, 64, 128, 1, 1, False),
  ("3x3/2 32->64 @32", 32, 32, 64, 3, 2, False),
  ("5x5 32->32 @16", 16, 32, 32, 5, 1, False),
]
SWEEPS = ("none", "channels", "block_bytes")
BLOCK_BYTES = [0, 1 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20]
SWEEP_CHANNELS = [4, 8, 16, 32]

SHAPES = flags.DEFINE_list("shapes", ["spec"], "Shape sets: spec (the CNN's three), extra.")
BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["256", "1"], "Batch sizes.")
MODES = flags.DEFINE_list("modes", ["forward", "train"], "forward, train.")
ALGORITHMS = flags.DEFINE_list("algorithms", list(ca.ALGORITHMS), "Algorithms to time.")
REPEATS = flags.DEFINE_integer("repeats", 7, "Interleaved rounds (median reported).")
SWEEP = flags.DEFINE_enum("sweep", "none", SWEEPS, "A threshold sweep instead of the table.")
MAX_LOAD = flags.DEFINE_float("max_load", 1.0, "Wait for a 1-minute load average below this.")
MAX_WAIT_S = flags.DEFINE_integer("max_wait_s", 0, "Longest wait for --max_load (0: none).")
JSON_OUT = flags.DEFINE_string("json_out", None, "Also write the rows here as JSON.")


def _load() -> float:
  return os.getloadavg()[0]


def _wait_for_quiet() -> None:
  deadline = time.monotonic() + MAX_WAIT_S.value
  while _load() >= MAX_LOAD.value and time.monotonic() < deadline:
    time.sleep(10)
  if _load() >= MAX_LOAD.value:
    print(f"# warning: load {_load():.2f} >= {MAX_LOAD.value}; figures are noisy")


def _conv_fn(algorithm, pads, stride, pad_channel, block_bytes):
  """``(x, kernel) -> y`` by ``algorithm``; ``pad_channel``: the Conv layer's zero channel."""

  def fn(x, kernel):
    if pad_channel:
      x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, 1)))
      kernel = jnp.pad(kernel, ((0, 0), (0, 0), (0, 1), (0, 0)))
    return ca.conv2d(
      x,
      kernel,
      strides=(stride, stride),
      padding_pairs=pads,
      algorithm=algorithm,
      block_bytes=block_bytes,
    )

  return fn


def _compiled(fn, mode, input_layer, x, kernel):
  """A blocking zero-argument call of ``fn`` (or its gradient), and its compile time."""
  if mode == "forward":
    jitted = jax.jit(fn)
  else:
    argnums = (1,) if input_layer else (0, 1)
    jitted = jax.jit(jax.grad(lambda x, k: jnp.sum(fn(x, k)), argnums=argnums))
  start = time.perf_counter()
  jax.block_until_ready(jitted(x, kernel))
  compile_s = time.perf_counter() - start
  return (lambda: jax.block_until_ready(jitted(x, kernel))), compile_s


def _group(shape, batch, mode, candidates):
  """Times ``candidates`` ({label: (algorithm, pad_channel, block_bytes)}) interleaved."""
  _, size, cin, cout, k, stride, input_layer = shape
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, size, size, cin)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(k, k, cin, cout)) / np.sqrt(k * k * cin), jnp.float32)
  pads = tuple(jconv.spatial_padding("same", (size, size), (k, k), (stride, stride), (1, 1)))
  out = -(-size // stride)
  systems, compile_s = {}, {}
  for label, (algorithm, pad_channel, block_bytes) in candidates.items():
    if not ca.supports(algorithm, kernel.shape, (stride, stride), (1, 1), 1):
      continue
    fn = _conv_fn(algorithm, pads, stride, pad_channel, block_bytes)
    systems[label], compile_s[label] = _compiled(fn, mode, input_layer, x, kernel)
  a = jnp.asarray(rng.normal(size=(batch * out * out, k * k * cin)), jnp.float32)
  b = jnp.asarray(rng.normal(size=(k * k * cin, cout)), jnp.float32)
  gemm = jax.jit(jnp.matmul)
  gemm(a, b).block_until_ready()
  systems["matmul"] = lambda: gemm(a, b).block_until_ready()
  result = timing.interleaved(systems, repeats=REPEATS.value, warmup=1)
  forward_flops = 2 * batch * out * out * k * k * cin * cout
  flops = forward_flops * {"forward": 1, "train": 2 if input_layer else 3}[mode]
  return result, compile_s, flops, forward_flops


def _candidates(shape, algorithms, block_bytes=None):
  """{label: (algorithm, pad_channel, block_bytes)}; ``direct`` as the Conv layer runs it."""
  cin = shape[2]
  pad = cin % 2 == 1 and 1 < cin < 16  # jaxnets.settings' conv_pad_odd_channels_below
  out = {}
  for algorithm in ["direct"] + [a for a in algorithms if a != "direct"]:  # direct: the base
    out[algorithm] = (algorithm, pad and algorithm == "direct", block_bytes)
  if pad and "direct" in algorithms:
    out["direct (3 ch)"] = ("direct", False, block_bytes)
  return out


def _row(shape, batch, mode, label, result, compile_s, flops, peak, base):
  median = result["median"][label]
  gflops = flops / median / 1e9
  return {
    "convolution": shape[0],
    "batch": batch,
    "mode": mode,
    "algorithm": label,
    "ms": median * 1e3,
    "min_ms": result["min"][label] * 1e3,
    "speedup": None if base is None else result["median"][base] / median,
    "gflops": gflops,
    "percent_of_peak": 100 * gflops / peak,
    "compile_s": compile_s.get(label),
    "load": _load(),
  }


HEADER = (
  f"{'convolution':18} {'batch':>5} {'mode':7} {'algorithm':20} {'ms':>9} {'speedup':>7} "
  f"{'GFLOP/s':>7} {'% peak':>6} {'compile s':>9} {'load':>5}"
)


def _format(row):
  speedup = f"{row['speedup']:6.2f}x" if row["speedup"] is not None else " " * 7
  compile_s = f"{row['compile_s']:9.2f}" if row["compile_s"] is not None else " " * 9
  label = row["algorithm"] + (" *" if row["chosen"] else "")
  return (
    f"{row['convolution']:18} {row['batch']:5d} {row['mode']:7} {label:20} "
    f"{row['ms']:9.3f} {speedup} {row['gflops']:7.1f} {row['percent_of_peak']:5.0f}% "
    f"{compile_s} {row['load']:5.2f}"
  )


def _run_groups(groups, peak):
  """Times each ``(shape, batch, mode, candidates)`` group and prints its rows."""
  print(HEADER)
  print("-" * len(HEADER))
  rows = []
  for shape, batch, mode, candidates, base in groups:
    result, compile_s, flops, forward_flops = _group(shape, batch, mode, candidates)
    _, size, cin, cout, k, stride, _ = shape
    chosen = ca.choose_algorithm(
      (k, k, cin, cout), (stride, stride), (1, 1), 1, (size, size), cin, "cpu",
      batch=batch, training=mode == "train",
    )  # fmt: skip
    for label in result["median"]:
      if label == "matmul":  # its own FLOPs: the forward convolution's, as one matmul
        row = _row(shape, batch, mode, label, result, compile_s, forward_flops, peak, None)
      else:
        row = _row(shape, batch, mode, label, result, compile_s, flops, peak, base)
      row["chosen"] = label == chosen
      rows.append(row)
      print(_format(row), flush=True)
  return rows


def _table_groups():
  shapes = []
  for name in SHAPES.value:
    shapes += {"spec": SPEC_SHAPES, "extra": EXTRA_SHAPES}[name]
  for shape in shapes:
    for batch in [int(b) for b in BATCH_SIZES.value]:
      for mode in MODES.value:
        yield shape, batch, mode, _candidates(shape, ALGORITHMS.value), "direct"


def _channel_sweep_groups():
  """3x3 stride-1 convs at 16x16, in -> 64 channels: where Winograd starts to pay."""
  for cin in SWEEP_CHANNELS:
    shape = (f"3x3 {cin}->64 @16", 16, cin, 64, 3, 1, False)
    for batch in [int(b) for b in BATCH_SIZES.value]:
      for mode in MODES.value:
        yield shape, batch, mode, _candidates(shape, ALGORITHMS.value), "direct"


def _block_sweep_groups():
  """The spec convolutions by Winograd (im2col for the input layer) per block size."""
  for shape in SPEC_SHAPES:
    algorithm = "im2col" if shape[6] else "winograd_f2"
    candidates = {"direct": ("direct", shape[2] == 3, None)}
    for block_bytes in BLOCK_BYTES:
      label = (
        f"{algorithm[:4]} {block_bytes >> 20} MiB" if block_bytes else f"{algorithm[:4]} 1 block"
      )
      candidates[label] = (algorithm, False, block_bytes)
    for mode in MODES.value:
      yield shape, 256, mode, candidates, "direct"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  _wait_for_quiet()
  print(f"# jax {jax.__version__} ({jax.default_backend()}), {os.cpu_count()} CPUs, "
        f"loadavg {open('/proc/loadavg').read().strip()}")  # fmt: skip
  peak = measure.matmul_peak([1024, 2048], repeats=REPEATS.value)["gflops"]
  print(f"# float32 square-matmul peak {peak:.1f} GFLOP/s")
  groups = {
    "none": _table_groups,
    "channels": _channel_sweep_groups,
    "block_bytes": _block_sweep_groups,
  }[SWEEP.value]()
  rows = _run_groups(groups, peak)
  peak_after = measure.matmul_peak([1024, 2048], repeats=REPEATS.value)["gflops"]
  print(f"# float32 square-matmul peak {peak_after:.1f} GFLOP/s at the end; "
        f"loadavg {open('/proc/loadavg').read().strip()}")  # fmt: skip
  if JSON_OUT.value:
    with open(JSON_OUT.value, "w", encoding="utf-8") as f:
      json.dump({"peak_gflops": [peak, peak_after], "rows": rows}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
