"""Convolution layers over ``lax.conv_general_dilated``, channels-last.

Layouts (Keras's ``channels_last``, the only one supported):

- ``Conv2D``: activations ``NHWC`` ``(batch, height, width, channels)``; kernel
  ``HWIO`` ``(kh, kw, in_channels / groups, filters)``; bias ``(filters,)``.
- ``Conv1D``: activations ``NWC`` ``(batch, steps, channels)``; kernel ``WIO``
  ``(kw, in_channels / groups, filters)``; bias ``(filters,)``.

These are Keras's own weight layouts, so ported kernels are used as stored.
As in ``jax.example_libraries.stax``, one general layer (``Conv``) serves every
spatial rank; ``Conv1D``/``Conv2D`` only fix the dimension numbers.

Padding follows TensorFlow exactly: ``same`` pads ``total = max((ceil(n / s) - 1)
* s + (k - 1) * d + 1 - n, 0)`` cells per axis, ``total // 2`` before and the
rest (the odd extra cell) *after*; ``causal`` (1-D only) pads ``(k - 1) * d``
cells before. A conv drops any time mask (Keras's Conv layers do not support
masking either).
"""

import contextlib
import dataclasses
from typing import ClassVar

import jax.numpy as jnp
from jax import lax

from jaxnets import activations
from jaxnets import conv_algorithms
from jaxnets import settings
from jaxnets.layers import base
from jaxnets.errors import InputError
from jaxnets.layers import initializers

