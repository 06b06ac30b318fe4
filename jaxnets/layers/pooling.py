"""Pooling layers over ``lax.reduce_window``, channels-last.

Activations are ``NHWC`` ``(batch, height, width, channels)`` for the 2-D
layers and ``NWC`` ``(batch, steps, channels)`` for the 1-D ones. None has
parameters.

As in ``jax.example_libraries.stax``, one factory (``Pooling``) serves max and
average pooling of any spatial rank; the registered classes only pick the
reducer and the rank. Windows and padding follow TensorFlow's ``tf.nn.max_pool``
/ ``tf.nn.avg_pool``:

- ``strides`` default to ``pool_size``.
- ``same`` pads like TF (``total // 2`` cells before, the odd extra cell
  after). Max pooling never picks a padded cell (they are ``-inf``); average
  pooling divides each window's sum by the number of *real* cells in it, not
  by the window size.

The global layers reduce every spatial axis (``keepdims`` keeps them as 1s).
Pooling drops any time mask, as Keras's pooling layers do; only
``GlobalAveragePooling1D`` reads it first (Keras 3 leaves masked steps out of
its mean).
"""

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnets import guards
from jaxnets import settings
from jaxnets.layers import base
from jaxnets.layers import conv


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pooling(base.Layer):
  """Windowed max/average over the spatial axes of a channels-last batch.

  Attributes:
    pool_size: window size per spatial axis.
    strides: step per spatial axis (``None``: ``pool_size``).
    padding: ``"valid"`` or ``"same"`` (TF's split, extra cell after).
  """

  pool_size: tuple[int, ...]
  strides: tuple[int, ...] | None = None
  padding: str = "valid"

  reducer: ClassVar[str] = ""  # "max" or "average"
  rank: ClassVar[int] = 0  # number of spatial axes

  def __post_init__(self):
    if len(self.pool_size) != self.rank:
      raise ValueError(
        f"{type(self).__name__} {self.name!r}: pool_size {self.pool_size} "
        f"must have {self.rank} dims"
      )
    object.__setattr__(self, "pool_size", tuple(int(p) for p in self.pool_size))
    object.__setattr__(self, "strides", tuple(int(s) for s in (self.strides or self.pool_size)))
    if self.padding not in ("valid", "same"):
      raise ValueError(
        f"{type(self).__name__} {self.name!r}: padding {self.padding!r} is not 'valid' or 'same'"
      )

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    spatial = x.shape[1:-1]
    pads = conv.spatial_padding(
      self.padding, spatial, self.pool_size, self.strides, (1,) * self.rank
    )
    conv.check_window_fits(self, spatial, self.pool_size, (1,) * self.rank, pads)
    window = (1,) + self.pool_size + (1,)
    strides = (1,) + self.strides + (1,)
    full_pads = [(0, 0)] + pads + [(0, 0)]
    if self.reducer == "max":
      # Training takes the tiled form for its cheap gradient; inference keeps
      # reduce_window, whose forward pass XLA fuses ~1.4x faster on CPU.
      if training and self._tiles(spatial, pads):
        return _tiled_max(x, self.pool_size), None
      if self._fast_form_allowed(x):
        # Without NaN cells, and without an all -inf window (the only way to
        # get -inf out), the plain maximum is TF's answer. Skipping the rule
        # lets XLA fuse the pooling with the convolution's bias and
        # activation (jaxnets.guards). A window holding NaN comes out NaN
        # (XLA's max) or, all-NaN, -inf (YNNPACK's skips NaN): both flag;
        # guards.fast_pass also flags any non-finite model input.
        with settings.cpu_only("guarded_max_pool"):
          y = lax.reduce_window(x, -jnp.inf, lax.max, window, strides, full_pads)
          guards.use_exact_path_if(jnp.any(~(y > -jnp.inf)))
        return y, None
      y = lax.reduce_window(_skip_nan(x), -jnp.inf, lax.max, window, strides, full_pads)
      return _at_least_lowest(y), None
    total = lax.reduce_window(x, 0.0, lax.add, window, strides, full_pads)
    # Real cells per window depend only on static shapes: count them on the
    # host once, at trace time, instead of pooling a tensor of ones per call.
    counts = _real_cell_counts(spatial, self.pool_size, self.strides, pads)
    return total / counts.reshape((1,) + counts.shape + (1,)).astype(x.dtype), None

  @staticmethod
  def _fast_form_allowed(x) -> bool:
    """Inside a guarded fast pass, where the platform's settings take it (the CPU's: off
    elsewhere, ``jaxnets.settings.CPU_MEASURED``), on an input large enough to gain."""
    chosen = settings.current()
    return (
      guards.fast_path_allowed()
      and chosen.guard_fast_paths
      and x.size >= chosen.fast_pool_min_floats
    )

  def _tiles(self, spatial, pads) -> bool:
    """Whether the windows tile the input: stride = pool size, no padding."""
    return self.strides == self.pool_size and all(p == (0, 0) for p in pads)


