"""Generated parity: random supported Keras models, random inputs, ported exactly or refused.

Hand-written parity cases find what their authors thought of. Here Hypothesis
draws whole models — image CNNs (Conv2D, pooling, BatchNormalization with random
statistics, activations, global pooling or Flatten), 1-D CNNs (Conv1D with
causal padding, 1-D pooling), text models (Embedding with or without
``mask_zero``, Masking, SimpleRNN/LSTM/GRU, Bidirectional with every merge
mode, 1-D global pooling) and MLPs — with random asymmetric weights, and
random inputs: odd sizes, non-finite values, padded token ids of every length
(all-padding rows included). Each model is ported from the in-memory object
and from its saved ``.keras`` file, under a drawn 2-D convolution algorithm
(``jaxnets.conv_algorithms``), and must either match Keras (max abs
difference <= 1e-5, NaN where Keras has NaN, identical argmax) or be refused
with an ``UnsupportedLayerError`` naming a layer. Every ported model is then
saved and reloaded by ``jaxnets.load`` in a fresh process with TensorFlow
blocked, and must predict the same again.

CI runs the ``ci`` profile (50 examples); ``--hypothesis-profile=long`` runs
1,000 (see BUILD.md).
"""

import dataclasses
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from tests import parity
from tests.conftest import REPO_ROOT

keras = pytest.importorskip("keras")
import port  # noqa: E402  (after the Keras import check)
from jaxnets import settings as jaxnets_settings  # noqa: E402

ACTIVATIONS = (
  "linear",
  "relu",
  "tanh",
  "sigmoid",
  "elu",
  "selu",
  "softplus",
  "softsign",
  "swish",
  "gelu",
  "hard_sigmoid",
  "relu6",
  "leaky_relu",
  "silu",
  "exponential",
)


@dataclasses.dataclass
class Case:
  """A drawn model with the input it is checked on."""

  model: object
  x: np.ndarray
  kind: str


# ---------------------------------------------------------------- strategies


@st.composite
def _activation(draw):
  return draw(st.sampled_from(ACTIVATIONS))


