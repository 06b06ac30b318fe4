"""Depthwise, separable, transposed and 3-D convolutions, channels-last.

Layouts (Keras's ``channels_last``; the weights are used as Keras stores them):

- ``DepthwiseConv1D/2D``: activations ``NWC``/``NHWC``; kernel ``(k..., in_channels,
  depth_multiplier)``; bias ``(in_channels * depth_multiplier,)``. Output channel
  ``c * depth_multiplier + m`` is input channel ``c`` convolved with ``kernel[..., c, m]``.
- ``SeparableConv1D/2D``: the depthwise convolution above (``depthwise_kernel``,
  no bias), then a pointwise (1x1) one: ``pointwise_kernel`` ``(1..., in_channels *
  depth_multiplier, filters)``; bias ``(filters,)``.
- ``Conv1DTranspose/Conv2DTranspose``: kernel ``(k..., filters, in_channels)`` (output
  channels *before* input channels, as for TF's ``conv2d_transpose``); bias ``(filters,)``.
- ``Conv3D``: activations ``NDHWC``, kernel ``DHWIO``.

Padding is TensorFlow's (``conv.spatial_padding``: the odd extra cell after). With
strides and dilation both above 1, Keras's TF backend runs a depthwise/separable
conv dilated at stride 1 on the ``same``-padded input and keeps every stride-th
output; that is the same set of windows as the strided conv with the same pads.
"""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import lax

from jaxnets import activations
from jaxnets import settings
from jaxnets.layers import base
from jaxnets.layers import conv
from jaxnets.layers import initializers

SPATIAL = {1: "W", 2: "HW", 3: "DHW"}

# Depthwise formulations: "grouped" is lax.conv_general_dilated with one group per
# input channel; "taps" sums one shifted, strided slice of the input per kernel
# cell, each times that cell's per-channel weights (elementwise multiply-adds).
DEPTHWISE_ALGORITHMS = ("auto", "grouped", "taps")
# Forced formulation for every depthwise conv traced from now on ("auto": the rule).
depthwise_algorithm = "auto"
# At inference on CPU the taps run over the batch in blocks of this many images
# (``lax.map``): 1.04-2.8x faster than one pass over a batch of 32 on MobileNetV2's
# shapes (blocks of 2 the most consistent of 1/2/4/8/16; see BENCHMARKS.md).
TAPS_BLOCK_IMAGES = 2


def _dimension_numbers(rank: int, kernel: str = "IO") -> tuple[str, str, str]:
  spatial = SPATIAL[rank]
  return ("N" + spatial + "C", spatial + kernel, "N" + spatial + "C")


def choose_depthwise_algorithm(kernel_size, strides, channels: int, batch: int) -> str:
  """Which depthwise formulation to use; see BENCHMARKS.md "Depthwise convolution".

  On XLA:CPU the grouped convolution is a slow generic loop when there are many
  groups, while the multiply-adds over kernel cells fuse into one pass that
  vectorises along the channel axis. The taps win wherever the kernel is small
  (measured up to 5x5, MobileNet shapes, batch 1 and 32); on an accelerator the
  grouped convolution is left to the vendor library.
  """
  del strides, channels, batch
  if settings.platform() != settings.CPU:
    return "grouped"
  cells = 1
  for k in kernel_size:
    cells *= k
  return "taps" if cells <= 25 else "grouped"


def taps_block_images(batch, training: bool) -> int | None:
  """Images per block for the taps (``None``: the whole batch at once).

  Only at inference on CPU, for a static batch larger than one block: under
  ``jax.grad`` the loop would become a scan whose speed was not measured, and a
  symbolic (exported) batch cannot be cut into blocks.
  """
  if training or settings.platform() != settings.CPU or not isinstance(batch, int):
    return None
  return TAPS_BLOCK_IMAGES if batch > TAPS_BLOCK_IMAGES else None


