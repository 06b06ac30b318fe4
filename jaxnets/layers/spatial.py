"""Spatial reshaping layers: zero padding, cropping, up-sampling; 3-D pooling.

Activations are ``(batch, *spatial, channels)`` (``channels_last``) or, where the
Keras layer has a ``data_format`` option and it says ``channels_first``,
``(batch, channels, *spatial)``: these layers only move or interpolate values
along the spatial axes, so either layout is computed exactly. None has
parameters; none carries a time mask on (Keras's do not support masking).

Up-sampling follows Keras: ``nearest`` repeats every cell ``size`` times;
``bilinear`` is TF's ``resize_bilinear`` with half-pixel centres (what Keras's
TF backend runs): output cell ``o`` reads input position ``(o + 0.5) * n / (n * f)
- 0.5``, between its floor (clamped to 0) and ceiling (clamped to ``n - 1``),
interpolated along the width first, then the height, as TF does.
"""

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from jaxnets.layers import base
from jaxnets.layers import pooling

DATA_FORMATS = ("channels_last", "channels_first")


def spatial_axes(ndim: int, data_format: str) -> tuple[int, ...]:
  """The spatial axes of a rank-``ndim`` activation in ``data_format``."""
  if data_format == "channels_first":
    return tuple(range(2, ndim))
  return tuple(range(1, ndim - 1))


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Spatial(base.Layer):
  """Shared checks: ``rank`` spatial axes, a known ``data_format``."""

  data_format: str = "channels_last"

  rank: ClassVar[int] = 0

  def _check(self, option: str, pairs) -> tuple:
    value = tuple(tuple(int(v) for v in pair) for pair in pairs)
    if len(value) != self.rank or any(len(p) != 2 or min(p) < 0 for p in value):
      raise ValueError(
        f"{type(self).__name__} {self.name!r}: {option} {pairs} must be {self.rank} "
        "(before, after) pairs of non-negative ints"
      )
    if self.data_format not in DATA_FORMATS:
      raise ValueError(
        f"{type(self).__name__} {self.name!r}: data_format {self.data_format!r} is not one "
        f"of {DATA_FORMATS}"
      )
    return value

  def _axes(self, x) -> tuple[int, ...]:
    if x.ndim != self.rank + 2:
      raise ValueError(
        f"{type(self).__name__} layer {self.name!r} takes rank-{self.rank + 2} inputs, "
        f"got shape {x.shape}"
      )
    return spatial_axes(x.ndim, self.data_format)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ZeroPadding(_Spatial):
  """Pads every spatial axis with ``padding[i] = (before, after)`` zeros."""

  padding: tuple[tuple[int, int], ...]

  def __post_init__(self):
    object.__setattr__(self, "padding", self._check("padding", self.padding))

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    widths = [(0, 0)] * x.ndim
    for axis, pair in zip(self._axes(x), self.padding):
      widths[axis] = pair
    return jnp.pad(x, widths), None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cropping(_Spatial):
  """Drops ``cropping[i] = (before, after)`` cells from every spatial axis."""

  cropping: tuple[tuple[int, int], ...]

  def __post_init__(self):
    object.__setattr__(self, "cropping", self._check("cropping", self.cropping))

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    index = [slice(None)] * x.ndim
    for axis, (before, after) in zip(self._axes(x), self.cropping):
      if before + after >= x.shape[axis]:
        raise ValueError(
          f"{type(self).__name__} layer {self.name!r}: cropping {(before, after)} leaves "
          f"nothing of axis {axis} (size {x.shape[axis]})"
        )
      index[axis] = slice(before, x.shape[axis] - after)
    return x[tuple(index)], None