@st.composite
def _image_layers(draw, rank: int):
  """A stack of conv/pool/norm/activation layers for ``rank``-D images."""
  pools = (
    (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
    if rank == 2
    else (keras.layers.MaxPooling1D, keras.layers.AveragePooling1D)
  )
  layers = []
  for _ in range(draw(st.integers(1, 4))):
    kind = draw(st.sampled_from(("conv", "conv", "pool", "norm", "act", "relu", "dropout")))
    if kind == "conv":
      strides = draw(st.integers(1, 2))
      dilation = 1 if strides > 1 else draw(st.integers(1, 2))
      paddings = ("valid", "same", "causal") if rank == 1 else ("valid", "same")
      filters = draw(st.integers(1, 6))
      groups = draw(st.sampled_from([g for g in (1, 2, 3) if filters % g == 0]))
      layers.append(
        (
          "conv",
          dict(
            filters=filters,
            kernel_size=draw(st.integers(1, 3)),
            strides=strides,
            padding=draw(st.sampled_from(paddings)),
            dilation_rate=dilation,
            groups=groups,
            activation=draw(_activation()),
            use_bias=draw(st.booleans()),
          ),
        )
      )
    elif kind == "pool":
      size = draw(st.integers(1, 3))
      layers.append(
        (
          "pool",
          dict(
            cls=draw(st.sampled_from(pools)),
            pool_size=size,
            strides=draw(st.one_of(st.none(), st.integers(1, 3))),
            padding=draw(st.sampled_from(("valid", "same"))),
          ),
        )
      )
    elif kind == "norm":
      layers.append(
        (
          "norm",
          dict(
            epsilon=draw(st.sampled_from((1e-3, 1e-5))),
            center=draw(st.booleans()),
            scale=draw(st.booleans()),
          ),
        )
      )
    elif kind == "act":
      layers.append(("act", dict(activation=draw(_activation()))))
    elif kind == "relu":
      layers.append(
        (
          "relu",
          dict(
            max_value=draw(st.one_of(st.none(), st.sampled_from((1.0, 6.0)))),
            negative_slope=draw(st.sampled_from((0.0, 0.1))),
            threshold=draw(st.sampled_from((0.0, 0.5))),
          ),
        )
      )
    else:
      layers.append(("dropout", dict(rate=draw(st.sampled_from((0.1, 0.5))))))
  return layers


def _build_image_layers(spec, rank):
  conv = keras.layers.Conv2D if rank == 2 else keras.layers.Conv1D
  out = []
  for kind, options in spec:
    options = dict(options)
    if kind == "conv":
      if options["groups"] > 1 and options["filters"] % options["groups"]:
        continue
      out.append(conv(**options))
    elif kind == "pool":
      out.append(options.pop("cls")(**options))
    elif kind == "norm":
      out.append(keras.layers.BatchNormalization(**options))
    elif kind == "act":
      out.append(keras.layers.Activation(options["activation"]))
    elif kind == "relu":
      out.append(keras.layers.ReLU(**options))
    else:
      out.append(keras.layers.Dropout(**options))
  return out


@st.composite
def image_cases(draw, rank: int):
  spatial = tuple(draw(st.integers(1, 9)) for _ in range(rank))
  channels = draw(st.integers(1, 4))
  spec = draw(_image_layers(rank))
  head = draw(st.sampled_from(("flatten", "global_max", "global_average")))
  classes = draw(st.integers(2, 5))
  rows = draw(st.integers(1, 5))
  nonfinite = draw(st.sampled_from((None, None, None, "nan", "inf", "-inf")))
  x = (
    np.random.default_rng(draw(st.integers(0, 2**16)))
    .normal(0, 1, (rows,) + spatial + (channels,))
    .astype(np.float32)
  )
  if nonfinite is not None:
    mask = np.random.default_rng(rows).random(x.shape) < 0.1
    x[mask] = float(nonfinite)
  try:
    layers = _build_image_layers(spec, rank)
    if _groups_do_not_divide(layers, channels):
      assume(False)
    head_layer = {
      "flatten": keras.layers.Flatten,
      "global_max": (
        keras.layers.GlobalMaxPooling2D if rank == 2 else keras.layers.GlobalMaxPooling1D
      ),
      "global_average": (
        keras.layers.GlobalAveragePooling2D if rank == 2 else keras.layers.GlobalAveragePooling1D
      ),
    }[head]()
    model = keras.Sequential(
      [
        keras.Input(spatial + (channels,)),
        *layers,
        head_layer,
        keras.layers.Dense(classes, activation="softmax"),
      ]
    )
  except ValueError:
    assume(False)  # Keras refuses the shapes (e.g. a window larger than the input)
  if any(d == 0 for d in model.layers[-2].output.shape[1:]):
    assume(False)
  note(
    f"image{rank}d spatial={spatial} channels={channels} layers={spec} head={head} "
    f"nonfinite={nonfinite}"
  )
  return Case(model, x, f"image{rank}d")


def _groups_do_not_divide(layers, channels):
  """True when a grouped convolution's groups do not divide its input channels."""
  current = channels
  for layer in layers:
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D)):
      if current % layer.groups:
        return True
      current = layer.filters
  return False


@st.composite
def _recurrent(draw, return_sequences: bool):
  cls = draw(st.sampled_from((keras.layers.SimpleRNN, keras.layers.LSTM, keras.layers.GRU)))
  options = dict(
    units=draw(st.integers(1, 6)),
    return_sequences=return_sequences,
    go_backwards=draw(st.booleans()),
    use_bias=draw(st.booleans()),
  )
  if cls is keras.layers.SimpleRNN:
    options["activation"] = draw(st.sampled_from(("tanh", "relu", "sigmoid")))
  if cls is keras.layers.GRU:
    options["reset_after"] = draw(st.booleans())
  if cls is not keras.layers.SimpleRNN:
    options["recurrent_activation"] = draw(st.sampled_from(("sigmoid", "hard_sigmoid")))
  return cls, options


