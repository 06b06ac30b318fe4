"""The one parity rule: is a port as close to the exact result as Keras itself?

    comparison = port.compare(keras_model, ported, x)
    comparison.ok, comparison.max_abs_diff, comparison.bound
    comparison.check()          # raises ParityError with the verdict when not ok

A fixed absolute tolerance cannot tell rounding from a bug: on a deep residual
network Keras's own float32 output is ~1e-5 from the exact result, and how far
depends on the CPU (AVX2 and AVX-512 kernels sum in other orders) and on a GPU's
TF32. So the bound is grounded in a **float64 reference**: the same Keras model
evaluated by Keras itself with every float32 layer rebuilt in float64 and the
weights cast (``float64_reference``). It is independent of the port — a port bug
(a swapped gate, a flipped kernel) is not in it — and independent of the
machine's float32 kernels. Then:

    port_error  = max |port(x)  - reference(x)|     (float32 port vs float64)
    keras_error = max |keras(x) - reference(x)|     (float32 Keras vs float64)
    bound       = max(FACTOR * keras_error, FLOOR * max(1, max |reference(x)|))
    ok          = port_error <= bound, and identical argmax on every row whose
                  reference top-2 gap exceeds 2 * (port_error + keras_error)

i.e. the port is accepted when it is at most ``FACTOR`` times as far from the
exact result as Keras's own float32 output is, or within a floor of ``FLOOR``
relative to the output's magnitude (a tiny model where Keras rounds exactly
still leaves the port a few ulps). ``max_abs_diff`` (port vs Keras float32) is
reported beside it: it is the headline figure, at most 1e-5 on the spec models
(``HEADLINE_ATOL``), and at most ``bound + keras_error`` whenever ``ok``.

Without a reference (``reference=False``, a Keras model that cannot be rebuilt
in float64, or one TensorFlow cannot run in float64 — it has no float64
MaxPool3D/AvgPool3D kernel on CPU; the reason kept in ``Comparison.reference``)
the rule falls back to the headline: ``max_abs_diff <= HEADLINE_ATOL * max(1,
max |keras(x)|)``.

Non-finite values. Where the input holds NaN or ±inf, TensorFlow's float32
results are not what the mathematics gives (its CPU softmax returns finite
probabilities for a row holding +inf, where the float64 evaluation — and the
port — give NaN), and such accidents can differ between CPU types and GPU.
The rule, the same on every machine: each output position gets a kind (finite,
NaN, +inf, -inf; a float64 value beyond float32's range counts as ±inf). The
port must have the reference's kind at every position where Keras's float32
output has it too (``nonfinite_mismatches`` counts the port's misses there; a
position where Keras itself misses is not held against the port), and values
are compared only where the reference and Keras are finite.

``FACTOR`` and ``FLOOR`` were chosen by measurement (``python -m bench.parity_survey``,
``results/parity/``): every spec model, every supported ``keras.applications``
model and the generated suite pass on AVX2 and AVX-512, and every mutation of
``tests/test_mutations.py`` (a 1 % BatchNorm channel error, a flipped kernel,
swapped LSTM gates, a shifted mask, a dropped bias, softmax on the wrong axis)
is rejected.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from port.reference import flatten, float64_reference, rows_of, run_keras, to_float64

__all__ = [
  "FACTOR",
  "FLOOR",
  "HEADLINE_ATOL",
  "Comparison",
  "ParityError",
  "compare",
  "float64_reference",
  "judge",
  "rows_of",
  "run_keras",
  "to_float64",
]

# The port may be at most this many times as far from the float64 reference as
# Keras's own float32 output is (measured worst case: see the module docstring).
FACTOR = 4.0
# ... or within this much, relative to max(1, max |reference|): ~8 float32 ulps
# of a unit-sized output.
FLOOR = 1e-6
# The headline claim on the spec models, and the rule when there is no reference.
HEADLINE_ATOL = 1e-5


class ParityError(AssertionError):
  """A port that is further from the exact result than Keras's own rounding allows."""


