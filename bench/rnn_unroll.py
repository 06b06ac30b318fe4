"""The recurrent scan's ``unroll`` measured on the spec text models.

    python -m bench.rnn_unroll                          # the figures in jaxnets/settings.py
    python -m bench.rnn_unroll --unrolls=1,2,4,8 --batch_sizes=1,256 --repeats=9

For each spec text model (``lstm``, ``rnn``: 2 x Bidirectional, 64 cells, 64
tokens, seeded random weights, NusaX-Senti test texts as token ids when the data
is there) and batch size, the port's jitted forward pass runs under each
``jaxnets.settings.rnn_scan_unroll`` value, interleaved (``bench.timing``), after
a check that every value gives the same outputs bit for bit (``unroll`` only
changes how the loop is compiled). Prints median ms and the speed-up over
``unroll=1``; label the figures with the CPU's ISA (``bench.parity_survey.cpu_isa``).
"""

import sys

from absl import app
from absl import flags

import jax
import numpy as np

from bench import parity_survey
from bench import settings as settings_lib
from bench import timing
from bench import workloads
from flags import common as common_flags  # noqa: F401  (--data_dir, --seed)
import jaxnets
import port

_UNROLLS = flags.DEFINE_list("unrolls", ["1", "2", "4", "8"], "unroll values to time.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "256"], "Batch sizes to time.")
_REPEATS = flags.DEFINE_integer("repeats", 9, "Interleaved rounds per case.", lower_bound=1)
_MODELS = flags.DEFINE_list("rnn_models", ["lstm", "rnn"], "Spec text models to time.")


def _compiled(model: jaxnets.Model, unroll: int, x):
  """The forward pass compiled for ``x`` under ``rnn_scan_unroll=unroll`` (traced
  inside the override, so the setting is the one read at trace time)."""
  with jaxnets.settings.override(rnn_scan_unroll=unroll):
    return jax.jit(model.apply).lower(model.params, x).compile()


def measure(name: str, batch_sizes, unrolls, repeats: int, data_dir, seed: int) -> list[dict]:
  """One row per batch size: median ms per unroll value and speed-ups over the first."""
  settings = settings_lib.preset("full", num_inputs=max(batch_sizes), data_dir=data_dir, seed=seed)
  workload = workloads.build(name, settings)
  model = port.load(workload.keras_model)
  rows = []
  for batch in batch_sizes:
    x = np.asarray(workload.x[:batch])
    runs = {}
    for unroll in unrolls:
      compiled = _compiled(model, unroll, x)
      runs[f"unroll={unroll}"] = (compiled, compiled(model.params, x))
    first = next(iter(runs.values()))[1]
    for key, (_, out) in runs.items():
      if not np.array_equal(np.asarray(out), np.asarray(first)):
        raise AssertionError(f"{name} batch {batch}: {key} changed the outputs")
    result = timing.interleaved(
      {
        key: (lambda c=compiled: jax.block_until_ready(c(model.params, x)))
        for key, (compiled, _) in runs.items()
      },
      repeats=repeats,
    )
    base = f"unroll={unrolls[0]}"
    rows.append(
      {
        "model": name,
        "batch": batch,
        "median_ms": {k: 1e3 * v for k, v in result["median"].items()},
        "speedup": {k: result["ratio"].get((k, base), 1.0) for k in runs},
      }
    )
  return rows


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  unrolls = [int(u) for u in _UNROLLS.value]
  batches = [int(b) for b in _BATCH_SIZES.value]
  print(f"# rnn_scan_unroll on {parity_survey.cpu_isa()} ({jax.default_backend()})")
  for name in _MODELS.value:
    for row in measure(
      name, batches, unrolls, _REPEATS.value, flags.FLAGS.data_dir, flags.FLAGS.seed
    ):
      cells = ", ".join(
        f"{k} {row['median_ms'][k]:.2f} ms ({row['speedup'][k]:.2f}x)" for k in row["median_ms"]
      )
      print(f"{name} batch {row['batch']}: {cells}", flush=True)
  sys.stdout.flush()


if __name__ == "__main__":
  app.run(main)
