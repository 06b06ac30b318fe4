"""FLOP counts of jaxnets models, layer by layer, for the benchmark's GFLOP/s.

Counting convention (the one the tests check by hand):

- a multiply-add in a matmul or convolution is **2 FLOPs**: Dense is
  ``2 * in * units`` per position, Conv ``2 * prod(kernel_size) * in_channels /
  groups`` per output value (padded cells of a ``same`` convolution are
  counted: they are computed);
- every other arithmetic operation is 1 FLOP: a bias add, one element of a
  non-linear activation (``relu``, ``tanh``, ``sigmoid``, ``softmax``... each
  counted as 1 per element, ``linear`` as 0), BatchNormalization's
  scale-and-shift (2 per element), a pooling window's comparisons
  (``window - 1`` per output for max) or adds and the division
  (``window`` per output for average);
- lookups and data movement are free: Embedding, Dropout at inference,
  Flatten, Reshape, a concat merge.

Recurrent layers count every *real* time step of every direction (a text
model's padding is not useful work), per step and direction with ``in``
input features and ``u`` units:

- SimpleRNN: ``2*in*u + 2*u*u`` (input and recurrent matmuls) ``+ u`` (adding
  the two) ``+ u`` (bias) ``+ u`` (activation);
- LSTM: ``2*in*4u + 2*u*4u + 4u`` (add) ``+ 4u`` (bias) ``+ 5u`` (three
  sigmoid and two tanh) ``+ 4u`` (``c = f*c + i*g``: 3, ``h = o*tanh(c)``: 1);
- GRU: ``2*in*3u + 2*u*3u`` ``+ 3u`` bias (``6u`` with ``reset_after``)
  ``+ 11u`` (gate adds 2u, ``x_h + r*h_h`` 2u, activations 3u,
  ``z*h + (1-z)*hh`` 4u);
- Bidirectional: both directions, plus 1 FLOP per output element for a
  ``sum``/``mul`` merge and 2 for ``ave``.

For a text model (first layer an ``Embedding`` with ``mask_zero``) the real
length of a row is the index of its last non-zero token plus one, and every
layer that runs over time is counted at that length.
"""

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.layers import base
from jaxnets.layers import conv
from jaxnets.layers import core
from jaxnets.layers import embedding
from jaxnets.layers import normalization
from jaxnets.layers import pooling
from jaxnets.layers import recurrent

Shape = tuple[int, ...]


class UnknownLayerError(ValueError):
  """A layer class this module has no FLOP formula for."""


def _act(name: str, elements: int) -> int:
  return 0 if name == "linear" else elements


# Each counter: (layer, input shape, output shape) -> FLOPs for ONE example;
# shapes exclude the batch axis.
def _dense(layer: core.Dense, in_shape: Shape, out_shape: Shape) -> int:
  positions = math.prod(in_shape[:-1])
  per_output = 2 * in_shape[-1] + int(layer.use_bias)
  return positions * layer.units * per_output + _act(layer.activation, math.prod(out_shape))


def _conv(layer: conv.Conv, in_shape: Shape, out_shape: Shape) -> int:
  outputs = math.prod(out_shape)
  per_output = 2 * math.prod(layer.kernel_size) * in_shape[-1] // layer.groups
  return outputs * (per_output + int(layer.use_bias)) + _act(layer.activation, outputs)


def _pooling(layer: pooling.Pooling, in_shape: Shape, out_shape: Shape) -> int:
  window = math.prod(layer.pool_size)
  per_output = window - 1 if layer.reducer == "max" else window
  return math.prod(out_shape) * per_output


def _global_pooling(reducer: str, in_shape: Shape) -> int:
  cells, channels = math.prod(in_shape[:-1]), in_shape[-1]
  return channels * (cells - 1 if reducer == "max" else cells)


def _elementwise(per_element: int) -> Callable:
  return lambda layer, in_shape, out_shape: per_element * math.prod(in_shape)


def _free(layer, in_shape, out_shape) -> int:
  return 0


def _activation_layer(layer, in_shape, out_shape) -> int:
  name = getattr(layer, "activation", "relu")  # ReLU/Softmax layers: 1 per element
  return _act(name, math.prod(in_shape))


def _cell_step(cell: recurrent._Recurrent, features: int) -> int:  # pylint: disable=protected-access
  """FLOPs of one time step of one direction of ``cell``."""
  u = cell.units
  width = cell.gates * u
  matmuls = 2 * features * width + 2 * u * width
  if isinstance(cell, recurrent.LSTM):
    bias = width if cell.use_bias else 0
    return matmuls + width + bias + 5 * u + 4 * u
  if isinstance(cell, recurrent.GRU):
    bias = (2 * width if cell.reset_after else width) if cell.use_bias else 0
    return matmuls + bias + 11 * u
  if isinstance(cell, recurrent.SimpleRNN):
    bias = u if cell.use_bias else 0
    return matmuls + u + bias + _act(cell.activation, u)
  raise UnknownLayerError(f"no FLOP formula for recurrent cell {type(cell).__name__}")


def _recurrent(layer, in_shape: Shape, out_shape: Shape) -> int:
  steps, features = in_shape[0], in_shape[-1]
  return steps * _cell_step(layer, features)


def _bidirectional(layer: recurrent.Bidirectional, in_shape: Shape, out_shape: Shape) -> int:
  steps, features = in_shape[0], in_shape[-1]
  flops = steps * (_cell_step(layer.forward_layer, features)
                   + _cell_step(layer.backward_layer, features))
  merge = {"concat": 0, "sum": 1, "mul": 1, "ave": 2}[layer.merge_mode]
  return flops + merge * math.prod(out_shape)