@dataclasses.dataclass(frozen=True)
class Comparison:
  """What ``compare`` found; ``verdict()`` says it in one line.

  Distances are maxima over every output array and every position where the
  values are finite (see the module docstring for non-finite positions).
  """

  ok: bool
  max_abs_diff: float  # port vs Keras float32
  bound: float  # what port_error (or, without a reference, max_abs_diff) must not exceed
  derived_from: str  # how the bound was obtained, in words
  port_error: float | None  # port vs the float64 reference
  keras_error: float | None  # Keras float32 vs the float64 reference
  reference: str  # "keras-float64", or "none: <why>"
  argmax_agreement: float | None  # fraction of rows, classifier outputs only
  undecided_rows: int  # rows too close to a tie for the argmax to be required
  rows: int
  output_scale: float  # max |reference| (or |Keras| without a reference)
  nonfinite_positions: int  # positions where the reference is NaN or ±inf
  nonfinite_mismatches: int = 0  # of the port's kinds, where Keras's kind is the reference's
  positions: int = 0  # output values compared (all outputs, all rows)
  problems: tuple[str, ...] = ()

  def verdict(self) -> str:
    """One line: the figures, the bound and where it came from, and the problems."""
    parts = [f"parity on {self.rows} rows: max abs diff from Keras {self.max_abs_diff:.3g}"]
    if self.port_error is not None:
      parts.append(
        f"from float64: port {self.port_error:.3g}, Keras {self.keras_error:.3g} "
        f"(bound {self.bound:.3g}, {self.derived_from})"
      )
    else:
      parts.append(f"bound {self.bound:.3g} ({self.derived_from}; {self.reference})")
    if self.argmax_agreement is not None:
      parts.append(f"argmax agreement {self.argmax_agreement:.2%}")
    if self.nonfinite_positions:
      parts.append(f"{self.nonfinite_positions} non-finite reference positions")
    head = "; ".join(parts)
    if self.ok:
      return head + " -> ok"
    return head + " -> FAILED: " + "; ".join(self.problems)

  def check(self) -> "Comparison":
    """Returns self when ok; raises ``ParityError`` with the verdict otherwise."""
    if not self.ok:
      raise ParityError(self.verdict())
    return self

  def as_dict(self) -> dict[str, Any]:
    """JSON-ready fields (for result records and benchmark reports)."""
    out = dataclasses.asdict(self)
    out["problems"] = list(self.problems)
    return out


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _max_abs(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
  if not where.any():
    return 0.0
  diff = np.abs(a[where].astype(np.float64) - b[where].astype(np.float64))
  return float(np.max(diff)) if not np.isnan(diff).any() else float("nan")


def compare(
  keras_model,
  ported,
  x,
  *,
  keras_outputs=None,
  port_outputs=None,
  reference_outputs=None,
  reference: bool = True,
  batch_size: int = 256,
  predict: Callable | None = None,
  classifier: bool | None = None,
) -> "Comparison":
  """Runs the port, Keras and (by default) the float64 reference on ``x``.

  Args:
    keras_model: the Keras model the port came from.
    ported: the ``jaxnets.Model`` (its ``predict`` is used unless ``port_outputs``
      or ``predict`` is given).
    x: inputs in the form the Keras model takes (array, list or dict of arrays,
      or sentences for a string model).
    keras_outputs / port_outputs / reference_outputs: already computed
      outputs (e.g. timed elsewhere, or one reference for several ports), in
      Keras's structure; computed here when ``None``.
    reference: evaluate the float64 reference (the rule of the module
      docstring); ``False`` falls back to the headline absolute rule.
    batch_size: rows per call of Keras, the reference and ``predict``.
    predict: an alternative ``x -> outputs`` for the port (e.g. un-jitted apply).
    classifier: whether 2-D outputs are class scores whose argmax is compared
      and reported; ``None``: every 2-D output with more than one column is.
  """
  if keras_outputs is None:
    keras_outputs = run_keras(keras_model, x, batch_size)
  if port_outputs is None:
    port_outputs = (predict or (lambda v: ported.predict(v, batch_size=batch_size)))(x)
  reference_note = "keras-float64"
  if (
    reference_outputs is None
    and reference
    and _same_structure(flatten(port_outputs), flatten(keras_outputs))
  ):
    try:
      clone = float64_reference(keras_model)
    except ValueError as e:
      reference_note = f"none: {e}"
    else:
      try:
        reference_outputs = run_keras(clone, to_float64(x), batch_size)
      except Exception as e:  # noqa: BLE001 - e.g. TF has no float64 kernel (MaxPool3D on CPU)
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        reference_note = (
          f"none: Keras cannot run the model in float64 ({type(e).__name__}: {first_line[:200]})"
        )
  elif not reference and reference_outputs is None:
    reference_note = "none: not requested"
  return judge(
    port_outputs,
    keras_outputs,
    reference_outputs,
    rows=rows_of(x),
    reference_note=reference_note,
    classifier=classifier,
  )


def _same_structure(port_all, keras_all) -> bool:
  return len(port_all) == len(keras_all) and all(
    p.shape == k.shape for p, k in zip(port_all, keras_all)
  )


def judge(
  port_outputs,
  keras_outputs,
  reference_outputs=None,
  *,
  rows: int | None = None,
  reference_note: str = "keras-float64",
  classifier: bool | None = None,
) -> "Comparison":
  """The rule of the module docstring on outputs already computed: the port's
  and Keras's float32 outputs and the float64 reference (``None``: the headline
  rule). Each is one array, a list or a dict of arrays. ``compare`` calls this;
  call it directly where the outputs come from elsewhere (a Keras layer called
  alone, Keras on another backend in a child process)."""
  keras_all, port_all = flatten(keras_outputs), flatten(port_outputs)
  rows = len(keras_all[0]) if rows is None and keras_all and keras_all[0].ndim else (rows or 0)
  problems: list[str] = []
  if len(keras_all) != len(port_all):
    problems.append(f"the port has {len(port_all)} outputs, Keras {len(keras_all)}")
  else:
    for i, (k, p) in enumerate(zip(keras_all, port_all)):
      if k.shape != p.shape:
        problems.append(f"output {i}: port shape {p.shape} != Keras {k.shape}")
  if problems:
    return Comparison(
      ok=False,
      max_abs_diff=float("nan"),
      bound=float("nan"),
      derived_from="not derived: the outputs differ in structure",
      port_error=None,
      keras_error=None,
      reference="not evaluated",
      argmax_agreement=None,
      undecided_rows=0,
      rows=rows,
      output_scale=float("nan"),
      nonfinite_positions=0,
      problems=tuple(problems),
    )
  reference_all = None if reference_outputs is None else flatten(reference_outputs)
  if reference_all is not None and not _same_structure(reference_all, keras_all):
    shapes = [r.shape for r in reference_all]
    raise ValueError(
      f"the float64 reference's outputs {shapes} do not match Keras's "
      f"{[k.shape for k in keras_all]}: give the reference of the same inputs"
    )
  if reference_all is None and reference_note == "keras-float64":
    reference_note = "none: not given"
  truth_all = reference_all if reference_all is not None else keras_all

  # A reference value beyond float32's range (TF's max pooling of an all -inf
  # window gives float64's lowest) rounds to +-inf in float32: undefined there too.
  defined = [np.isfinite(t) & (np.abs(t) <= _FLOAT32_MAX) for t in truth_all]
  nonfinite = int(sum(int((~d).sum()) for d in defined))
  # Values are judged where the truth and Keras are finite (where Keras is not,
  # float32 overflowed: the port's value there is not judged).
  judged = [d & np.isfinite(k) for d, k in zip(defined, keras_all)]
  mismatches = 0
  for i, (p, k, t) in enumerate(zip(port_all, keras_all, truth_all)):
    want = _kinds(t)
    missed = (_kinds(p) != want) & (_kinds(k) == want)
    mismatches += int(missed.sum())
    if missed.any():
      problems.append(
        f"output {i}: the port's value is of another kind (finite / NaN / +inf / -inf) than "
        f"{'the float64 reference' if reference_all is not None else 'Keras'} at "
        f"{int(missed.sum())} position(s) where Keras's is not"
      )
  max_abs_diff = max(
    (_max_abs(p, k, j & np.isfinite(p)) for p, k, j in zip(port_all, keras_all, judged)),
    default=0.0,
  )
  scale = max(
    (float(np.max(np.abs(t[d]))) if d.any() else 0.0 for t, d in zip(truth_all, defined)),
    default=0.0,
  )
  if reference_all is not None:
    port_error = max(
      (_max_abs(p, t, j & np.isfinite(p)) for p, t, j in zip(port_all, truth_all, judged)),
      default=0.0,
    )
    keras_error = max(
      (_max_abs(k, t, j) for k, t, j in zip(keras_all, truth_all, judged)), default=0.0
    )
    floor = FLOOR * max(1.0, scale)
    bound = max(FACTOR * keras_error, floor)
    derived_from = (
      f"{FACTOR:g} x Keras's own float64 distance"
      if FACTOR * keras_error >= floor
      else f"floor {FLOOR:g} x max(1, output scale {scale:.3g})"
    )
    measured, what = port_error, "distance from the float64 reference"
    tie_margin = 2 * (port_error + keras_error)
  else:
    port_error = keras_error = None
    bound = HEADLINE_ATOL * max(1.0, scale)
    derived_from = f"headline {HEADLINE_ATOL:g} x max(1, output scale {scale:.3g})"
    measured, what = max_abs_diff, "max abs diff from Keras"
    tie_margin = 2 * max_abs_diff
  if not measured <= bound:  # also catches NaN
    problems.append(f"{what} {measured:.3g} > bound {bound:.3g}")

  agreement, undecided = (None, 0)
  if classifier is not False:
    agreement, undecided = _argmax_agreement(port_all, keras_all, truth_all, tie_margin)
  if agreement is not None and agreement[1]:
    problems.append(
      f"predicted classes differ on {agreement[1]} row(s) that are not ties "
      f"(reference top-2 gap > {tie_margin:.3g})"
    )
  return Comparison(
    ok=not problems,
    max_abs_diff=max_abs_diff,
    bound=bound,
    derived_from=derived_from,
    port_error=port_error,
    keras_error=keras_error,
    reference=reference_note,
    argmax_agreement=None if agreement is None else agreement[0],
    undecided_rows=undecided,
    rows=rows,
    output_scale=scale,
    nonfinite_positions=nonfinite,
    nonfinite_mismatches=mismatches,
    positions=int(sum(t.size for t in truth_all)),
    problems=tuple(problems),
  )


def _kinds(values: np.ndarray) -> np.ndarray:
  """0 finite, 1 NaN, 2 +inf, 3 -inf per position; a value beyond float32's
  range (a float64 reference's) counts as the infinity it rounds to."""
  values = np.asarray(values)
  with np.errstate(invalid="ignore"):
    kinds = np.where(values > _FLOAT32_MAX, 2, np.where(values < -_FLOAT32_MAX, 3, 0))
  return np.where(np.isnan(values), 1, kinds)


def _argmax_agreement(port_all, keras_all, truth_all, tie_margin: float):
  """``((fraction of rows agreeing, decided rows disagreeing), undecided rows)``
  over the classifier-shaped outputs (2-D, more than one class); ``(None, 0)``
  when there are none. A row is decided when its truth's top-2 gap exceeds
  ``tie_margin``: closer than that, rounding alone may pick either class."""
  agree = total = wrong = undecided = 0
  for p, k, t in zip(port_all, keras_all, truth_all):
    if p.ndim != 2 or p.shape[-1] < 2 or not len(p):
      continue
    rows = np.isfinite(t).all(-1) & np.isfinite(k).all(-1) & np.isfinite(p).all(-1)
    same = p.argmax(-1) == k.argmax(-1)
    top2 = np.sort(t, axis=-1)[:, -2:]
    decided = rows & ((top2[:, 1] - top2[:, 0]) > tie_margin)
    agree += int(same[rows].sum())
    total += int(rows.sum())
    wrong += int((decided & ~same).sum())
    undecided += int((rows & ~decided).sum())
  if total == 0:
    return None, 0
  return (agree / total, wrong), undecided