def depthwise_conv(
  x, kernel, *, strides, pads, dilation, algorithm: str = "auto", block_images: int | None = None
):
  """Depthwise convolution of channels-last ``x`` with ``kernel (k..., C, M)``.

  Returns ``(batch, out..., C * M)``, channel ``c * M + m`` from input channel ``c``.
  ``pads`` are explicit ``(before, after)`` pairs per spatial axis; ``block_images``
  runs the taps over the batch in blocks of that many images (same numbers).
  """
  rank = x.ndim - 2
  kernel_size = kernel.shape[:rank]
  channels, multiplier = kernel.shape[rank], kernel.shape[rank + 1]
  if algorithm == "auto":
    algorithm = depthwise_algorithm
  if algorithm == "auto":
    algorithm = choose_depthwise_algorithm(kernel_size, strides, channels, x.shape[0])
  if algorithm == "grouped":
    return lax.conv_general_dilated(
      x,
      kernel.reshape(kernel_size + (1, channels * multiplier)),
      window_strides=strides,
      padding=pads,
      rhs_dilation=dilation,
      dimension_numbers=_dimension_numbers(rank),
      feature_group_count=channels,
    )
  if algorithm != "taps":
    raise ValueError(f"unknown depthwise algorithm {algorithm!r}; one of {DEPTHWISE_ALGORITHMS}")
  with settings.cpu_only("depthwise_taps"):
    if block_images and x.shape[0] > block_images:
      return lax.map(
        lambda image: _depthwise_taps(image[None], kernel, strides, pads, dilation)[0],
        x,
        batch_size=block_images,
      )
    return _depthwise_taps(x, kernel, strides, pads, dilation)


def _depthwise_taps(x, kernel, strides, pads, dilation):
  """``sum over kernel cells t of x_padded[shifted by t, strided] * kernel[t]``."""
  rank = x.ndim - 2
  kernel_size = kernel.shape[:rank]
  channels, multiplier = kernel.shape[rank], kernel.shape[rank + 1]
  x = jnp.pad(x, [(0, 0)] + [tuple(p) for p in pads] + [(0, 0)])
  if multiplier > 1:
    # Output channel c * M + m reads input channel c.
    x = jnp.repeat(x, multiplier, axis=-1)
  weights = kernel.reshape(kernel_size + (channels * multiplier,))
  padded = x.shape[1:-1]
  outs = [
    (n - (k - 1) * d - 1) // s + 1 for n, k, d, s in zip(padded, kernel_size, dilation, strides)
  ]
  total = None
  for cell in _cells(kernel_size):
    start = (0,) + tuple(c * d for c, d in zip(cell, dilation)) + (0,)
    limit = (
      (x.shape[0],)
      + tuple(b + (o - 1) * s + 1 for b, o, s in zip(start[1:], outs, strides))
      + (x.shape[-1],)
    )
    window = lax.slice(x, start, limit, (1,) + tuple(strides) + (1,))
    term = window * weights[cell]
    total = term if total is None else total + term
  return total


def _cells(kernel_size):
  cells = [()]
  for k in kernel_size:
    cells = [c + (i,) for c in cells for i in range(k)]
  return cells


def _normalise(layer, rank: int) -> None:
  """Concrete int tuples for the window options (so configs round-trip)."""
  if len(layer.kernel_size) != rank:
    raise ValueError(
      f"{type(layer).__name__} {layer.name!r}: kernel_size {layer.kernel_size} must have "
      f"{rank} dims"
    )
  object.__setattr__(layer, "kernel_size", tuple(int(k) for k in layer.kernel_size))
  for option in ("strides", "dilation_rate"):
    value = getattr(layer, option) or (1,) * rank
    if len(value) != rank or any(int(v) < 1 for v in value):
      raise ValueError(
        f"{type(layer).__name__} {layer.name!r}: {option} {value} must be {rank} positive ints"
      )
    object.__setattr__(layer, option, tuple(int(v) for v in value))
  if layer.padding not in ("valid", "same"):
    raise ValueError(
      f"{type(layer).__name__} {layer.name!r}: padding {layer.padding!r} is not 'valid' or 'same'"
    )


def _window_pads(layer, x):
  pads = conv.spatial_padding(
    layer.padding, x.shape[1:-1], layer.kernel_size, layer.strides, layer.dilation_rate
  )
  conv.check_window_fits(layer, x.shape[1:-1], layer.kernel_size, layer.dilation_rate, pads)
  return pads