@st.composite
def text_cases(draw):
  vocabulary = draw(st.integers(3, 30))
  length = draw(st.integers(1, 12))
  mask_zero = draw(st.booleans())
  masking = not mask_zero and draw(st.booleans())
  rnn_count = draw(st.integers(1, 2))
  head = draw(st.sampled_from(("last", "global_max", "global_average")))
  layers = [keras.layers.Embedding(vocabulary, draw(st.integers(1, 6)), mask_zero=mask_zero)]
  if masking:
    layers.append(keras.layers.Masking(mask_value=0.0))
  for index in range(rnn_count):
    sequences = index < rnn_count - 1 or head != "last"
    cls, options = draw(_recurrent(sequences))
    if draw(st.booleans()):
      merge = draw(st.sampled_from(("concat", "sum", "mul", "ave")))
      # Keras derives the backward layer by flipping go_backwards.
      options["go_backwards"] = False
      layers.append(keras.layers.Bidirectional(cls(**options), merge_mode=merge))
    else:
      layers.append(cls(**options))
  if head == "global_max":
    layers.append(keras.layers.GlobalMaxPooling1D())
  elif head == "global_average":
    layers.append(keras.layers.GlobalAveragePooling1D())
  classes = draw(st.integers(2, 4))
  layers.append(keras.layers.Dense(classes, activation="softmax"))
  model = keras.Sequential([keras.Input((length,), dtype="int32"), *layers])
  rows = draw(st.integers(1, 6))
  rng = np.random.default_rng(draw(st.integers(0, 2**16)))
  x = rng.integers(1, vocabulary, (rows, length)).astype(np.int32)
  # Trailing padding of every length, an all-padding row among them.
  lengths = rng.integers(0, length + 1, rows)
  for row, real in enumerate(lengths):
    x[row, real:] = 0
  note(
    f"text length={length} mask_zero={mask_zero} masking={masking} "
    f"layers={[l.name for l in layers]} lengths={lengths.tolist()}"
  )
  return Case(model, x, "text")


@st.composite
def mlp_cases(draw):
  features = draw(st.integers(1, 20))
  layers = []
  for _ in range(draw(st.integers(1, 3))):
    layers.append(
      keras.layers.Dense(
        draw(st.integers(1, 16)), activation=draw(_activation()), use_bias=draw(st.booleans())
      )
    )
    if draw(st.booleans()):
      layers.append(keras.layers.Dropout(0.3))
  layers.append(keras.layers.Dense(draw(st.integers(2, 5)), activation="softmax"))
  rows = draw(st.integers(1, 7))
  x = (
    np.random.default_rng(draw(st.integers(0, 2**16)))
    .normal(0, 1, (rows, features))
    .astype(np.float32)
  )
  if draw(st.booleans()):
    x[0, 0] = draw(st.sampled_from((np.nan, np.inf, -np.inf)))
  return Case(keras.Sequential([keras.Input((features,)), *layers]), x, "mlp")


CASES = st.one_of(image_cases(2), image_cases(1), text_cases(), mlp_cases())


# -------------------------------------------------------------------- checks


def _assert_same(got, expected, reference, label):
  """``port.judge``'s rule (``port/comparison.py``): ``reference`` is Keras's
  float64 evaluation; an argmax is only required where it is not a tie."""
  comparison = port.comparison.judge(got, expected, reference)
  assert comparison.ok, f"{label}: {comparison.verdict()}"
  _SEEN.append(comparison)


_SEEN: list = []  # every comparison made, for the closing summary line


