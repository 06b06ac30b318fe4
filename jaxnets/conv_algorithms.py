"""Interchangeable 2-D convolution algorithms, and the rule that picks one.

Every algorithm computes the same function as ``lax.conv_general_dilated`` with
``("NHWC", "HWIO", "NHWC")`` dimension numbers:

- ``x``: activations ``NHWC`` ``(batch, height, width, in_channels)``.
- ``kernel``: ``HWIO`` ``(kh, kw, in_channels / groups, filters)`` (Keras's
  own ``Conv2D`` kernel layout, used as stored).
- result: ``NHWC`` ``(batch, out_height, out_width, filters)``.

Padding is always explicit ``((top, bottom), (left, right))``; TensorFlow's
``same`` split (the odd extra cell after) is the caller's business
(``jaxnets.layers.conv.spatial_padding``).

Algorithms (``ALGORITHMS``):

- ``"direct"``: ``lax.conv_general_dilated`` itself; any kernel, stride,
  dilation and group count. The reference, and the only choice on GPU/TPU.
- ``"winograd_f2"``: Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray,
  "Fast Algorithms for Convolutional Neural Networks", 2015). 3x3 kernels,
  stride 1, dilation 1, one group. 16 multiplies per 2x2 output tile instead
  of 36, done as 16 matmuls over the channels.
- ``"winograd_f4"``: F(4x4, 3x3): 36 multiplies per 4x4 tile instead of 144,
  but its transforms hold 4, 5, 8 and 1/24 and it misses the parity rule
  (``port.compare``); implemented and tested, never chosen (see ``winograd_f4``).
- ``"im2col"``: the kh*kw shifted (strided, dilated) views of the input side by
  side, then one matmul with the kernel read as ``(kh * kw * in, filters)``.
  Any kernel, stride and dilation; one group. A 1x1 kernel is its degenerate
  case: one (strided) view and a plain matmul over the channels.

All of them are built from slices, adds and ``jnp.matmul``/``einsum``, so
``jax.grad`` of each is again slices, adds and matmuls -- not XLA:CPU's
convolution back-propagation, which measured 5.6-8.3x its own forward pass for
1x1 and 3x3 kernels (``bench/conv_algorithms.py``).

Every matmul asks for ``lax.Precision.HIGHEST``: XLA:CPU computes float32
matmuls in full float32 anyway (measured: same numbers, same speed), but a GPU
would otherwise be free to use TF32 and miss the parity rule (``port.compare``).

``choose_algorithm`` picks one per layer from the shapes alone; its thresholds
and the batch blocking are the fields of ``AlgorithmSettings``, with their
measurements.
"""

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

ALGORITHMS = ("direct", "winograd_f2", "winograd_f4", "im2col")

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
_PRECISION = lax.Precision.HIGHEST

# --- Winograd transform matrices ----------------------------------------------------------------
# Y = A^T [ (G g G^T) * (B^T d B) ] A for one output tile, with g the 3x3 kernel
# and d the input tile (Lavin & Gray 2015, eq. 8). Written as numpy constants:
# the input and output transforms are unrolled into adds at trace time.

_F2_BT = np.array(
  [
    [1, 0, -1, 0],
    [0, 1, 1, 0],
    [0, -1, 1, 0],
    [0, 1, 0, -1],
  ],
  np.float64,
)
_F2_G = np.array(
  [
    [1, 0, 0],
    [1 / 2, 1 / 2, 1 / 2],
    [1 / 2, -1 / 2, 1 / 2],
    [0, 0, 1],
  ],
  np.float64,
)
_F2_AT = np.array(
  [
    [1, 1, 1, 0],
    [0, 1, -1, -1],
  ],
  np.float64,
)

_F4_BT = np.array(
  [
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
  ],
  np.float64,
)
_F4_G = np.array(
  [
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
  ],
  np.float64,
)
_F4_AT = np.array(
  [
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 1],
  ],
  np.float64,
)