@dataclasses.dataclass(frozen=True, kw_only=True)
class DepthwiseConv(base.Layer):
  """``activation(depthwise(x, kernel) + bias)``; see the module docstring for layouts.

  Attributes:
    kernel_size: window size per spatial axis.
    depth_multiplier: output channels per input channel.
    strides, dilation_rate: per spatial axis.
    padding: ``"valid"`` or ``"same"`` (TF split).
    activation: a Keras activation name.
    use_bias: whether ``bias`` is added.
  """

  kernel_size: tuple[int, ...]
  depth_multiplier: int = 1
  strides: tuple[int, ...] | None = None
  padding: str = "valid"
  dilation_rate: tuple[int, ...] | None = None
  activation: str = "linear"
  use_bias: bool = True

  rank: ClassVar[int] = 0

  def __post_init__(self):
    _normalise(self, self.rank)
    if self.depth_multiplier < 1:
      raise ValueError(f"{type(self).__name__} {self.name!r}: depth_multiplier must be >= 1")

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    with jax.named_scope(self.name):
      y = depthwise_conv(
        x,
        params["kernel"],
        strides=self.strides,
        pads=_window_pads(self, x),
        dilation=self.dilation_rate,
        block_images=taps_block_images(x.shape[0], training),
      )
      if self.use_bias:
        y = y + params["bias"]
      return activations.get(self.activation)(y), None

  def init(self, rng, input_shape):
    shape = self.kernel_size + (input_shape[-1], self.depth_multiplier)
    params = {"kernel": initializers.glorot_uniform(rng, shape)}
    if self.use_bias:
      params["bias"] = jnp.zeros((input_shape[-1] * self.depth_multiplier,), jnp.float32)
    return params


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class DepthwiseConv1D(DepthwiseConv):
  """Depthwise 1-D convolution: ``NWC`` activations, kernel ``(kw, C, M)``."""

  rank: ClassVar[int] = 1


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class DepthwiseConv2D(DepthwiseConv):
  """Depthwise 2-D convolution: ``NHWC`` activations, kernel ``(kh, kw, C, M)``."""

  rank: ClassVar[int] = 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class SeparableConv(base.Layer):
  """``activation(pointwise(depthwise(x)) + bias)``; layouts in the module docstring.

  Attributes:
    filters: output channels of the pointwise step.
    Others as ``DepthwiseConv``.
  """

  filters: int
  kernel_size: tuple[int, ...]
  depth_multiplier: int = 1
  strides: tuple[int, ...] | None = None
  padding: str = "valid"
  dilation_rate: tuple[int, ...] | None = None
  activation: str = "linear"
  use_bias: bool = True

  rank: ClassVar[int] = 0

  def __post_init__(self):
    _normalise(self, self.rank)
    if self.depth_multiplier < 1:
      raise ValueError(f"{type(self).__name__} {self.name!r}: depth_multiplier must be >= 1")

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    with jax.named_scope(self.name):
      h = depthwise_conv(
        x,
        params["depthwise_kernel"],
        strides=self.strides,
        pads=_window_pads(self, x),
        dilation=self.dilation_rate,
        block_images=taps_block_images(x.shape[0], training),
      )
      pointwise = params["pointwise_kernel"]
      y = jnp.dot(h, pointwise.reshape(pointwise.shape[-2:]))
      if self.use_bias:
        y = y + params["bias"]
      return activations.get(self.activation)(y), None

  def init(self, rng, input_shape):
    depthwise_rng, pointwise_rng = jax.random.split(rng)
    channels = input_shape[-1]
    params = {
      "depthwise_kernel": initializers.glorot_uniform(
        depthwise_rng, self.kernel_size + (channels, self.depth_multiplier)
      ),
      "pointwise_kernel": initializers.glorot_uniform(
        pointwise_rng, (1,) * self.rank + (channels * self.depth_multiplier, self.filters)
      ),
    }
    if self.use_bias:
      params["bias"] = jnp.zeros((self.filters,), jnp.float32)
    return params


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class SeparableConv1D(SeparableConv):
  """Separable 1-D convolution over ``NWC``."""

  rank: ClassVar[int] = 1


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class SeparableConv2D(SeparableConv):
  """Separable 2-D convolution over ``NHWC``."""

  rank: ClassVar[int] = 2