def _check_case(case: Case, seed: int, work_dir: pathlib.Path, saved: list):
  parity.randomize_weights(case.model, seed=seed)
  expected = np.asarray(case.model(case.x, training=False))
  reference = port.comparison.run_keras(
    port.float64_reference(case.model),
    case.x.astype(np.float64) if case.x.dtype.kind == "f" else case.x,
  )[0]
  path = work_dir / f"case{len(saved)}.keras"
  case.model.save(path)
  try:
    ported = port.load(case.model)
  except port.UnsupportedLayerError as e:
    # A refusal is acceptable only when it names the culprit, and the file
    # gives the same refusal.
    assert e.layer_name and e.reason, e
    with pytest.raises(port.UnsupportedLayerError):
      port.load(path)
    return "refused"
  _assert_same(ported.predict(case.x, batch_size=4), expected, reference, "ported object")
  _assert_same(
    port.load(path).predict(case.x, batch_size=4), expected, reference, "ported .keras file"
  )
  model_dir = work_dir / f"case{len(saved)}_jaxnets"
  ported.save(model_dir)
  np.save(work_dir / f"case{len(saved)}_x.npy", case.x)
  np.save(work_dir / f"case{len(saved)}_expected.npy", expected)
  np.save(work_dir / f"case{len(saved)}_reference.npy", reference)
  saved.append(len(saved))
  return "ported"


def _reload_without_tensorflow(work_dir: pathlib.Path, count: int):
  """Reloads every saved model with ``jaxnets.load`` in one TF-free process."""
  script = textwrap.dedent(f"""
      import pathlib, sys
      sys.modules["tensorflow"] = None  # any import of TF or Keras now fails
      sys.modules["keras"] = None
      import numpy as np
      import jaxnets
      work = pathlib.Path({str(work_dir)!r})
      for i in range({count}):
        model = jaxnets.load(work / f"case{{i}}_jaxnets")
        np.save(work / f"case{{i}}_reloaded.npy",
                model.predict(np.load(work / f"case{{i}}_x.npy"), batch_size=4))
  """)
  subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO_ROOT, timeout=900)
  for i in range(count):
    _assert_same(
      np.load(work_dir / f"case{i}_reloaded.npy"),
      np.load(work_dir / f"case{i}_expected.npy"),
      np.load(work_dir / f"case{i}_reference.npy"),
      f"case {i} reloaded without TF",
    )


def test_generated_models_port_exactly_or_are_refused_by_name(tmp_path):
  saved, outcomes = [], []

  @settings(
    deadline=None,
    suppress_health_check=[
      HealthCheck.too_slow,
      HealthCheck.filter_too_much,
      HealthCheck.data_too_large,
    ],
  )
  @given(
    case=CASES,
    seed=st.integers(0, 2**16),
    algorithm=st.sampled_from(("auto", "direct", "winograd_f2", "im2col")),
  )
  def check(case, seed, algorithm):
    case_dir = tmp_path / "cases"
    case_dir.mkdir(exist_ok=True)
    # Every 2-D convolution algorithm the selection rule can choose, forced
    # wherever it applies (the TF-free reload below runs the default rule).
    with jaxnets_settings.override(conv_algorithm=algorithm):
      outcomes.append((case.kind, _check_case(case, seed, case_dir, saved)))

  check()
  assert outcomes, "no example ran"
  if saved:
    _reload_without_tensorflow(tmp_path / "cases", len(saved))
  kinds = sorted({kind for kind, _ in outcomes})
  print(
    f"\ngenerated parity: {len(outcomes)} models ({', '.join(kinds)}), "
    f"{sum(o == 'ported' for _, o in outcomes)} ported, "
    f"{sum(o == 'refused' for _, o in outcomes)} refused by name; worst port/Keras "
    f"float64-distance ratio {_worst_ratio():.2f}, largest port distance "
    f"{max((c.port_error for c in _SEEN), default=0.0):.2g}"
  )


def _worst_ratio() -> float:
  """The largest port_error / keras_error among the comparisons (NaN if none
  had a Keras error above zero)."""
  ratios = [c.port_error / c.keras_error for c in _SEEN if c.keras_error]
  return max(ratios, default=float("nan"))