# Most specific class first: isinstance picks the first match.
_COUNTERS: tuple[tuple[type, Callable], ...] = (
    (core.Dense, _dense),
    (conv.Conv, _conv),
    (pooling.Pooling, _pooling),
    (pooling.GlobalPooling, lambda l, i, o: _global_pooling(l.reducer, i)),
    (recurrent.GlobalMaxPooling1D, lambda l, i, o: _global_pooling("max", i)),
    (recurrent.GlobalAveragePooling1D, lambda l, i, o: _global_pooling("average", i)),
    (normalization.BatchNormalization, _elementwise(2)),
    (embedding.Embedding, _free),
    (embedding.Masking, _elementwise(1)),
    (recurrent.Bidirectional, _bidirectional),
    (recurrent._Recurrent, _recurrent),  # pylint: disable=protected-access
    (core.Activation, _activation_layer),
    (core.ReLU, _activation_layer),
    (core.Softmax, _activation_layer),
    (core.Dropout, _free),
    (core.Flatten, _free),
    (core.Reshape, _free),
)


def counter_for(layer: base.Layer) -> Callable:
  for cls, counter in _COUNTERS:
    if isinstance(layer, cls):
      return counter
  raise UnknownLayerError(f"no FLOP formula for jaxnets layer class {type(layer).__name__} "
                          f"(layer {layer.name!r})")


def _input_dtype(layer: base.Layer):
  return jnp.int32 if isinstance(layer, embedding.Embedding) else jnp.float32


def layer_flops(layer: base.Layer, input_shape: Sequence[int], params=None) -> int:
  """FLOPs of ``layer`` on ONE example of ``input_shape`` (no batch axis).

  ``params`` gives the weight shapes; without them the layer's ``init`` does
  (only shapes are computed, nothing is run).
  """
  input_shape = tuple(int(d) for d in input_shape)
  x = jax.ShapeDtypeStruct((1,) + input_shape, _input_dtype(layer))
  if params is None:
    params = jax.eval_shape(lambda: layer.init(jax.random.key(0), input_shape))
  out = jax.eval_shape(lambda p, v: layer.apply(p, v)[0], params, x)
  return int(counter_for(layer)(layer, input_shape, tuple(out.shape[1:])))


def per_layer(model, example_shape: Sequence[int]) -> list[tuple[str, str, int]]:
  """``(layer name, class, FLOPs)`` for ONE example of ``example_shape``.

  ``example_shape`` is the compiled model's input without the batch axis
  (for a text model: ``(length,)`` of token ids).
  """
  rows = []
  x = jax.ShapeDtypeStruct((1,) + tuple(int(d) for d in example_shape),
                           _input_dtype(model.layers[0]) if model.layers else jnp.float32)
  mask = None
  for layer in model.layers:
    params = model.params.get(layer.name, {})
    counter = counter_for(layer)
    y, mask = jax.eval_shape(lambda p, v, m, layer=layer: layer.apply(p, v, m), params, x, mask)
    rows.append((layer.name, type(layer).__name__,
                 int(counter(layer, tuple(x.shape[1:]), tuple(y.shape[1:])))))
    x = y
  return rows


def real_lengths(tokens: np.ndarray) -> np.ndarray:
  """Index of the last non-zero token + 1 per row (0 for an all-padding row)."""
  nonzero = np.asarray(tokens).reshape(len(tokens), -1) != 0
  last = np.argmax(nonzero[:, ::-1], axis=1)
  return np.where(nonzero.any(axis=1), nonzero.shape[1] - last, 0)


def is_text(model) -> bool:
  """True when the model's padding mask comes from zero token ids."""
  return bool(model.layers) and bool(getattr(model.layers[0], "mask_zero", False))


def model_flops(model, x: np.ndarray) -> int:
  """Total FLOPs of ``model`` on the batch ``x`` (images/features or token ids).

  Text models are counted row by row at each row's real length; other models
  at ``len(x)`` times one example's count.
  """
  return sum(f for _, _, f in per_layer_total(model, x))


def per_layer_total(model, x: np.ndarray) -> list[tuple[str, str, int]]:
  """``(layer name, class, FLOPs)`` summed over the batch ``x`` (real lengths
  for text models, see ``model_flops``)."""
  x = np.asarray(x)
  if not len(x):
    return [(layer.name, type(layer).__name__, 0) for layer in model.layers]
  if not is_text(model):
    return [(n, c, len(x) * f) for n, c, f in per_layer(model, x.shape[1:])]
  lengths, counts = np.unique(real_lengths(x), return_counts=True)
  cache = {}

  def at(length: int) -> list[int]:
    if length not in cache:
      cache[length] = [f for _, _, f in per_layer(model, (length,) + x.shape[2:])]
    return cache[length]

  totals = np.zeros(len(model.layers), np.int64)
  for length, count in zip(lengths, counts):
    # An all-padding row does no useful time step; a zero-length trace is not
    # something every layer supports, and each count is affine in the length
    # (time steps times a per-step cost, or a constant), so extrapolate.
    row = (np.asarray(at(int(length))) if length
           else np.maximum(0, 2 * np.asarray(at(1)) - np.asarray(at(2))))
    totals += int(count) * row
  return [(layer.name, type(layer).__name__, int(t)) for layer, t in zip(model.layers, totals)]
