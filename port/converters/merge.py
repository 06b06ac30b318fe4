"""Records for Keras's merge layers (Add, Subtract, Multiply, Average, Maximum,
Minimum, Concatenate, Dot), and the ``keras.ops`` arithmetic a functional
model records as operation nodes (``OPS``, read by ``port.api``).

A merge layer is called on a list of tensors; ``port.api`` wires the list as
the jaxnets layer's tuple of inputs. Merge layers have no weights.
"""

import math

from jaxnets.layers import merge
from port import registry

# keras.ops operation class (an operation node of a functional graph) ->
# jaxnets.layers.merge.Arithmetic op. ``x + 3.0`` and ``x * (1 / 6)`` are what
# MobileNetV3's hard-sigmoid records; two-tensor forms broadcast like numpy.
OPS = {
  "Add": "add",
  "Subtract": "subtract",
  "Multiply": "multiply",
  "TrueDivide": "divide",
  "Divide": "divide",
  "Maximum": "maximum",
  "Minimum": "minimum",
  # Masks Keras records: an Embedding(mask_zero=True)'s not_equal(ids, 0), a
  # merge layer's OR of its inputs' masks.
  "NotEqual": "not_equal",
  "LogicalOr": "logical_or",
  "LogicalAnd": "logical_and",
}


def _shapes(in_shape) -> list:
  """Input shapes of a merge layer: a tuple of shapes, or one shape (taken as two inputs)."""
  if in_shape and isinstance(in_shape[0], (tuple, list)):
    return list(in_shape)
  return [in_shape, in_shape]


def elementwise_flops(layer, in_shape, out_shape) -> int:
  """One FLOP per output element per input after the first (Average: one more)."""
  count = len(_shapes(in_shape)) - 1 + int(isinstance(layer, merge.Average))
  return math.prod(out_shape) * count


def free_flops(layer, in_shape, out_shape) -> int:
  del layer, in_shape, out_shape
  return 0


def dot_flops(layer, in_shape, out_shape) -> int:
  """A multiply-add per contracted element per output element (plus normalising)."""
  first, second = _shapes(in_shape)[:2]
  depth = first[(layer.axes[0] % (len(first) + 1)) - 1]
  extra = 3 * (math.prod(first) + math.prod(second)) if layer.normalize else 0
  return 2 * depth * math.prod(out_shape) + extra


def _merge_builder(cls):
  def build(cfg):
    cfg.dtype()
    return [cls(name=cfg.layer_name)]

  return build


def concatenate(cfg):
  cfg.dtype()
  axis = cfg.get("axis", -1)
  if not isinstance(axis, int) or axis == 0:
    raise cfg.error(f"option axis={axis!r} is not supported (an int other than 0, the batch)")
  return [merge.Concatenate(name=cfg.layer_name, axis=int(axis))]


def dot(cfg):
  cfg.dtype()
  axes = cfg.get("axes")
  if isinstance(axes, int):
    axes = (axes, axes)
  if (
    not isinstance(axes, (list, tuple))
    or len(axes) != 2
    or not all(isinstance(a, int) and not isinstance(a, bool) for a in axes)
  ):
    raise cfg.error(f"option axes={axes!r} is not supported (an int or two ints)")
  if 0 in axes:
    raise cfg.error(f"option axes={axes!r} is not supported (axis 0 is the batch)")
  return [
    merge.Dot(name=cfg.layer_name, axes=tuple(axes), normalize=bool(cfg.get("normalize", False)))
  ]


for _cls in (
  merge.Add,
  merge.Subtract,
  merge.Multiply,
  merge.Average,
  merge.Maximum,
  merge.Minimum,
):
  registry.register(
    registry.LayerRecord(
      layer=_cls,
      keras_class=_cls.__name__,
      build=_merge_builder(_cls),
      to_keras=lambda keras, layer, _name=_cls.__name__: getattr(keras.layers, _name)(
        name=layer.name
      ),
      flops=elementwise_flops,
    )
  )
registry.register(
  registry.LayerRecord(
    layer=merge.Concatenate,
    keras_class="Concatenate",
    build=concatenate,
    to_keras=lambda keras, layer: keras.layers.Concatenate(axis=layer.axis, name=layer.name),
    flops=free_flops,
  )
)
registry.register(
  registry.LayerRecord(
    layer=merge.Dot,
    keras_class="Dot",
    build=dot,
    to_keras=lambda keras, layer: keras.layers.Dot(
      axes=list(layer.axes), normalize=layer.normalize, name=layer.name
    ),
    flops=dot_flops,
  )
)


def _arithmetic_build(cfg):
  raise cfg.error(
    "keras.ops arithmetic is an operation node of a functional graph, not a layer; "
    "port.load converts it from the graph"
  )


def _arithmetic_to_keras(keras, layer):
  del keras
  raise ValueError(
    f"layer {layer.name!r} (Arithmetic) is keras.ops arithmetic, which has no Keras layer "
    "equivalent; port.to_keras rebuilds chains of layers only"
  )


# keras.ops arithmetic has no Keras layer class: its record is keyed by this
# description, which no Keras config can carry, so that FLOPs and the registry
# cover the jaxnets layer; port.api builds it from the graph's operation nodes.
registry.register(
  registry.LayerRecord(
    layer=merge.Arithmetic,
    keras_class="keras.ops arithmetic",
    build=_arithmetic_build,
    to_keras=_arithmetic_to_keras,
    flops=elementwise_flops,
  )
)


def _set_mask_build(cfg):
  raise cfg.error("an explicit mask argument is wired by port.load from the graph, not a layer")


def _set_mask_to_keras(keras, layer):
  del keras
  raise ValueError(
    f"layer {layer.name!r} (SetMask) stands for an explicit mask argument, which has no "
    "Keras layer equivalent; port.to_keras rebuilds chains of layers only"
  )


registry.register(
  registry.LayerRecord(
    layer=merge.SetMask,
    keras_class="mask argument",
    build=_set_mask_build,
    to_keras=_set_mask_to_keras,
    flops=free_flops,
  )
)
