"""Machine-dependent speed settings, with their documented defaults, in one place.

None of these changes a number a model computes: each one chooses between
equivalent ways of computing the same values, whichever ran faster where the
defaults were measured (XLA:CPU, jax 0.10, a 2-core AMD EPYC machine). Another
machine may prefer other values; ``bench/`` measures them.

Read them with ``current()``; change them for the whole process with
``configure(...)``, for a block of code with ``with override(...):``, or before
start-up with one environment variable per setting, named ``JAXNETS_`` + the
field name in capitals (``JAXNETS_RNN_ROW_BLOCK_FLOATS=32768``;
booleans as ``1``/``0``/``true``/``false``)::

    import jaxnets
    jaxnets.settings.configure(rnn_row_block_floats=32 * 1024)

Layers read the settings when a forward pass is traced, i.e. on a jitted
model's first call for each input shape. A shape already compiled keeps the
values it was traced with: change settings before calling a model, or use a
fresh ``jaxnets.Model``.

Per platform. The defaults were measured on XLA:CPU; on another platform they
are unmeasured, so there each setting of :data:`CPU_MEASURED` takes the value
that turns its choice off (the plain computation) unless it was set explicitly
(``configure``, ``override`` or its environment variable). The platform is the
one a pass is *compiled* for, not the machine's: ``jaxnets.Model`` traces its
inference pass through :func:`per_platform`, once with the CPU's choices and
once with none, and ``jax.lax.platform_dependent`` keeps the branch of the
platform it is lowered for (both, selected at run time, in a multi-platform
``jax.export`` such as ``Model.export``'s). Each CPU-only choice runs inside a
``jax.named_scope`` named ``cpu_only_<choice>`` (:func:`cpu_only`), so a
lowered module or a profile shows which were taken.
"""

import contextlib
import contextvars
import dataclasses
import os
from typing import Any, Callable, Iterator

import jax
from jax import lax

ENVIRONMENT_PREFIX = "JAXNETS_"
CPU = "cpu"
# What platform() says inside per_platform's branch for every platform but the CPU.
ACCELERATOR = "accelerator"
CPU_ONLY_SCOPE = "cpu_only_"


