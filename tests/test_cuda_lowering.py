"""bench/cuda_lowering.py: the spec models lower for CUDA, on this CPU, with no CPU-only construct."""

import jax
import jax.numpy as jnp
import numpy as np

from bench import cuda_lowering


def test_the_spec_models_lower_for_cuda_with_no_cpu_only_construct():
  checks = cuda_lowering.run()
  assert [c.name for c in checks] == ["cnn", "lstm_2x_bidirectional", "mlp"]
  for check in checks:
    assert check.passed, check.note
    assert check.platforms == ("cuda",) and not check.cpu_only


def _module(fun, platform, *args):
  return jax.export.export(jax.jit(fun), platforms=(platform,))(*args).mlir_module()


def test_a_cpu_only_construct_is_caught():
  """The detector is not vacuous: a LAPACK call (a solve, exported for the CPU) and a Python
  callback (a host round trip; jax.export refuses to serialise one, so from jit's lowering)
  are both named."""
  a = jax.ShapeDtypeStruct((4, 4), jnp.float32)
  _, lapack = cuda_lowering.cpu_only_targets(_module(jnp.linalg.solve, "cpu", a, a))
  assert lapack and all("lapack" in t for t in lapack), lapack

  def with_callback(x):
    return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

  _, callback = cuda_lowering.cpu_only_targets(jax.jit(with_callback).lower(a).as_text())
  assert callback and all("callback" in t for t in callback), callback
