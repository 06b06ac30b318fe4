"""``cuda_lowering``: the spec models lower for CUDA with no CPU-only construct, on any machine.

``jax.export`` lowers for a platform the machine lacks, so a CPU-only machine sees the
StableHLO module a GPU would compile. A CPU-only construct in it would fail or stall there: a
custom call into a CPU library (LAPACK, DUCC's FFT, anything named for the CPU), or a host
callback (a round trip to Python per call); nor should a speed choice measured on CPU only (a
``jaxnets.settings.cpu_only`` scope: padded-step skipping, row blocks, odd-channel padding,
Winograd, depthwise taps, the guarded max pooling). The spec's three models are checked: the
CIFAR-10 CNN, the NusaX text model with two bidirectional LSTM layers, and the MNIST MLP, each
with its study's base configuration and seeded random weights (lowering reads shapes, not
values).

    from bench import cuda_lowering
    for check in cuda_lowering.run():
      print(check.name, check.passed, check.note)
"""

import dataclasses
import re

import jax
import numpy as np

from jaxnets import export
from jaxnets import settings

# Substrings of a custom-call target (lower-cased) that only a CPU can run.
CPU_ONLY_TARGETS = ("lapack", "ducc", "cpu", "host", "callback")
# The named scope of every speed choice measured on CPU only (jaxnets.settings.cpu_only), as a
# whole component of an operation's name path ("jit(apply)/conv2d/cpu_only_<choice>/pad", or
# first in a loop body's); a function name that merely contains it does not count.
_CPU_ONLY_CHOICE = re.compile(r'(?<=["/])' + re.escape(settings.CPU_ONLY_SCOPE) + r'\w+(?=["/])')
# Batch 1 and 256 with the automatic (CPU-measured) choices; "b": symbolic, as exported.
BATCHES = (1, 256, "b")
_CUSTOM_CALL = re.compile(r'(?:custom_call\s*@|call_target_name\s*=\s*")([\w.$-]+)')


@dataclasses.dataclass(frozen=True)
class LoweringCheck:
  """One model lowered for CUDA: its custom-call targets, the CPU-only ones among them."""

  name: str
  passed: bool
  platforms: tuple[str, ...]
  custom_calls: tuple[str, ...]
  cpu_only: tuple[str, ...]
  note: str


def spec_models() -> dict:
  """The spec's CNN, 2xBiLSTM text model and MLP as Keras models (base configs, random
  weights; the text model's vocabulary adapted on a few sentences)."""
  # pylint: disable=import-outside-toplevel
  from train import models

  sentences = np.array(["saya suka makanan ini", "tidak enak sama sekali", "biasa saja"] * 4)
  vectorizer = models.make_vectorizer(sentences, max_tokens=10000, sequence_length=64)
  return {
    "cnn": models.build_cnn(),
    "lstm_2x_bidirectional": models.build_text(vectorizer, cell="lstm", units=(64, 64)),
    "mlp": models.build_mlp(),
  }


def cpu_only_targets(module_text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(every custom-call target in a StableHLO module's text, the CPU-only ones)."""
  targets = tuple(sorted(set(_CUSTOM_CALL.findall(module_text))))
  return targets, tuple(t for t in targets if any(m in t.lower() for m in CPU_ONLY_TARGETS))


def cpu_only_choices(module_text: str) -> tuple[str, ...]:
  """The CPU-measured speed choices a lowered module holds (``jaxnets.settings.cpu_only``
  scopes in its locations): none belongs in a CUDA lowering."""
  return tuple(sorted(set(_CPU_ONLY_CHOICE.findall(module_text))))


def input_spec(model, batch) -> jax.ShapeDtypeStruct:
  """``model.apply``'s input at ``batch`` rows (an int, or ``"b"`` for a symbolic batch): token
  ids for a model with a text preprocessor, else its input shape and dtype."""
  if model.preprocessor is not None:
    length = model.preprocessor.output_sequence_length
    dims, dtype = [str(batch), "t" if length is None else str(length)], np.int32
  else:
    dims = [str(batch)]
    dims += [f"d{i}" if d is None else str(d) for i, d in enumerate(model.input_shape, 1)]
    dtype = np.float32 if model.input_dtype == "float32" else np.int32
  constraints = () if isinstance(batch, int) else (f"{batch} <= {export.MAX_BATCH}",)
  shape = jax.export.symbolic_shape(", ".join(dims), constraints=constraints)
  return jax.ShapeDtypeStruct(shape, dtype)


def lower_for_cuda(model, batch) -> jax.export.Exported:
  """``model.apply`` (a ``jaxnets.Model``) exported for CUDA at ``batch`` rows. A symbolic batch
  is traced with ``Model.export``'s settings (its choices cannot compare a symbolic size)."""
  params = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), model.params)
  lower = jax.export.export(jax.jit(model.apply), platforms=("cuda",))
  if isinstance(batch, int):
    return lower(params, input_spec(model, batch))
  with settings.override(conv_algorithm="direct", rnn_row_block_floats=2**62):
    return lower(params, input_spec(model, batch))


def check_model(name: str, model, batches=BATCHES) -> LoweringCheck:
  """Lowers ``model`` for CUDA at each of ``batches``; passes when no module holds a CPU-only
  custom call or CPU-measured choice and each was lowered for CUDA alone."""
  targets, cpu_only, platforms = set(), set(), set()
  for batch in batches:
    exported = lower_for_cuda(model, batch)
    module = exported.mlir_module()
    found, bad = cpu_only_targets(module)
    targets.update(found)
    cpu_only.update(f"{t} (batch {batch})" for t in (*bad, *cpu_only_choices(module)))
    platforms.update(exported.platforms)
  passed = platforms == {"cuda"} and not cpu_only
  shown = ", ".join(str(b) for b in batches)
  note = (
    f"lowered for cuda at batch {shown}; custom calls: {', '.join(sorted(targets)) or 'none'}"
    if passed
    else f"not CUDA-clean: platforms {sorted(platforms)}, CPU-only {', '.join(sorted(cpu_only))}"
  )
  return LoweringCheck(
    name, passed, tuple(sorted(platforms)), tuple(sorted(targets)), tuple(sorted(cpu_only)), note
  )


def run(keras_models: dict | None = None) -> list[LoweringCheck]:
  """Ports each Keras model (default: :func:`spec_models`) and checks its CUDA lowering."""
  import port  # pylint: disable=import-outside-toplevel

  keras_models = spec_models() if keras_models is None else keras_models
  return [check_model(name, port.load(m)) for name, m in keras_models.items()]