@dataclasses.dataclass(frozen=True)
class Settings:
  """Speed settings; every value gives the same numbers.

  Attributes:
    rnn_row_block_floats: on CPU, recurrent layers run the rows of a batch in
      blocks of about this many gate pre-activations per step (``rows *
      directions * gates * units`` floats; 16 Ki float32 = 64 KiB), so one
      step's working set stays in the core's cache. Measured: blocks of 16-32
      Ki floats ran a 2-layer BiLSTM-64 about 1.7x faster than one 256-row
      block; 64 Ki and more were no faster.
    rnn_skip_padded_steps: on CPU at inference, a recurrent step at which every
      row of a block is padding skips the cell (one ``lax.cond`` per step).
      Never when training: under ``jax.grad`` the per-step cond made a BiLSTM
      train step 1.4x slower than computing (and masking) every step, and the
      JAX trainer's batches are already cut to their longest row.
    rnn_scan_unroll: recurrent layers' ``lax.scan`` runs this many steps per
      loop iteration (``unroll``). Same numbers, fewer loop iterations and a
      larger compiled body. Kept at 1 on CPU: ``python -m bench.rnn_unroll``
      on the spec 2 x BiLSTM/BiSimpleRNN-64 (AVX-512, quiet, 9 interleaved
      rounds) gave no consistent gain: unroll 2/4/8 were 1.27/0.77/1.03x at
      LSTM batch 1, 0.83/0.74/0.74x at SimpleRNN batch 1, 0.94-1.08x at batch
      256. Unmeasured on accelerators: 1 there too (:data:`CPU_MEASURED`).
    conv_pad_odd_channels_below: a convolution whose input has an odd number of
      channels (more than one, fewer than this) gets one zero channel and a
      zero kernel slice, which adds only exact zeros to each sum. XLA's CPU
      convolution was 1.5-3x slower for a small odd channel count (RGB inputs)
      than for the next even one, with no gain from 17 channels up. ``0``
      turns this off.
    conv_algorithm: how 2-D convolutions are computed (``jaxnets.conv_algorithms``):
      ``"auto"`` lets ``choose_algorithm`` pick per layer from the shapes, by
      measured thresholds (Winograd F(2x2, 3x3) for 3x3 stride-1 layers with
      enough work, im2col for other small kernels when training, the direct
      convolution otherwise and on GPU); ``"direct"``, ``"winograd_f2"``,
      ``"winograd_f4"`` or ``"im2col"`` force one wherever it applies (tests,
      comparisons). Unlike the settings above this one changes float32 rounding:
      every algorithm the rule can choose passes the parity rule (``port.compare``)
      on the model outputs (tested under each); ``"winograd_f4"`` does not, and is
      never chosen by ``"auto"``.
    guard_fast_paths: at inference, layers whose exact Keras rule costs a pass
      of its own for values that almost never occur (max pooling's NaN and
      -inf rule) take their fast form and flag those values; ``predict``
      reruns a flagged batch through the separately compiled exact pass
      (``jaxnets.guards``).
      The spec CNN's forward pass went from 77 to 48 ms at batch 256.
    fast_pool_min_floats: max pooling takes its guarded fast form only on an
      input of at least this many floats: below it XLA:CPU does not fuse the
      pooling anyway, and the flag costs more than it saves (spec CNN,
      exact / fast ms: batch 1 1.13 / 1.30, batch 4 1.76 / 2.04, batch 16
      5.6 / 4.9, batch 64 34.9 / 26.9; 256 Ki floats is its first pooling
      at batch 8).
  """

  rnn_row_block_floats: int = 16 * 1024
  rnn_skip_padded_steps: bool = True
  rnn_scan_unroll: int = 1
  conv_pad_odd_channels_below: int = 16
  conv_algorithm: str = "auto"
  guard_fast_paths: bool = True
  fast_pool_min_floats: int = 256 * 1024

  def __post_init__(self):
    choices = ("auto", "direct", "winograd_f2", "winograd_f4", "im2col")
    if self.conv_algorithm not in choices:
      raise ValueError(
        f"conv_algorithm must be one of {', '.join(choices)}, got {self.conv_algorithm!r}"
      )
    if self.rnn_row_block_floats < 1:
      raise ValueError(f"rnn_row_block_floats must be positive, got {self.rnn_row_block_floats}")
    if self.rnn_scan_unroll < 1:
      raise ValueError(f"rnn_scan_unroll must be >= 1, got {self.rnn_scan_unroll}")
    if self.conv_pad_odd_channels_below < 0:
      raise ValueError(
        f"conv_pad_odd_channels_below must be >= 0, got {self.conv_pad_odd_channels_below}"
      )


def _parse(field: dataclasses.Field, name: str, text: str):
  if field.type in (bool, "bool"):
    lowered = text.strip().lower()
    if lowered not in ("1", "0", "true", "false"):
      raise ValueError(f"{name}={text!r}: expected 1, 0, true or false")
    return lowered in ("1", "true")
  if field.type in (str, "str"):
    return text.strip()
  try:
    return int(text)
  except ValueError:
    raise ValueError(f"{name}={text!r}: expected an integer") from None


def _environment_names(environ) -> frozenset[str]:
  return frozenset(
    f.name for f in dataclasses.fields(Settings) if ENVIRONMENT_PREFIX + f.name.upper() in environ
  )


def from_environment(environ=None) -> Settings:
  """The defaults, overridden by any ``JAXNETS_<FIELD>`` environment variable."""
  environ = os.environ if environ is None else environ
  changes = {}
  for field in dataclasses.fields(Settings):
    name = ENVIRONMENT_PREFIX + field.name.upper()
    if name in environ:
      changes[field.name] = _parse(field, name, environ[name])
  return Settings(**changes)


# The settings measured on XLA:CPU only, and the value that turns each choice off: what
# every other platform gets until they are measured there (unless set explicitly).
CPU_MEASURED: dict[str, Any] = {
  # One block: an accelerator wants the whole batch at once.
  "rnn_row_block_floats": 2**62,
  # Every step computed: a per-step branch would cost an accelerator a host round trip.
  "rnn_skip_padded_steps": False,
  # JAX's default until measured on an accelerator.
  "rnn_scan_unroll": 1,
  # No zero channel: the slow small odd channel count was XLA:CPU's.
  "conv_pad_odd_channels_below": 0,
  # One program, exact, and no per-batch flag read back to the host.
  "guard_fast_paths": False,
}

_current = from_environment()
_explicit = _environment_names(os.environ)
_PLATFORM: contextvars.ContextVar = contextvars.ContextVar("jaxnets_platform", default=None)