def transpose_output_size(n, kernel, stride, dilation, padding, output_padding) -> int:
  """Keras's output length of a transposed convolution along one axis."""
  effective = (kernel - 1) * dilation + 1
  if padding == "valid":
    extra = max(effective, stride) - effective if output_padding is None else output_padding
    return (n - 1) * stride + effective + extra
  if output_padding is None:
    return n * stride
  return (n - 1) * stride + effective % 2 + output_padding


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConvTranspose(base.Layer):
  """``activation(conv_transpose(x, kernel) + bias)``, TF's ``conv_transpose``.

  The result is the gradient, with respect to its input, of the TF convolution
  (``strides``, ``padding``, ``dilation_rate``) that maps an input of the output
  size (``transpose_output_size``) to ``x``. Computed as a forward convolution of
  ``x`` dilated by the strides, with the kernel flipped and its channel axes
  swapped, padded ``effective - 1 - before`` cells in front (``before``: the TF
  padding of that forward conv) and whatever the output size needs after.

  Attributes:
    filters: output channels.
    kernel_size, strides, dilation_rate: per spatial axis.
    padding: ``"valid"`` or ``"same"``.
    output_padding: extra output cells per axis (each below its stride) or ``None``.
    activation, use_bias: as ``Conv``.
  """

  filters: int
  kernel_size: tuple[int, ...]
  strides: tuple[int, ...] | None = None
  padding: str = "valid"
  output_padding: tuple[int, ...] | None = None
  dilation_rate: tuple[int, ...] | None = None
  activation: str = "linear"
  use_bias: bool = True

  rank: ClassVar[int] = 0

  def __post_init__(self):
    _normalise(self, self.rank)
    if self.output_padding is not None:
      value = tuple(int(p) for p in self.output_padding)
      if len(value) != self.rank or any(
        not 0 <= p < s for p, s in zip(value, self.strides, strict=True)
      ):
        raise ValueError(
          f"{type(self).__name__} {self.name!r}: output_padding {value} must be "
          f"{self.rank} ints, each >= 0 and below its stride {self.strides}"
        )
      object.__setattr__(self, "output_padding", value)

  def output_size(self, spatial) -> tuple[int, ...]:
    output_padding = self.output_padding or (None,) * self.rank
    return tuple(
      transpose_output_size(n, k, s, d, self.padding, p)
      for n, k, s, d, p in zip(
        spatial, self.kernel_size, self.strides, self.dilation_rate, output_padding
      )
    )

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    with jax.named_scope(self.name):
      spatial = x.shape[1:-1]
      out = self.output_size(spatial)
      forward_pads = conv.spatial_padding(
        self.padding, out, self.kernel_size, self.strides, self.dilation_rate
      )
      pads = []
      for n, o, k, s, d, (before, _) in zip(
        spatial, out, self.kernel_size, self.strides, self.dilation_rate, forward_pads
      ):
        effective = (k - 1) * d + 1
        front = effective - 1 - before
        # (front + dilated input + back) must hold out + effective - 1 cells.
        pads.append((front, o + effective - 1 - front - ((n - 1) * s + 1)))
      kernel = params["kernel"]
      flipped = kernel[(slice(None, None, -1),) * self.rank]
      y = lax.conv_general_dilated(
        x,
        flipped,
        window_strides=(1,) * self.rank,
        padding=pads,
        lhs_dilation=self.strides,
        rhs_dilation=self.dilation_rate,
        dimension_numbers=_dimension_numbers(self.rank, "OI"),
      )
      if self.use_bias:
        y = y + params["bias"]
      return activations.get(self.activation)(y), None

  def init(self, rng, input_shape):
    shape = self.kernel_size + (self.filters, input_shape[-1])
    # Keras's glorot fans for a transposed kernel read its last two axes as (in, out);
    # the limit is symmetric in them.
    params = {"kernel": initializers.glorot_uniform(rng, shape)}
    if self.use_bias:
      params["bias"] = jnp.zeros((self.filters,), jnp.float32)
    return params


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Conv1DTranspose(ConvTranspose):
  """Transposed 1-D convolution: ``NWC``, kernel ``(kw, filters, in_channels)``."""

  rank: ClassVar[int] = 1


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Conv2DTranspose(ConvTranspose):
  """Transposed 2-D convolution: ``NHWC``, kernel ``(kh, kw, filters, in_channels)``."""

  rank: ClassVar[int] = 2


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Conv3D(conv.Conv):
  """3-D convolution: ``NDHWC`` activations, ``DHWIO`` kernel ``(kd, kh, kw, in/groups, filters)``."""

  dimension_numbers: ClassVar[tuple[str, str, str]] = ("NDHWC", "DHWIO", "NDHWC")
