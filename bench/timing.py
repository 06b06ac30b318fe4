"""Interleaved timing: fair speed ratios on shared, noisy machines.

Timing one system fully and then the other is biased by warm-up, frequency
scaling and neighbours' load. ``interleaved`` runs the systems in turn
(A B A B ...) after warm-up and reports, per system, the median/min/max time
and, per pair, the median of the per-round ratios.
"""

import statistics
import time
from typing import Callable


def interleaved(
  systems: dict[str, Callable[[], object]], *, repeats: int = 7, warmup: int = 2
) -> dict:
  """Times each zero-argument callable ``repeats`` times, interleaved.

  Each callable must block until its work is done (``block_until_ready`` /
  ``np.asarray`` on JAX results). Returns ``{"times": {name: [seconds...]},
  "median": {...}, "min": {...}, "max": {...}, "ratio": {(a, b): median of
  time_b / time_a per round}}`` — ``ratio[(a, b)] > 1`` means ``a`` is faster.
  """
  for _ in range(warmup):
    for fn in systems.values():
      fn()
  times = {name: [] for name in systems}
  for _ in range(repeats):
    for name, fn in systems.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  names = list(systems)
  ratio = {
    (a, b): statistics.median(tb / ta for ta, tb in zip(times[a], times[b]))
    for a in names
    for b in names
    if a != b
  }
  return {
    "times": times,
    "median": {n: statistics.median(t) for n, t in times.items()},
    "min": {n: min(t) for n, t in times.items()},
    "max": {n: max(t) for n, t in times.items()},
    "ratio": ratio,
  }
