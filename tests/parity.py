"""Shared helpers for parity tests against Keras itself.

Weights are random and asymmetric (seeded normal draws, different per weight)
so a transposed kernel or a swapped gate cannot go unnoticed; Keras's own
numerics tests use constant weights and would miss both.
"""

import jax
import numpy as np

import port
from bench.weights import randomize_weights  # the project's one randomiser; default scale 0.5

__all__ = ["ATOL", "assert_matches_keras", "predict_saved_without_tensorflow", "randomize_weights"]

ATOL = 1e-5


def assert_matches_keras(
  keras_model, x, *, atol: float = ATOL, classifier: bool = True, batch_size: int = 64
):
  """Ports ``keras_model`` and checks jitted and un-jitted outputs against Keras.

  Returns the ported model. ``x`` is what the Keras model takes.
  """
  expected = np.asarray(keras_model(x, training=False))
  model = port.load(keras_model)
  jitted = model.predict(x, batch_size=batch_size)
  with jax.disable_jit():
    unjitted = np.asarray(model.apply(model.params, model.prepare_inputs(x)))
  for label, got in (("jitted predict", jitted), ("un-jitted apply", unjitted)):
    assert got.shape == expected.shape, f"{label}: shape {got.shape} != Keras {expected.shape}"
    diff = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    assert diff <= atol, f"{label}: max abs diff {diff:.3g} > {atol}"
    if classifier and expected.ndim == 2 and expected.shape[-1] > 1:
      np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1), err_msg=label)
  return model


def predict_saved_without_tensorflow(model_dir, texts, work_dir, batch_size: int = 256):
  """``jaxnets.load(model_dir).predict(texts)`` in a fresh process where any
  import of TensorFlow or Keras fails; also asserts neither got imported."""
  import os  # pylint: disable=import-outside-toplevel
  import pathlib  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  import textwrap  # pylint: disable=import-outside-toplevel

  work_dir = pathlib.Path(work_dir)
  repo_root = pathlib.Path(__file__).resolve().parent.parent
  np.save(work_dir / "texts.npy", np.asarray(list(texts), dtype=object), allow_pickle=True)
  script = textwrap.dedent(f"""
      import sys
      sys.modules["tensorflow"] = None  # any import of TF or Keras now fails
      sys.modules["keras"] = None
      import numpy as np
      import jaxnets
      model = jaxnets.load({str(model_dir)!r})
      texts = np.load({str(work_dir / "texts.npy")!r}, allow_pickle=True).tolist()
      np.save({str(work_dir / "got.npy")!r}, model.predict(texts, batch_size={batch_size}))
      assert not any(m.startswith(("tensorflow", "keras")) for m in sys.modules
                     if sys.modules[m] is not None)
  """)
  env = dict(os.environ, PYTHONPATH=str(repo_root))
  subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=work_dir)
  return np.load(work_dir / "got.npy")