def platform() -> str:
  """The platform the pass being traced is for: inside a :func:`per_platform` branch (or
  :func:`for_platform`) that branch's (``"cpu"`` or ``ACCELERATOR``), else JAX's default
  backend (``"cpu"``, ``"gpu"``, ``"tpu"``)."""
  return _PLATFORM.get() or jax.default_backend()


def current() -> Settings:
  """The settings in effect for :func:`platform`: on a CPU as set; elsewhere every setting of
  :data:`CPU_MEASURED` not set explicitly takes its off value."""
  if platform() == CPU:
    return _current
  off = {name: value for name, value in CPU_MEASURED.items() if name not in _explicit}
  return dataclasses.replace(_current, **off)


@contextlib.contextmanager
def for_platform(name: str) -> Iterator[None]:
  """Traces the block's passes with ``name``'s choices (``"cpu"``, or any other platform for
  the plain ones), whatever the machine's default backend is."""
  token = _PLATFORM.set(name)
  try:
    yield
  finally:
    _PLATFORM.reset(token)


def per_platform(fn: Callable[..., Any], *args) -> Any:
  """``fn(*args)`` with the CPU's choices where it is compiled for a CPU, and with every
  CPU-only choice off on any other platform.

  Both are traced; ``jax.lax.platform_dependent`` lowers only the branch of a single
  lowering platform, and selects at run time in a multi-platform export. Inside a branch (or
  :func:`for_platform`) ``fn`` is called directly.
  """
  if _PLATFORM.get() is not None:
    return fn(*args)

  def branch(name):
    def traced(*values):
      with for_platform(name):
        return fn(*values)

    return traced

  return lax.platform_dependent(*args, cpu=branch(CPU), default=branch(ACCELERATOR))


def cpu_only(choice: str):
  """The named scope of a choice measured on CPU only (``cpu_only_<choice>`` in a lowered
  module's locations and in profiles)."""
  return jax.named_scope(CPU_ONLY_SCOPE + choice)


def reset() -> Settings:
  """Back to the defaults and the environment's ``JAXNETS_*`` values, forgetting what
  ``configure`` set (and which settings it made explicit for every platform)."""
  global _current, _explicit  # pylint: disable=global-statement
  _current = from_environment()
  _explicit = _environment_names(os.environ)
  return _current


def configure(**changes) -> Settings:
  """Changes the named settings for the rest of the process; returns the new ones.

  Raises ``TypeError`` for a name that is not a setting.
  """
  global _current, _explicit  # pylint: disable=global-statement
  _current = dataclasses.replace(_current, **changes)
  _explicit = _explicit | frozenset(changes)
  return _current


@contextlib.contextmanager
def override(**changes) -> Iterator[Settings]:
  """Changes the named settings inside a ``with`` block, restoring them after."""
  global _current, _explicit  # pylint: disable=global-statement
  previous = _current, _explicit
  _current = dataclasses.replace(_current, **changes)
  _explicit = _explicit | frozenset(changes)
  try:
    yield _current
  finally:
    _current, _explicit = previous


# The persistent compilation cache is process-wide JAX configuration rather than
# a ``Settings`` field: it changes no number and no traced program, only
# whether a fresh process recompiles.
COMPILATION_CACHE_ENV = "JAXNETS_COMPILATION_CACHE"


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> str:
  """Keeps compiled forward passes on disk, so a fresh process skips XLA compiles.

  Opt-in: compiled executables are written to ``directory`` (default
  ``~/.cache/jaxnets/xla``) and reused by any later process that compiles the
  same program (same model, input shape, jax version and machine). It removes
  the compile from a cold start: measured for the study's 2-layer BiLSTM text
  port (batch 1, 64 tokens, 2-core AVX2), first prediction in a fresh process
  0.70-0.74 s without, 0.12-0.13 s with a warm cache. Same executable, same
  numbers. Also enabled at import by ``JAXNETS_COMPILATION_CACHE=<directory>``
  (or ``=1`` for the default directory). Returns the directory.
  """
  if directory is None or str(directory) in ("1", "true", "yes"):
    directory = os.path.join(os.path.expanduser("~"), ".cache", "jaxnets", "xla")
  directory = os.path.abspath(os.path.expanduser(os.fspath(directory)))
  os.makedirs(directory, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory)
  # Cache every compile: the small per-shape programs are what a cold start pays for.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory


if os.environ.get(COMPILATION_CACHE_ENV):
  enable_compilation_cache(os.environ[COMPILATION_CACHE_ENV])