PADDINGS = ("valid", "same", "causal")


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
  """TensorFlow's ``SAME`` padding ``(before, after)`` for one spatial axis.

  The odd extra cell goes *after* the input (bottom/right), as TF does.
  """
  effective = (kernel - 1) * dilation + 1
  out = -(-size // stride)
  total = max((out - 1) * stride + effective - size, 0)
  return total // 2, total - total // 2


def spatial_padding(
  padding: str, spatial_shape, kernel_size, strides, dilation_rate
) -> list[tuple[int, int]]:
  """Explicit ``(before, after)`` pads per spatial axis for a padding mode."""
  if padding == "valid":
    return [(0, 0)] * len(kernel_size)
  if padding == "same":
    return [
      same_padding(n, k, s, d)
      for n, k, s, d in zip(spatial_shape, kernel_size, strides, dilation_rate)
    ]
  if padding == "causal":
    return [((k - 1) * d, 0) for k, d in zip(kernel_size, dilation_rate)]
  raise ValueError(f"unknown padding {padding!r}; expected one of {PADDINGS}")


def check_window_fits(layer, spatial_shape, window, dilation_rate, pads) -> None:
  """Raises ``InputError`` naming ``layer`` when an input is shorter than its window.

  Shapes are static, so this runs once per traced shape, at no run-time cost.
  Without it a too-short input gives an empty output and a confusing error (or
  an empty result) several layers later.
  """
  for axis, (n, k, d, (before, after)) in enumerate(
    zip(spatial_shape, window, dilation_rate, pads), start=1
  ):
    effective = (k - 1) * d + 1
    if n < 1 or n + before + after < effective:
      needed = max(1, effective - before - after)
      raise InputError(
        f"{type(layer).__name__} layer {layer.name!r}: the input has size {n} along "
        f"axis {axis}, shorter than the layer's window ({effective} cells with padding "
        f"{layer.padding!r}); inputs need at least {needed} there"
      )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Conv(base.Layer):
  """``activation(conv(x, kernel) + bias)`` for any spatial rank, channels last.

  Attributes:
    filters: output channels.
    kernel_size: window size per spatial axis.
    strides: step per spatial axis.
    padding: ``"valid"``, ``"same"`` (TF split: extra cell after) or
      ``"causal"`` (1-D only: all padding before).
    dilation_rate: kernel dilation per spatial axis.
    groups: ``in_channels`` is split into this many groups, each convolved with
      its own ``filters / groups`` output channels (kernel input axis is
      ``in_channels / groups``).
    activation: a Keras activation name.
    use_bias: whether ``bias`` is added.
  """

  filters: int
  kernel_size: tuple[int, ...]
  strides: tuple[int, ...] | None = None
  padding: str = "valid"
  dilation_rate: tuple[int, ...] | None = None
  groups: int = 1
  activation: str = "linear"
  use_bias: bool = True

  # (input, kernel, output) layouts handed to lax; fixed per subclass.
  dimension_numbers: ClassVar[tuple[str, str, str]] = ()

  def __post_init__(self):
    rank = len(self.kernel_size)
    if self.dimension_numbers and rank != len(self.dimension_numbers[0]) - 2:
      raise ValueError(
        f"{type(self).__name__} {self.name!r}: kernel_size "
        f"{self.kernel_size} must have {len(self.dimension_numbers[0]) - 2} dims"
      )
    # Normalise the defaults so get_config round-trips concrete tuples.
    object.__setattr__(self, "kernel_size", tuple(int(k) for k in self.kernel_size))
    object.__setattr__(self, "strides", tuple(int(s) for s in (self.strides or (1,) * rank)))
    object.__setattr__(
      self, "dilation_rate", tuple(int(d) for d in (self.dilation_rate or (1,) * rank))
    )
    if self.padding not in PADDINGS:
      raise ValueError(
        f"{type(self).__name__} {self.name!r}: padding {self.padding!r} is not one of {PADDINGS}"
      )
    if self.padding == "causal" and rank != 1:
      raise ValueError(f"{type(self).__name__} {self.name!r}: causal padding is 1-D only")
    if self.filters % self.groups:
      raise ValueError(
        f"{type(self).__name__} {self.name!r}: filters={self.filters} "
        f"is not divisible by groups={self.groups}"
      )

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    pads = spatial_padding(
      self.padding, x.shape[1:-1], self.kernel_size, self.strides, self.dilation_rate
    )
    check_window_fits(self, x.shape[1:-1], self.kernel_size, self.dilation_rate, pads)
    kernel = params["kernel"]
    channels = x.shape[-1]
    algorithm = self._algorithm(x, kernel, training)
    if (
      algorithm == "direct"
      and self.groups == 1
      and 1 < channels < settings.current().conv_pad_odd_channels_below
      and channels % 2
    ):
      # A small odd channel count (RGB inputs) is slow on XLA:CPU (see
      # jaxnets.settings). A zero input channel with a zero kernel slice only
      # adds exact zeros to each sum.
      with settings.cpu_only("odd_channel_padding"):
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, 1)])
        kernel = jnp.pad(kernel, [(0, 0)] * (kernel.ndim - 2) + [(0, 1), (0, 0)])
    if len(self.kernel_size) == 2:
      # Every algorithm but the direct one was chosen by CPU measurements.
      scope = settings.cpu_only(algorithm) if algorithm != "direct" else contextlib.nullcontext()
      with scope:
        y = conv_algorithms.conv2d(
          x,
          kernel,
          strides=self.strides,
          padding_pairs=pads,
          dilation=self.dilation_rate,
          groups=self.groups,
          algorithm=algorithm,
        )
    else:
      y = lax.conv_general_dilated(
        x,
        kernel,
        window_strides=self.strides,
        padding=pads,
        rhs_dilation=self.dilation_rate,
        dimension_numbers=self.dimension_numbers,
        feature_group_count=self.groups,
      )
    if self.use_bias:
      y = y + params["bias"]
    return activations.get(self.activation)(y), None

  def _algorithm(self, x, kernel, training: bool) -> str:
    """The ``jaxnets.conv_algorithms`` algorithm for this call's static shapes.

    ``settings.conv_algorithm`` forces one wherever it can compute the conv
    (tests, comparisons); ``"auto"`` asks ``choose_algorithm``, with the
    unpadded channel count. 1-D convs stay direct.
    """
    if len(self.kernel_size) != 2:
      return "direct"
    forced = settings.current().conv_algorithm
    if forced != "auto":
      supported = conv_algorithms.supports(
        forced, kernel.shape, self.strides, self.dilation_rate, self.groups
      )
      return forced if supported else "direct"
    return conv_algorithms.choose_algorithm(
      kernel.shape,
      self.strides,
      self.dilation_rate,
      self.groups,
      x.shape[1:3],
      x.shape[-1],
      settings.platform(),
      batch=x.shape[0],
      training=training,
    )

  def init(self, rng, input_shape):
    in_channels = input_shape[-1]
    if in_channels % self.groups:
      raise ValueError(
        f"{type(self).__name__} {self.name!r}: {in_channels} input channels "
        f"are not divisible by groups={self.groups}"
      )
    shape = self.kernel_size + (in_channels // self.groups, self.filters)
    params = {"kernel": initializers.glorot_uniform(rng, shape)}
    if self.use_bias:
      params["bias"] = jnp.zeros((self.filters,), jnp.float32)
    return params


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Conv1D(Conv):
  """1-D convolution: ``NWC`` activations, ``WIO`` kernel ``(kw, in/groups, filters)``."""

  dimension_numbers: ClassVar[tuple[str, str, str]] = ("NWC", "WIO", "NWC")


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Conv2D(Conv):
  """2-D convolution: ``NHWC`` activations, ``HWIO`` kernel ``(kh, kw, in/groups, filters)``."""

  dimension_numbers: ClassVar[tuple[str, str, str]] = ("NHWC", "HWIO", "NHWC")
