"""What one inference benchmark run depends on, and the presets of ``python -m bench``.

A preset is a named set of :class:`Settings` values; flags given on the command
line override it. ``full`` is the benchmark of BENCHMARKS.md; the speed checks
are the same measurement, shrunk to Keras against the port on a few models.
"""

import dataclasses
import sys
from typing import Any, Callable, Mapping, Sequence

# The studies' models (the default), then models from outside the course
# (``bench/applications.py``: keras.applications at 224x224 and a transformer).
STUDY_MODELS = ("cnn", "lstm", "rnn", "mlp")
APPLICATION_MODELS = (
  "mobilenetv2",
  "mobilenetv3small",
  "resnet50",
  "resnet50v2",
  "densenet121",
  "efficientnetb0",
  "vgg16",
  "xception",
  "nasnetmobile",
  "transformer",
)
MODELS = STUDY_MODELS + APPLICATION_MODELS
SYSTEMS = (
  "keras_predict",
  "keras_call",
  "tf_xla",
  "keras_jax",
  "onnxruntime",
  "tf2jax",
  "port_predict",
  "port_jit",
)
PORT_SYSTEMS = ("port_predict", "port_jit")
HEADLINE_PORT = "port_predict"  # what a user calls; port_jit is shown beside it


def _stderr(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything one benchmark run depends on (the command's flags).

  Attributes:
    models: from :data:`MODELS`.
    batch_sizes: throughput is timed at each.
    systems: from :data:`SYSTEMS`.
    repeats: timed interleaved rounds per batch size (after one warm-up round).
    latency_repeats: timed interleaved rounds of batch-1 latency.
    num_inputs: rows per model (the test set repeated or cut to this).
    max_batches: at most this many batches per timed pass.
    matmul_sizes: square float32 matmuls timed for the peak; the fastest is the
      peak, and that size is also timed in every throughput round.
    model_overrides: per model, builder arguments that replace those of its
      study config (``bench/workloads.py``), e.g. ``{"mlp": {"hidden_units":
      (16,)}}`` for a small model.
    workdir: where ``python -m train`` left trained models (None: random weights).
    data_dir: local dataset copies (None: ``JAXNETS_DATA_DIR``, then the
      loaders' download cache, then synthetic inputs).
    seed: of the random weights and the row order.
    memory: measure each system's peak memory in a fresh process.
    cold_start: measure process start to first prediction, port vs Keras.
    cold_start_repeats: timed cold-start rounds.
    layer_profile: time the port layer by layer at the largest batch size.
    log: receives progress lines.
  """

  models: Sequence[str] = STUDY_MODELS
  batch_sizes: Sequence[int] = (1, 32, 256)
  systems: Sequence[str] = SYSTEMS
  repeats: int = 7
  latency_repeats: int = 101
  num_inputs: int = 4096
  max_batches: int = 32
  matmul_sizes: Sequence[int] = (1024, 2048, 3072)
  model_overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  workdir: str | None = None
  data_dir: str | None = None
  seed: int = 0
  memory: bool = True
  cold_start: bool = True
  cold_start_repeats: int = 3
  layer_profile: bool = True
  log: Callable[[str], None] = _stderr

  def __post_init__(self):
    for what, values, valid in (
      ("models", self.models, MODELS),
      ("systems", self.systems, SYSTEMS),
      ("model_overrides", self.model_overrides, STUDY_MODELS),
    ):
      unknown = set(values) - set(valid)
      if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}; valid: {', '.join(valid)}")
    for what, values in (("batch sizes", self.batch_sizes), ("matmul sizes", self.matmul_sizes)):
      if not values or min(values) < 1:
        raise ValueError(f"{what} must be positive, got {tuple(values)}")
    for what in ("repeats", "latency_repeats", "num_inputs", "max_batches", "cold_start_repeats"):
      if getattr(self, what) < 1:
        raise ValueError(f"{what} must be at least 1, got {getattr(self, what)}")

  def record(self) -> dict:
    """The settings as JSON-able values (for the results file)."""
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "log"}


_QUICK = dict(
  repeats=5,
  latency_repeats=15,
  matmul_sizes=(1024,),
  memory=False,
  cold_start=False,
  layer_profile=False,
)

PRESETS: dict[str, dict[str, Any]] = {
  # Every system, model and figure (BENCHMARKS.md).
  "full": {},
  # Keras against the port on the CNN and the MLP: throughput at batch 256 on
  # 9,984 rows, batch-1 latency; keras_call and port_jit show the direct calls.
  "speedcheck": dict(
    _QUICK,
    models=("cnn", "mlp"),
    batch_sizes=(256,),
    systems=("keras_predict", "keras_call", "port_predict", "port_jit"),
    num_inputs=10_000,
    max_batches=40,
  ),
  # Keras against the port on the text models (NusaX-Senti's 400 test texts as
  # token ids, repeated to 512 rows): batch 1 over 100 rows, batch 256 over 512,
  # batch-1 latency.
  "speedcheck_text": dict(
    _QUICK,
    models=("lstm", "rnn"),
    batch_sizes=(1, 256),
    systems=("keras_predict", "port_predict"),
    num_inputs=512,
    max_batches=100,
  ),
  # Models from outside the course (issue 14): keras.applications at their
  # real input size and a transformer text classifier, at batch 1 and 32,
  # against Keras (TF), Keras on JAX and ONNX Runtime.
  "applications": dict(
    _QUICK,
    models=APPLICATION_MODELS,
    batch_sizes=(1, 32),
    systems=("keras_predict", "keras_jax", "onnxruntime", "port_predict", "port_jit"),
    repeats=3,
    latency_repeats=11,
    num_inputs=64,
    max_batches=2,
  ),
}


def preset(name: str, **overrides) -> Settings:
  """The settings of preset ``name``, with ``overrides`` replacing its values."""
  if name not in PRESETS:
    raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
  return Settings(**{**PRESETS[name], **overrides})