@dataclasses.dataclass(frozen=True)
class AlgorithmSettings:
  """Where ``choose_algorithm`` leaves the direct convolution, and how blocks are cut.

  Defaults measured with ``python -m bench.conv_algorithms`` (interleaved
  medians; the table is in that module's docstring) on a 2-core AMD EPYC (AVX2
  + FMA, 1 MiB L2 per core, 16 MiB L3), jax 0.10.2, XLA:CPU, batch 256 unless
  said otherwise, speeds relative to ``lax.conv_general_dilated``. "Training"
  is the forward pass plus ``jax.grad``, where XLA:CPU's own convolution
  gradient is slow (5.6-8.3x its forward pass for 1x1 and 3x3 kernels, 3.7x
  at 5x5), so the choice differs from inference.

  Attributes:
    min_activation_floats: below ``batch * height * width * (in_channels +
      filters)`` floats (about the layer's input plus output activations) the
      direct convolution is kept: the other forms run a few dozen small ops
      whose fixed costs then dominate. 256 Ki floats (1 MiB): Winograd ran
      0.3-1.0x at 196 Ki and below (every spec conv at batch 1; 64 -> 128 at
      8x8 batch 16) and 0.99-1.44x at 393-573 Ki (32 -> 64 at 16x16 batch 16:
      0.99x forward, 1.44x training; 3 -> 32 at 32x32 batch 16: 1.28x
      training), better above.
    winograd_min_in_channels: at inference, a 3x3 stride-1 dilation-1 conv
      uses Winograd F(2x2, 3x3) from this many input channels up. 32: at 16x16
      (-> 64 channels) it ran 0.63x with 4 input channels, 0.79x with 8,
      0.89x with 16 and 1.06-1.30x with 32; 64 -> 128 at 8x8 ran 1.40-1.59x,
      3 -> 32 at 32x32 0.68-0.90x. In training Winograd won from 3 input
      channels (3 -> 32: 8-9.5x; 4-32 -> 64: 3.8-6.7x; 64 -> 128: 2.4-2.5x), so
      there this threshold does not apply. Only used with
      ``winograd_at_inference``.
    winograd_at_inference: whether inference uses Winograd at all. False: the
      per-layer timings above are of each convolution alone, but inside a
      model XLA fuses the direct convolution with its bias, activation and
      pooling, and the spec CNN as a whole (batch 256, jitted forward,
      interleaved) ran 65 ms with every conv direct against 83 ms with
      Winograd for the 32- and 64-channel layers (and 99 ms with Winograd
      everywhere it applies). Training keeps Winograd: there the gradient, not
      the fusion, dominates.
    im2col_max_patch_features: in training, a conv Winograd cannot compute
      uses im2col when ``kh * kw * in_channels`` is at most this. 576: im2col
      trained 4.4x faster at 1x1 64 -> 128 (64 features) and 3.4x at 3x3
      stride 2 32 -> 64 (288), but 0.83x at 5x5 32 -> 32 (800). At inference
      it is never chosen: the same shapes ran anywhere from 0.6x to 1.9x from
      one run to the next (32 -> 64 at 16x16: 0.56-1.30x), the least robust
      form measured.
    block_bytes: the Winograd and im2col forms run the batch in blocks of
      images whose float32 intermediates (transformed tiles or patches, plus
      the matmul's output) take about this many bytes, one block after
      another (``lax.map``), so they stay in cache instead of streaming the
      whole batch's intermediates through memory several times. 4 MiB: over
      0 (one block), 1, 2, 4, 8 and 16 MiB, it was within 20 % of the fastest
      size for every spec conv and mode in two sweeps; unblocked, Winograd
      ran 32 -> 64 at 16x16 at 0.5-0.6x forward, blocked 1.2-1.3x.
      ``0``: one block.
  """

  min_activation_floats: int = 256 * 1024
  winograd_min_in_channels: int = 32
  winograd_at_inference: bool = False
  im2col_max_patch_features: int = 576
  block_bytes: int = 4 * 1024 * 1024

  def __post_init__(self):
    for field in dataclasses.fields(self):
      if getattr(self, field.name) < 0:
        raise ValueError(f"{field.name} must be >= 0, got {getattr(self, field.name)}")


DEFAULT_SETTINGS = AlgorithmSettings()


