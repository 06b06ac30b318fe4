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

The per-layer formulas live with everything else about each layer, in its port
record (``port/converters``); this module applies them to whole models.
"""

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import batching
from jaxnets.layers import base
from jaxnets.layers import embedding
from port import registry

Shape = tuple[int, ...]


class UnknownLayerError(ValueError):
  """A layer class with no FLOP formula (no port record for it or its bases)."""


def counter_for(layer: base.Layer) -> Callable:
  """The FLOP formula of ``layer``: its class's port record (the closest registered
  base class for a subclass), ``(layer, input shape, output shape) -> FLOPs``."""
  known = registry.layer_classes()
  for cls in type(layer).__mro__:
    if cls in known:
      return registry.record_for(cls).flops
  raise UnknownLayerError(
    f"no FLOP formula for jaxnets layer class {type(layer).__name__} "
    f"(layer {layer.name!r}): register a port record for it"
  )


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
  """``(layer name, class, FLOPs)`` per layer application, for ONE example.

  ``example_shape`` is the compiled model's input without the batch axis (for
  a text model: ``(length,)`` of token ids). The model's graph is walked in its
  execution order, so a shared layer has one row per application and a layer
  with several inputs is given their shapes as a tuple.
  """
  if model.num_inputs != 1:
    raise ValueError(
      f"FLOPs of model {model.name!r} with {model.num_inputs} inputs: give one example "
      "shape per input (not supported by the benchmark)"
    )
  rows = []
  by_name = {layer.name: layer for layer in model.layers}

  def count(name, x, mask, index):
    del index
    layer = by_name[name]
    y, out_mask = jax.eval_shape(
      lambda p, v, m: layer.apply(p, v, m), model.params.get(name, {}), x, mask
    )
    in_shape = tuple(tuple(v.shape[1:]) for v in x) if layer.multiple_inputs else tuple(x.shape[1:])
    rows.append((name, type(layer).__name__, int(counter_for(layer)(layer, in_shape, y.shape[1:]))))
    return y, out_mask

  # Strings reach the compiled function as int32 token ids.
  dtype = jnp.float32 if model.input_dtypes[0] == "float32" else jnp.int32
  x = jax.ShapeDtypeStruct((1,) + tuple(int(d) for d in example_shape), dtype)
  model.graph.run(by_name, count, [x])
  return rows


real_lengths = batching.real_lengths


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
    return [(n, c, 0) for n, c, _ in per_layer(model, x.shape[1:])]
  if not is_text(model):
    return [(n, c, len(x) * f) for n, c, f in per_layer(model, x.shape[1:])]
  lengths, counts = np.unique(real_lengths(x), return_counts=True)
  cache = {}

  def at(length: int) -> list[int]:
    if length not in cache:
      cache[length] = [f for _, _, f in per_layer(model, (length,) + x.shape[2:])]
    return cache[length]

  rows = per_layer(model, (1,) + x.shape[2:])
  totals = np.zeros(len(rows), np.int64)
  for length, count in zip(lengths, counts):
    # An all-padding row does no useful time step; a zero-length trace is not
    # something every layer supports, and each count is affine in the length
    # (time steps times a per-step cost, or a constant), so extrapolate.
    row = (
      np.asarray(at(int(length)))
      if length
      else np.maximum(0, 2 * np.asarray(at(1)) - np.asarray(at(2)))
    )
    totals += int(count) * row
  return [(n, c, int(t)) for (n, c, _), t in zip(rows, totals)]
