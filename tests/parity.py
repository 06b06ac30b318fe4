"""Shared helpers for parity tests against Keras itself.

Every parity assertion goes through the project's one rule, ``port.compare``
(``port/comparison.py``): the port must be as close to Keras's float64
evaluation of the same model as Keras's own float32 output is (within
``port.comparison.FACTOR``, with a floor). No test keeps a tolerance of its own.

Weights are random and asymmetric (seeded normal draws, different per weight)
so a transposed kernel or a swapped gate cannot go unnoticed; Keras's own
numerics tests use constant weights and would miss both.
"""

import jax
import numpy as np

import port
from bench.weights import randomize_weights  # the project's one randomiser; default scale 0.5

__all__ = [
  "assert_matches_keras",
  "assert_outputs_match",
  "predict_saved_without_tensorflow",
  "randomize_weights",
]


def assert_outputs_match(keras_model, got, x, *, label: str = "port", classifier=None, **kwargs):
  """Asserts that ``got`` (outputs computed from ``x`` by a port of
  ``keras_model``, in Keras's structure) passes ``port.compare``; returns the
  ``Comparison``. ``kwargs`` go to ``port.compare`` (e.g. ``keras_outputs``)."""
  comparison = port.compare(keras_model, None, x, port_outputs=got, classifier=classifier, **kwargs)
  assert comparison.ok, f"{label}: {comparison.verdict()}"
  return comparison


def assert_matches_keras(keras_model, x, *, classifier=None, batch_size: int = 64):
  """Ports ``keras_model`` and checks jitted ``predict`` and un-jitted ``apply``
  against Keras with ``port.compare``. Returns the ported model. ``x`` is what
  the Keras model takes; ``classifier=False`` skips the argmax comparison."""
  model = port.load(keras_model)
  keras_outputs = port.comparison.run_keras(keras_model, x, batch_size)
  jitted = model.predict(x, batch_size=batch_size)
  with jax.disable_jit():
    unjitted = model.apply(model.params, model.prepare_inputs(x))
  for label, got in (("jitted predict", jitted), ("un-jitted apply", unjitted)):
    assert_outputs_match(
      keras_model,
      jax.tree_util.tree_map(np.asarray, got),
      x,
      label=label,
      classifier=classifier,
      keras_outputs=keras_outputs,
      batch_size=batch_size,
    )
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