def _windows(x, pool_size):
  """``x`` cut to whole windows and reshaped to ``(batch, o1, k1, o2, k2, ..., channels)``."""
  outs = [n // k for n, k in zip(x.shape[1:-1], pool_size)]
  x = x[(slice(None),) + tuple(slice(0, o * k) for o, k in zip(outs, pool_size))]
  shape = [x.shape[0]]
  for o, k in zip(outs, pool_size):
    shape += [o, k]
  return x.reshape(shape + [x.shape[-1]])


def _window_axes(rank: int) -> tuple[int, ...]:
  return tuple(2 + 2 * i for i in range(rank))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tiled_max(x, pool_size):
  """Max pooling over non-overlapping windows (stride = pool size, no padding).

  The same maxima as ``reduce_window`` (a max is exact in any order), with
  TensorFlow's NaN rule (``_skip_nan``, ``_at_least_lowest``); cells past the
  last whole window are dropped, as ``valid`` pooling does. Its gradient is
  written by hand: each window's output gradient goes to the cells equal to
  the window's maximum, split evenly among ties (as ``jax.grad`` of
  ``jnp.max`` splits it), none to NaN cells. Left to autodiff -- of the NaN
  select, the reshape-and-max, its tie count and the lower clamp -- max
  pooling took ~10 % of the spec CNN's training step at batch 64 (2 cores;
  ~18 % on one); XLA's ``select_and_scatter`` gradient of ``reduce_window``
  was ~9x slower still.
  """
  windows = _windows(_skip_nan(x), pool_size)
  return _at_least_lowest(jnp.max(windows, axis=_window_axes(len(pool_size))))


def _tiled_max_fwd(x, pool_size):
  y = _tiled_max(x, pool_size)
  return y, (x, y)


def _tiled_max_bwd(pool_size, residuals, dy):
  x, y = residuals
  axes = _window_axes(len(pool_size))
  windows = _windows(x, pool_size)
  hit = windows == jnp.expand_dims(y, axes)  # NaN cells never equal the max
  ties = jnp.sum(hit, axis=axes, dtype=x.dtype)
  share = jnp.expand_dims(dy / jnp.maximum(ties, 1), axes)
  dx = jnp.where(hit, share, jnp.zeros((), x.dtype)).reshape(
    (x.shape[0],) + tuple(o * k for o, k in zip(y.shape[1:-1], pool_size)) + (x.shape[-1],)
  )
  # Cells past the last whole window got no gradient.
  return (jnp.pad(dx, [(0, n - d) for n, d in zip(x.shape, dx.shape)]),)


_tiled_max.defvjp(_tiled_max_fwd, _tiled_max_bwd)


# TensorFlow's CPU max pooling starts every window at the lowest finite float
# and keeps a cell only when it compares greater: NaN cells are skipped, an
# all-NaN (or all -inf) window gives -3.4e38, not NaN or -inf. These two steps
# reproduce that; on finite inputs they change nothing.
def _skip_nan(x):
  return jnp.where(jnp.isnan(x), -jnp.inf, x)


def _at_least_lowest(y):
  return jnp.maximum(y, jnp.finfo(y.dtype).min)


def _real_cell_counts(spatial, pool_size, strides, pads) -> np.ndarray:
  """How many unpadded input cells each output window covers, per spatial axis product."""
  per_axis = []
  for n, k, s, (before, after) in zip(spatial, pool_size, strides, pads):
    out = (n + before + after - k) // s + 1
    starts = np.arange(out) * s - before
    per_axis.append(np.minimum(starts + k, n) - np.maximum(starts, 0))
  counts = per_axis[0]
  for axis_counts in per_axis[1:]:
    counts = np.multiply.outer(counts, axis_counts)
  return counts.astype(np.float32)


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class MaxPooling1D(Pooling):
  """Max over windows of ``(batch, steps, channels)``."""

  reducer: ClassVar[str] = "max"
  rank: ClassVar[int] = 1


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class AveragePooling1D(Pooling):
  """Mean over windows of ``(batch, steps, channels)`` (real cells only)."""

  reducer: ClassVar[str] = "average"
  rank: ClassVar[int] = 1


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class MaxPooling2D(Pooling):
  """Max over windows of ``(batch, height, width, channels)``."""

  reducer: ClassVar[str] = "max"
  rank: ClassVar[int] = 2


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class AveragePooling2D(Pooling):
  """Mean over windows of ``(batch, height, width, channels)`` (real cells only)."""

  reducer: ClassVar[str] = "average"
  rank: ClassVar[int] = 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class GlobalPooling(base.Layer):
  """Max/mean over every spatial axis of a channels-last batch.

  ``(batch, *spatial, channels) -> (batch, channels)``, or
  ``(batch, 1, ..., 1, channels)`` with ``keepdims``.
  """

  keepdims: bool = False

  reducer: ClassVar[str] = ""

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    axes = tuple(range(1, x.ndim - 1))
    if self.reducer == "max":
      return jnp.max(x, axis=axes, keepdims=self.keepdims), None
    return jnp.mean(x, axis=axes, keepdims=self.keepdims), None


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class GlobalMaxPooling2D(GlobalPooling):
  """Max over height and width of ``(batch, height, width, channels)``."""

  reducer: ClassVar[str] = "max"


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class GlobalAveragePooling2D(GlobalPooling):
  """Mean over height and width of ``(batch, height, width, channels)``."""

  reducer: ClassVar[str] = "average"


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class GlobalMaxPooling1D(GlobalPooling):
  """Max over time, ``(batch, time, features) -> (batch, features)``.

  Keras 3's GlobalMaxPooling1D ignores the mask (padded steps enter the max)
  and, not supporting masking, drops it.
  """

  reducer: ClassVar[str] = "max"

  # Padded steps enter the max, so removing them can change it.
  trailing_padding_safe = False


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class GlobalAveragePooling1D(GlobalPooling):
  """Mean over time, ``(batch, time, features) -> (batch, features)``.

  With a mask, as Keras 3: masked steps are left out, ``sum(x * mask) /
  sum(mask)`` (an all-padding row gives 0/0 = NaN, as in Keras). The output
  carries no mask. ``keepdims`` keeps a time axis of size 1.
  """

  reducer: ClassVar[str] = "average"

  # Masked steps do not enter the mean.
  trailing_padding_safe = True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    if mask is None:
      return super().apply(params, x, mask, training=training, rng=rng)
    keep = mask[..., None]
    total = jnp.sum(jnp.where(keep, x, jnp.zeros((), x.dtype)), axis=1, keepdims=self.keepdims)
    count = jnp.sum(keep.astype(x.dtype), axis=1, keepdims=self.keepdims)
    return total / count, None