def choose_algorithm(
  kernel_shape: Sequence[int],
  strides: Sequence[int],
  dilation: Sequence[int],
  groups: int,
  input_spatial: Sequence[int],
  in_channels: int,
  platform: str,
  *,
  batch: int,
  training: bool,
  settings: AlgorithmSettings = DEFAULT_SETTINGS,
) -> str:
  """The algorithm for one 2-D convolution, from its static shapes alone.

  Args:
    kernel_shape: ``(kh, kw, in_channels / groups, filters)`` (HWIO).
    strides: ``(sh, sw)``.
    dilation: ``(dh, dw)`` kernel dilation.
    groups: feature groups.
    input_spatial: ``(height, width)`` of the unpadded input.
    in_channels: input channels (all groups together).
    platform: ``jax.default_backend()`` or a device's ``platform``:
      ``"cpu"``, ``"gpu"``/``"cuda"``/``"rocm"``, ``"tpu"``.
    batch: images per call (static under ``jit``).
    training: whether the pass will be differentiated (the layer's
      ``training`` flag): the algorithms' gradients differ far more in speed
      than their forward passes.
    settings: the measured cut-over points.

  Returns:
    One of ``ALGORITHMS``; never ``"winograd_f4"`` (see ``winograd_f4``).

  On CPU (measured, see ``AlgorithmSettings``):

  - one group, at least ``min_activation_floats``, 3x3, stride 1,
    dilation 1: Winograd F(2x2, 3x3) in training (at inference only with
    ``winograd_at_inference``, from ``winograd_min_in_channels`` channels);
  - one group, at least ``min_activation_floats``, training, any other kernel
    with ``kh * kw * in_channels <= im2col_max_patch_features``: im2col;
  - otherwise the direct convolution.

  Off CPU this is always ``"direct"``: cuDNN and the TPU's convolution units
  are hard to beat, and no GPU was available to measure otherwise.
  """
  if platform != "cpu" or groups != 1:
    return "direct"
  kh, kw, _, filters = (int(d) for d in kernel_shape)
  height, width = (int(n) for n in input_spatial)
  if batch * height * width * (in_channels + filters) < settings.min_activation_floats:
    return "direct"
  winograd = (kh, kw) == (3, 3) and tuple(strides) == (1, 1) and tuple(dilation) == (1, 1)
  at_inference = settings.winograd_at_inference and in_channels >= settings.winograd_min_in_channels
  if winograd and (training or at_inference):
    return "winograd_f2"
  if training and not winograd and kh * kw * in_channels <= settings.im2col_max_patch_features:
    return "im2col"
  return "direct"


def supports(
  algorithm: str,
  kernel_shape: Sequence[int],
  strides: Sequence[int],
  dilation: Sequence[int],
  groups: int,
) -> bool:
  """Whether ``algorithm`` can compute this convolution (``conv2d`` raises if not)."""
  return _unsupported_reason(algorithm, kernel_shape, strides, dilation, groups) is None


def _unsupported_reason(algorithm, kernel_shape, strides, dilation, groups) -> str | None:
  if algorithm not in ALGORITHMS:
    return f"unknown algorithm {algorithm!r}; expected one of {ALGORITHMS}"
  if algorithm == "direct":
    return None
  if groups != 1:
    return f"{algorithm} needs groups=1, got groups={groups}"
  if algorithm == "im2col":
    return None
  kh, kw = int(kernel_shape[0]), int(kernel_shape[1])
  if (kh, kw) != (3, 3):
    return f"{algorithm} needs a 3x3 kernel, got {kh}x{kw}"
  if tuple(strides) != (1, 1):
    return f"{algorithm} needs strides (1, 1), got {tuple(strides)}"
  if tuple(dilation) != (1, 1):
    return f"{algorithm} needs dilation (1, 1), got {tuple(dilation)}"
  return None


def conv2d(
  x: jax.Array,
  kernel: jax.Array,
  *,
  strides: Sequence[int] = (1, 1),
  padding_pairs: Sequence[Sequence[int]] = ((0, 0), (0, 0)),
  dilation: Sequence[int] = (1, 1),
  groups: int = 1,
  algorithm: str = "direct",
  block_bytes: int | None = None,
) -> jax.Array:
  """A 2-D convolution (cross-correlation, as in Keras) by the named algorithm.

  Args:
    x: ``(batch, height, width, in_channels)`` float32 (NHWC).
    kernel: ``(kh, kw, in_channels / groups, filters)`` float32 (HWIO).
    strides: ``(sh, sw)``.
    padding_pairs: explicit zero padding ``((top, bottom), (left, right))``.
    dilation: ``(dh, dw)`` kernel dilation.
    groups: feature groups (``"direct"`` only for more than one).
    algorithm: one of ``ALGORITHMS``.
    block_bytes: batch blocking of the non-direct algorithms (see
      ``AlgorithmSettings.block_bytes``); ``None``: the default. Each image's
      output is the same sum either way; only the matmul's float32 rounding
      can differ (its summation order may depend on the block's size).

  Returns:
    ``(batch, out_height, out_width, filters)`` with ``out = (n + before +
    after - (k - 1) * d - 1) // s + 1`` per axis.

  Raises:
    ValueError: the algorithm cannot compute this convolution (names why).
  """
  strides = tuple(int(s) for s in strides)
  dilation = tuple(int(d) for d in dilation)
  pads = tuple((int(b), int(a)) for b, a in padding_pairs)
  reason = _unsupported_reason(algorithm, kernel.shape, strides, dilation, groups)
  if reason is not None:
    raise ValueError(reason)
  # Named so a profile or an HLO dump says which algorithm the time went to.
  with jax.named_scope(f"conv2d_{algorithm}"):
    if algorithm == "direct":
      return direct(
        x, kernel, strides=strides, padding_pairs=pads, dilation=dilation, groups=groups
      )
    return _blocked(x, kernel, strides, pads, dilation, algorithm, block_bytes)


