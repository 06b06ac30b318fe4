"""The spec CNN as a whole under each 2-D convolution algorithm, interleaved.

    python -m bench.conv_in_model --mode=inference --batch=256
    python -m bench.conv_in_model --mode=train --batch=64     # the CNN recipe's batch

``bench.conv_algorithms`` times each convolution alone; inside a model XLA
fuses the direct convolution with its bias, activation and pooling, and a
training step also differentiates pooling and the dense head, so the choice
that wins per layer need not win per model. This times the jitted forward pass
(``inference``) or ``jax.value_and_grad`` of the cross-entropy (``train``) of
the spec CNN (seeded random weights) with ``jaxnets.settings.conv_algorithm``
set to ``auto``, ``direct``, ``winograd_f2`` and ``im2col``, all compiled
first, then run A B C D A B ... for ``--repeats`` rounds; it prints medians
and each one's speed over ``direct``.
"""

import os
import statistics
import time

from absl import app
from absl import flags

_MODE = flags.DEFINE_enum("mode", "inference", ["inference", "train"], "What to time.")
_BATCH = flags.DEFINE_integer("batch", 256, "Images per call.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 9, "Interleaved rounds.", lower_bound=1)
ALGORITHMS = ("auto", "direct", "winograd_f2", "im2col")


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  # pylint: disable=import-outside-toplevel  (heavy imports after flag parsing)
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  import port
  from bench import weights
  from jaxnets import settings
  from train import models

  keras_model = models.build_cnn(num_classes=10)
  weights.randomize_weights(keras_model, seed=0, scale=None)
  rng = np.random.default_rng(0)
  x = jax.device_put(rng.uniform(size=(_BATCH.value, 32, 32, 3)).astype(np.float32))
  y = jax.device_put(rng.integers(0, 10, _BATCH.value))
  calls = {}
  for algorithm in ALGORITHMS:
    model = port.load(keras_model)
    if _MODE.value == "inference":
      fn = jax.jit(model.apply)
      args = (model.params, x)
    else:

      def loss(params, x, y, model=model):
        probabilities = model.apply(params, x, training=True, rng=jax.random.key(0))
        return optax.softmax_cross_entropy_with_integer_labels(
          jnp.log(probabilities + 1e-9), y
        ).mean()

      fn = jax.jit(jax.value_and_grad(loss))
      args = (model.params, x, y)
    # The setting is read when the function is traced, i.e. on this first call.
    with settings.override(conv_algorithm=algorithm):
      jax.block_until_ready(fn(*args))
    calls[algorithm] = (fn, args)
  times = {name: [] for name in calls}
  for _ in range(_REPEATS.value):
    for name, (fn, args) in calls.items():
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[name].append(time.perf_counter() - start)
  direct = statistics.median(times["direct"])
  print(f"spec CNN, {_MODE.value}, batch {_BATCH.value}, load {os.getloadavg()[0]:.2f}")
  print("| conv_algorithm | ms (median) | images/s | speed over direct |")
  print("|---|---|---|---|")
  for name, samples in times.items():
    median = statistics.median(samples)
    print(
      f"| {name} | {median * 1e3:.1f} | {_BATCH.value / median:,.0f} | {direct / median:.2f}x |"
    )


if __name__ == "__main__":
  app.run(main)
