"""Image resizing layers: ``Resizing`` and ``CenterCrop``, as Keras's TF backend runs them.

Activations are ``(batch, height, width, channels)`` (``channels_last``) or
``(batch, channels, height, width)``. No parameters. Input sizes are static,
so every crop box, pad and interpolation source is computed on the host at
trace time, with the arithmetic Keras uses (float32 where TF computes the box
in tensors, Python floats where Keras computes it from static ints).

Resizing without antialiasing is TF's ``resize_bilinear`` / ``resize_nearest_neighbor``
with half-pixel centres (``tf.image.resize``): output cell ``o`` of ``n_out`` reads
input position ``(o + 0.5) * n_in / n_out`` (nearest: its floor, at most ``n_in - 1``)
or that position ``- 0.5`` (bilinear: see ``spatial.half_pixel_sources``).
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from jaxnets.layers import base
from jaxnets.layers import spatial

INTERPOLATIONS = ("bilinear", "nearest")


def _nearest_sources(in_size: int, out_size: int) -> np.ndarray:
  scale = np.float32(in_size) / np.float32(out_size)
  position = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale
  return np.minimum(np.floor(position), in_size - 1).astype(np.int32)


def resize(x, axes, size, interpolation: str):
  """``x`` resized to ``size`` along the two spatial ``axes`` (TF's half-pixel rule)."""
  if interpolation == "nearest":
    for axis, out in zip(axes, size):
      x = jnp.take(x, _nearest_sources(x.shape[axis], out), axis=axis)
    return x
  # TF interpolates along the width first, then the height.
  for axis, out in reversed(list(zip(axes, size))):
    x = spatial.linear_resize(x, axis, out)
  return x


def _crop(x, axes, starts, sizes):
  index = [slice(None)] * x.ndim
  for axis, start, length in zip(axes, starts, sizes):
    index[axis] = slice(start, start + length)
  return x[tuple(index)]


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Image(base.Layer):
  height: int
  width: int
  data_format: str = "channels_last"

  def _validate(self):
    if self.height < 1 or self.width < 1:
      raise ValueError(f"{type(self).__name__} {self.name!r}: height and width must be >= 1")
    if self.data_format not in spatial.DATA_FORMATS:
      raise ValueError(
        f"{type(self).__name__} {self.name!r}: data_format {self.data_format!r} is not one "
        f"of {spatial.DATA_FORMATS}"
      )

  def _axes(self, x):
    if x.ndim != 4:
      raise ValueError(
        f"{type(self).__name__} layer {self.name!r} takes (batch, height, width, channels) "
        f"images, got shape {x.shape}"
      )
    return spatial.spatial_axes(4, self.data_format)


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Resizing(_Image):
  """Resizes images to ``(height, width)``.

  Attributes:
    interpolation: ``"bilinear"`` or ``"nearest"`` (TF half-pixel, no antialiasing).
    crop_to_aspect_ratio: first crop the largest centred box of the target aspect ratio.
    pad_to_aspect_ratio: first pad ``fill_value`` rows/columns on both sides (TF's box:
      ``(padded - size) // 2`` each side, only when that is positive).
    fill_value: the padding value.
  """

  interpolation: str = "bilinear"
  crop_to_aspect_ratio: bool = False
  pad_to_aspect_ratio: bool = False
  fill_value: float = 0.0

  def __post_init__(self):
    self._validate()
    if self.interpolation not in INTERPOLATIONS:
      raise ValueError(
        f"Resizing {self.name!r}: interpolation {self.interpolation!r} is not one of "
        f"{INTERPOLATIONS}"
      )
    if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
      raise ValueError(f"Resizing {self.name!r}: crop and pad to aspect ratio are exclusive")

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    axes = self._axes(x)
    height, width = (x.shape[a] for a in axes)
    f32 = np.float32
    if self.crop_to_aspect_ratio:
      # tf backend: int32(float32(width * target_h) / target_w), clamped to [1, size].
      crop_h = max(min(height, int(f32(width * self.height) / f32(self.width))), 1)
      crop_w = max(min(width, int(f32(height * self.width) / f32(self.height))), 1)
      starts = (int(f32(height - crop_h) / f32(2)), int(f32(width - crop_w) / f32(2)))
      x = _crop(x, axes, starts, (crop_h, crop_w))
    elif self.pad_to_aspect_ratio:
      pad_h = max(height, int(f32(width * self.height) / f32(self.width)))
      pad_w = max(width, int(f32(height * self.width) / f32(self.height)))
      widths = [(0, 0)] * 4
      for axis, padded, size in zip(axes, (pad_h, pad_w), (height, width)):
        start = int(f32(padded - size) / f32(2))
        widths[axis] = (start, start) if start > 0 else (0, 0)
      x = jnp.pad(x, widths, constant_values=jnp.asarray(self.fill_value, x.dtype))
    return resize(x, axes, (self.height, self.width), self.interpolation), None


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class CenterCrop(_Image):
  """Crops the centred ``(height, width)`` box (start ``(size - target) // 2``); an
  image smaller than the target on either axis is instead cropped to the target's
  aspect ratio and resized bilinearly (Keras's ``smart_resize``)."""

  def __post_init__(self):
    self._validate()

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    axes = self._axes(x)
    height, width = (x.shape[a] for a in axes)
    if height >= self.height and width >= self.width:
      starts = ((height - self.height) // 2, (width - self.width) // 2)
      return _crop(x, axes, starts, (self.height, self.width)), None
    # smart_resize with static sizes: Python float arithmetic.
    crop_h = max(min(height, int(float(width * self.height) / self.width)), 1)
    crop_w = max(min(width, int(float(height * self.width) / self.height)), 1)
    starts = (int(float(height - crop_h) / 2), int(float(width - crop_w) / 2))
    x = _crop(x, axes, starts, (crop_h, crop_w))
    return resize(x, axes, (self.height, self.width), "bilinear"), None