def _blocked(x, kernel, strides, pads, dilation, algorithm, block_bytes):
  """A non-direct algorithm over the batch in blocks (``AlgorithmSettings.block_bytes``)."""
  kh, kw, cin, cout = kernel.shape
  out_h, out_w = _output_size(x.shape[1:3], (kh, kw), strides, pads, dilation)
  if algorithm == "im2col":
    image_floats = out_h * out_w * (kh * kw * cin + cout)
    fn = functools.partial(
      im2col, kernel=kernel, strides=strides, padding_pairs=pads, dilation=dilation
    )
  else:
    side = 2 if algorithm == "winograd_f2" else 4  # output tile side m
    tiles = -(-out_h // side) * -(-out_w // side)
    image_floats = tiles * (side + 2) ** 2 * (cin + cout)
    fn = functools.partial(
      winograd_f2 if algorithm == "winograd_f2" else winograd_f4, kernel=kernel, padding_pairs=pads
    )
  if block_bytes is None:
    block_bytes = DEFAULT_SETTINGS.block_bytes
  return _in_batch_blocks(fn, x, 4 * image_floats, block_bytes)


def _output_size(spatial, kernel_size, strides, pads, dilation) -> tuple[int, int]:
  return tuple(
    (n + b + a - (k - 1) * d - 1) // s + 1
    for n, k, s, (b, a), d in zip(spatial, kernel_size, strides, pads, dilation)
  )


def _in_batch_blocks(fn, x, image_bytes: int, block_bytes: int):
  """``fn(x)``, computed a block of images at a time, one block after another.

  A block holds the largest power of two of images (at least one) whose
  intermediates take at most ``block_bytes``; then the blocks are evened out,
  and a batch that does not divide is padded with zero images whose outputs
  are dropped (fewer than one per block). ``block_bytes=0``: one block.
  """
  batch = x.shape[0]
  images = block_bytes // max(image_bytes, 1)
  if block_bytes == 0 or images >= batch:
    return fn(x)
  images = 1 << (max(images, 1).bit_length() - 1)
  blocks = -(-batch // images)
  images = -(-batch // blocks)
  padded = blocks * images
  if padded != batch:
    x = jnp.pad(x, ((0, padded - batch),) + ((0, 0),) * (x.ndim - 1))
  y = lax.map(fn, x.reshape((blocks, images) + x.shape[1:]))
  y = y.reshape((padded,) + y.shape[2:])
  return y[:batch] if padded != batch else y


def direct(x, kernel, *, strides, padding_pairs, dilation, groups=1):
  """``lax.conv_general_dilated`` in NHWC/HWIO: the reference algorithm."""
  return lax.conv_general_dilated(
    x,
    kernel,
    window_strides=strides,
    padding=padding_pairs,
    rhs_dilation=dilation,
    dimension_numbers=_DIMENSION_NUMBERS,
    feature_group_count=groups,
    precision=_PRECISION,
  )


def im2col(x, kernel, *, strides, padding_pairs, dilation):
  """Shifted views side by side, then one matmul (groups 1, any kernel).

  With ``xp`` the padded input, tap ``(i, j)`` of the kernel sees the view
  ``xp[:, i*dh :: sh, j*dw :: sw, :]`` cut to ``(batch, out_h, out_w, in)``.
  The ``kh * kw`` views are concatenated on the channel axis in ``(i, j, c)``
  order -- the row-major order of the HWIO kernel's first three axes -- so the
  kernel reshaped to ``(kh * kw * in, filters)`` multiplies them directly.
  """
  kh, kw, cin, cout = kernel.shape
  (sh, sw), (dh, dw) = strides, dilation
  xp = _pad_spatial(x, padding_pairs)
  _, hp, wp, _ = xp.shape
  out_h = (hp - (kh - 1) * dh - 1) // sh + 1
  out_w = (wp - (kw - 1) * dw - 1) // sw + 1
  if out_h <= 0 or out_w <= 0:  # VALID with a kernel larger than the input
    return jnp.zeros((x.shape[0], max(out_h, 0), max(out_w, 0), cout), x.dtype)
  views = [
    lax.slice(
      xp,
      (0, i * dh, j * dw, 0),
      (xp.shape[0], i * dh + (out_h - 1) * sh + 1, j * dw + (out_w - 1) * sw + 1, cin),
      (1, sh, sw, 1),
    )
    for i in range(kh)
    for j in range(kw)
  ]
  patches = views[0] if len(views) == 1 else jnp.concatenate(views, axis=-1)
  return jnp.matmul(patches, kernel.reshape(kh * kw * cin, cout), precision=_PRECISION)


def winograd_f2(x, kernel, *, padding_pairs):
  """Winograd F(2x2, 3x3) for a 3x3, stride-1, dilation-1, single-group conv.

  Per 4x4 input tile ``d`` (tiles step by 2) and per (in, out) channel pair
  with 3x3 kernel ``g``, the 2x2 output tile is
  ``Y = A^T [(G g G^T) * (B^T d B)] A`` with ``*`` elementwise and::

          [1  0 -1  0]         [ 1    0    0 ]
    B^T = [0  1  1  0]    G =  [1/2  1/2  1/2]    A^T = [1  1  1  0]
          [0 -1  1  0]         [1/2 -1/2  1/2]          [0  1 -1 -1]
          [0  1  0 -1]         [ 0    0    1 ]

  The sum over input channels happens between the transforms: 16 matmuls
  ``(tiles, in) @ (in, filters)``, one per position in the 4x4 transformed tile.
  The input and output transforms hold only 0 and +-1 (adds of strided
  slices, exact up to the adds' rounding); ``G``'s halves are exact in binary.
  Measured largest difference from Keras's Conv2D on unit-scale inputs
  (tests/test_conv_algorithms.py and the spec shapes): 1.9e-6 for one layer
  (the direct convolution: 3.6e-6), at most 5.8e-6 after ten 3x3 ReLU layers
  32, 64 or 128 channels wide (the direct convolution: up to 1.0e-5).

  Any input size and padding: the padded input is padded further (bottom,
  right) to a whole number of 2x2 output tiles and the extra output cropped.
  """
  return _winograd(x, kernel, padding_pairs, _F2_BT, _F2_G, _F2_AT)


def winograd_f4(x, kernel, *, padding_pairs):
  """Winograd F(4x4, 3x3) for a 3x3, stride-1, dilation-1, single-group conv.

  As ``winograd_f2`` with 6x6 input tiles stepping by 4 and (interpolation
  points 0, +-1, +-2, infinity)::

          [4  0 -5  0  1  0]         [ 1/4     0     0 ]
          [0 -4 -4  1  1  0]         [-1/6  -1/6  -1/6 ]
    B^T = [0  4 -4 -1  1  0]    G =  [-1/6   1/6  -1/6 ]
          [0 -2 -1  2  1  0]         [1/24  1/12   1/6 ]
          [0  2 -1 -2  1  0]         [1/24 -1/12   1/6 ]
          [0  4  0 -5  0  1]         [  0     0     1  ]

          [1  1  1  1  1  0]
    A^T = [0  1 -1  2 -2  0]
          [0  1  1  4  4  0]
          [0  1 -1  8 -8  1]

  36 matmuls instead of ``winograd_f2``'s 16 per 4x the outputs, but not
  chosen: float32 error. The large entries of ``B^T`` and ``A^T`` (up to 8,
  sums of up to 6 terms) amplify each product's rounding. Measured largest
  difference from Keras's Conv2D on unit-scale inputs: 2.3e-5 for a single
  layer with 64 input channels (``winograd_f2``: 1.9e-6), 1.0-2.6e-5 after
  ten 3x3 ReLU layers 32-128 channels wide (``winograd_f2``: at most 5.8e-6),
  where Keras itself is ~1e-6 from float64: it fails the parity rule
  (``port.compare``). Speed did not make up for it: at batch 256
  it trained 1.1-1.2x faster than ``winograd_f2`` but ran forward at
  0.8-1.1x, and took 2-6 s to compile against 1-2 s.
  """
  return _winograd(x, kernel, padding_pairs, _F4_BT, _F4_G, _F4_AT)


def _winograd(x, kernel, padding_pairs, bt, g, at):
  """``Y = A^T [(G g G^T) * (B^T d B)] A`` over every tile, summed over channels."""
  kh, kw, cin, cout = kernel.shape
  alpha = bt.shape[0]  # transformed tile side: m + r - 1
  m = at.shape[0]  # output tile side
  batch, height, width, _ = x.shape
  (top, bottom), (left, right) = padding_pairs
  out_h = height + top + bottom - kh + 1
  out_w = width + left + right - kw + 1
  if out_h <= 0 or out_w <= 0:
    return jnp.zeros((batch, max(out_h, 0), max(out_w, 0), cout), x.dtype)
  tiles_h, tiles_w = -(-out_h // m), -(-out_w // m)
  # Extra zeros (bottom, right) so every tile is whole; their outputs are cropped.
  xp = _pad_spatial(
    x,
    (
      (top, bottom + tiles_h * m - out_h),
      (left, right + tiles_w * m - out_w),
    ),
  )

  # Input transform V = B^T d B. Row k of every tile at once is the strided
  # slice xp[k :: m] (tiles_h rows), so B^T d is a few adds of whole slices.
  rows = [_strided(xp, 1, k, m, tiles_h) for k in range(alpha)]
  rows = _combine(bt, rows)
  v = []
  for row in rows:
    cols = [_strided(row, 2, k, m, tiles_w) for k in range(alpha)]
    v.extend(_combine(bt, cols))
  # v[a * alpha + b]: (batch, tiles_h, tiles_w, in) for transformed position (a, b).
  v = jnp.stack(v).reshape(alpha * alpha, batch * tiles_h * tiles_w, cin)

  # Kernel transform U = G g G^T: (alpha, alpha, in, out) -> (alpha^2, in, out).
  g = jnp.asarray(g, kernel.dtype)
  u = jnp.einsum("ai,ijco,bj->abco", g, kernel, g, precision=_PRECISION)
  u = u.reshape(alpha * alpha, cin, cout)

  # The only real arithmetic: one (tiles, in) @ (in, out) matmul per position.
  mm = jnp.matmul(v, u, precision=_PRECISION)
  mm = mm.reshape(alpha, alpha, batch, tiles_h, tiles_w, cout)

  # Output transform Y = A^T M A, again as adds of whole (tile-grid) arrays.
  rows = _combine(at, [mm[a] for a in range(alpha)])  # m x (alpha, batch, th, tw, out)
  out = [_combine(at, [row[b] for b in range(alpha)]) for row in rows]
  # out[p][q]: (batch, tiles_h, tiles_w, out) for output position (p, q) in each tile.
  y = jnp.stack([jnp.stack(row, axis=3) for row in out], axis=2)
  # (batch, tiles_h, m, tiles_w, m, out) -> (batch, tiles_h * m, tiles_w * m, out)
  y = y.reshape(batch, tiles_h * m, tiles_w * m, cout)
  return y[:, :out_h, :out_w, :]


def _combine(matrix: np.ndarray, parts: list) -> list:
  """``[sum_k matrix[i, k] * parts[k] for i]``, skipping zeros and unit multiplies."""
  results = []
  for coefficients in matrix:
    total = None
    for c, part in zip(coefficients, parts):
      if c == 0:
        continue
      if c == 1:
        term, sign = part, 1
      elif c == -1:
        term, sign = part, -1
      else:
        term, sign = np.float32(c) * part, 1
      if total is None:
        total = term if sign > 0 else -term
      else:
        total = total + term if sign > 0 else total - term
    results.append(total)
  return results


def _strided(a, axis: int, start: int, step: int, count: int):
  """``a[start : start + step * count : step]`` along ``axis`` (``count`` entries)."""
  begin = [0] * a.ndim
  end = list(a.shape)
  stride = [1] * a.ndim
  begin[axis] = start
  end[axis] = start + step * (count - 1) + 1
  stride[axis] = step
  return lax.slice(a, begin, end, stride)


def _pad_spatial(x, padding_pairs):
  (top, bottom), (left, right) = padding_pairs
  if top == bottom == left == right == 0:
    return x
  return jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))


__all__ = [
  "ALGORITHMS",
  "AlgorithmSettings",
  "DEFAULT_SETTINGS",
  "choose_algorithm",
  "conv2d",
  "direct",
  "im2col",
  "supports",
  "winograd_f2",
  "winograd_f4",
]