@dataclasses.dataclass(frozen=True, kw_only=True)
class UpSampling(_Spatial):
  """Scales spatial axis ``i`` by the integer ``size[i]``.

  Attributes:
    size: factor per spatial axis.
    interpolation: ``"nearest"`` (repeat) or ``"bilinear"`` (2-D only).
  """

  size: tuple[int, ...]
  interpolation: str = "nearest"

  def __post_init__(self):
    self._check("size", [(s, s) for s in self.size])
    if any(int(s) < 1 for s in self.size):
      raise ValueError(f"{type(self).__name__} {self.name!r}: size {self.size} must be >= 1")
    object.__setattr__(self, "size", tuple(int(s) for s in self.size))
    allowed = ("nearest", "bilinear") if self.rank == 2 else ("nearest",)
    if self.interpolation not in allowed:
      raise ValueError(
        f"{type(self).__name__} {self.name!r}: interpolation {self.interpolation!r} is not "
        f"one of {allowed}"
      )

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    axes = self._axes(x)
    if self.interpolation == "nearest":
      for axis, factor in zip(axes, self.size):
        x = jnp.repeat(x, factor, axis=axis)
      return x, None
    # TF interpolates along the width first, then the height.
    for axis, factor in reversed(list(zip(axes, self.size))):
      x = linear_resize(x, axis, x.shape[axis] * factor)
    return x, None


def half_pixel_sources(in_size: int, out_size: int):
  """TF's half-pixel bilinear sources per output cell: ``(lower, upper, lerp)``.

  Computed in float32, as TF's kernel does, so the weights are TF's to the bit.
  """
  scale = np.float32(in_size) / np.float32(out_size)
  position = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
  floor = np.floor(position)
  lower = np.maximum(floor, 0).astype(np.int32)
  upper = np.minimum(np.ceil(position), in_size - 1).astype(np.int32)
  return lower, upper, (position - floor).astype(np.float32)


def linear_resize(x, axis: int, out_size: int):
  """``lower + (upper - lower) * lerp`` along ``axis`` (TF's ``compute_lerp``)."""
  lower, upper, lerp = half_pixel_sources(x.shape[axis], out_size)
  low = jnp.take(x, lower, axis=axis)
  high = jnp.take(x, upper, axis=axis)
  shape = [1] * x.ndim
  shape[axis] = out_size
  return low + (high - low) * jnp.asarray(lerp.reshape(shape))


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class ZeroPadding1D(ZeroPadding):
  """``(batch, steps, channels)``, zeros before and after the steps."""

  rank: ClassVar[int] = 1


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class ZeroPadding2D(ZeroPadding):
  """``(batch, height, width, channels)``: ``((top, bottom), (left, right))`` zeros."""

  rank: ClassVar[int] = 2


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class ZeroPadding3D(ZeroPadding):
  """``(batch, depth, height, width, channels)`` zero padding."""

  rank: ClassVar[int] = 3


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Cropping1D(Cropping):
  """``(batch, steps, channels)`` cropped along the steps (Keras: channels last only)."""

  rank: ClassVar[int] = 1


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Cropping2D(Cropping):
  """``(batch, height, width, channels)`` cropped by ``((top, bottom), (left, right))``."""

  rank: ClassVar[int] = 2


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Cropping3D(Cropping):
  """``(batch, depth, height, width, channels)`` cropped per spatial axis."""

  rank: ClassVar[int] = 3


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class UpSampling1D(UpSampling):
  """``(batch, steps, channels)``: every step repeated ``size`` times."""

  rank: ClassVar[int] = 1


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class UpSampling2D(UpSampling):
  """``(batch, height, width, channels)``, nearest or TF bilinear."""

  rank: ClassVar[int] = 2


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class UpSampling3D(UpSampling):
  """``(batch, depth, height, width, channels)``: every cell repeated (nearest)."""

  rank: ClassVar[int] = 3


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class MaxPooling3D(pooling.Pooling):
  """Max over windows of ``(batch, depth, height, width, channels)``."""

  reducer: ClassVar[str] = "max"
  rank: ClassVar[int] = 3


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class AveragePooling3D(pooling.Pooling):
  """Mean over windows of ``(batch, depth, height, width, channels)`` (real cells only)."""

  reducer: ClassVar[str] = "average"
  rank: ClassVar[int] = 3


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class GlobalMaxPooling3D(pooling.GlobalPooling):
  """Max over depth, height and width of ``(batch, depth, height, width, channels)``."""

  reducer: ClassVar[str] = "max"


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class GlobalAveragePooling3D(pooling.GlobalPooling):
  """Mean over depth, height and width of ``(batch, depth, height, width, channels)``."""

  reducer: ClassVar[str] = "average"
