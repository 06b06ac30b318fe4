"""The wiring of a ``jaxnets.Model``: which layers run on which tensors.

A ``Graph`` is a list of nodes in topological order. Tensors are numbered:
``0 .. num_inputs - 1`` are the model's inputs and node ``i`` produces tensor
``num_inputs + i``. A node applies a sub-chain of layers (one Keras layer may
convert to several jaxnets layers) to the tensors it names:

- the first layer takes every input of the node; a layer whose class sets
  ``multiple_inputs`` receives them as a tuple (``jaxnets.layers.base``), any
  other layer takes exactly one;
- each further layer of the sub-chain takes the previous one's output.

A layer may appear in several nodes (a shared layer: one entry in ``params``,
several applications). Every tensor carries the mask its producer returned
(``None`` for inputs), so masks flow along the edges as in Keras.

The outputs are tensors too, returned as one array, a list or a dict keyed by
``output_names`` (Keras's ``model(x)`` structure). A chain is the special case
``Graph.chain(names)``: node ``i`` takes tensor ``i``.
"""

import dataclasses
from typing import Any, Callable, Sequence

__all__ = ["Graph", "Node"]


@dataclasses.dataclass(frozen=True)
class Node:
  """``layers`` (names, applied in order) on the tensors numbered ``inputs``.

  ``clear_masks``: after the node runs, its input tensors carry no mask for
  the nodes that follow. Keras's MultiHeadAttention does this to the tensors
  it is called on (``set_keras_mask(query, None)``...), so a later layer
  reading the same tensor sees it unmasked; the port reproduces it.
  """

  layers: tuple[str, ...]
  inputs: tuple[int, ...]
  clear_masks: bool = False


@dataclasses.dataclass(frozen=True)
class Graph:
  """Nodes in topological order plus the output tensors and their structure.

  Attributes:
    num_inputs: how many input tensors the model takes.
    nodes: the nodes; node ``i`` produces tensor ``num_inputs + i``.
    outputs: the tensors returned.
    output_names: keys of a dict output (Keras's order), or ``None``.
    output_list: return a list even of one output (when ``output_names`` is None).
  """

  num_inputs: int
  nodes: tuple[Node, ...]
  outputs: tuple[int, ...]
  output_names: tuple[str, ...] | None = None
  output_list: bool = False

  @classmethod
  def chain(cls, names: Sequence[str]) -> "Graph":
    """The graph of layers applied one after the other to one input."""
    nodes = tuple(Node((name,), (i,)) for i, name in enumerate(names))
    return cls(1, nodes, (len(nodes),))

  def chain_order(self) -> list[str] | None:
    """The layer names in order when the graph is a chain (one input, each node
    reading the previous node's output, the last one the single output, each
    layer once), else ``None``."""
    if self.num_inputs != 1 or not self.single_output:
      return None
    names = []
    for i, node in enumerate(self.nodes):
      if node.inputs != (i,) or node.clear_masks:
        return None
      names.extend(node.layers)
    if self.outputs != (len(self.nodes),) or len(set(names)) != len(names):
      return None
    return names

  @property
  def is_chain(self) -> bool:
    return self.chain_order() is not None

  @property
  def single_output(self) -> bool:
    return self.output_names is None and not self.output_list and len(self.outputs) == 1

  def check(self, layers: dict[str, Any]) -> None:
    """Raises ``ValueError`` naming the first inconsistency with ``layers`` (by name)."""
    if self.num_inputs < 1:
      raise ValueError(f"a graph needs at least one input, got num_inputs={self.num_inputs}")
    for i, node in enumerate(self.nodes):
      produced = self.num_inputs + i
      if not node.layers:
        raise ValueError(f"graph node {i} applies no layer")
      if not node.inputs:
        raise ValueError(f"graph node {i} has no input tensor")
      for t in node.inputs:
        if not 0 <= t < produced:
          raise ValueError(
            f"graph node {i} ({node.layers[0]!r}) reads tensor {t}, which is not computed "
            f"before it (tensors 0..{produced - 1} exist there)"
          )
      for position, name in enumerate(node.layers):
        if name not in layers:
          raise ValueError(f"graph node {i} names layer {name!r}, which the model does not have")
        many = getattr(layers[name], "multiple_inputs", False)
        if position > 0 and many:
          raise ValueError(
            f"graph node {i}: layer {name!r} takes several inputs; it must come first"
          )
        if position == 0 and not many and len(node.inputs) != 1:
          raise ValueError(
            f"graph node {i}: layer {name!r} takes one input, the node gives {len(node.inputs)}"
          )
    total = self.num_inputs + len(self.nodes)
    if not self.outputs:
      raise ValueError("a graph needs at least one output")
    for t in self.outputs:
      if not 0 <= t < total:
        raise ValueError(f"graph output tensor {t} does not exist (0..{total - 1})")
    if self.output_names is not None and len(self.output_names) != len(self.outputs):
      raise ValueError(
        f"graph has {len(self.outputs)} outputs but {len(self.output_names)} output names"
      )
    used = {n for node in self.nodes for n in node.layers}
    unused = sorted(set(layers) - used)
    if unused:
      raise ValueError(f"layer(s) {', '.join(map(repr, unused))} appear in no graph node")

  # -------------------------------------------------------------- running
  def run(
    self,
    layers: dict[str, Any],
    apply_layer: Callable[..., tuple[Any, Any]],
    inputs: Sequence[Any],
    masks: Sequence[Any] | None = None,
  ) -> list[tuple[Any, Any]]:
    """Runs every node; returns ``(value, mask)`` of every tensor.

    ``layers`` maps names to layers (read for ``multiple_inputs``);
    ``apply_layer(name, x_or_xs, mask_or_masks, count)`` applies one layer;
    ``count`` numbers the applications in order (the per-application rng
    stream: in a chain it is the layer's index, as before graphs existed).
    """
    masks = [None] * len(inputs) if masks is None else list(masks)
    tensors = list(zip(inputs, masks))
    count = 0
    for node in self.nodes:
      args = [tensors[t] for t in node.inputs]
      for position, name in enumerate(node.layers):
        if getattr(layers[name], "multiple_inputs", False):
          x = tuple(a[0] for a in args)
          m = tuple(a[1] for a in args)
        else:
          x, m = args[0]
        y = apply_layer(name, x, m, count)
        count += 1
        args = [y]
      tensors.append(args[0])
      if node.clear_masks:
        for t in node.inputs:
          tensors[t] = (tensors[t][0], None)
    return tensors

  def structure(self, values: Sequence[Any]):
    """The output values in Keras's structure: one array, a list or a dict."""
    if self.output_names is not None:
      return dict(zip(self.output_names, values))
    if self.single_output:
      return values[0]
    return list(values)

  # --------------------------------------------------------- persistence
  def get_config(self) -> dict[str, Any]:
    return {
      "num_inputs": self.num_inputs,
      "nodes": [
        {"layers": list(n.layers), "inputs": list(n.inputs)}
        | ({"clear_masks": True} if n.clear_masks else {})
        for n in self.nodes
      ],
      "outputs": list(self.outputs),
      "output_names": None if self.output_names is None else list(self.output_names),
      "output_list": self.output_list,
    }

  @classmethod
  def from_config(cls, config: dict[str, Any]) -> "Graph":
    """Rebuilds a graph from ``get_config()``; ``ValueError`` naming a malformed entry."""
    if not isinstance(config, dict):
      raise ValueError(f"graph must be an object, found {config!r:.80}")
    unknown = sorted(
      set(config) - {"num_inputs", "nodes", "outputs", "output_names", "output_list"}
    )
    if unknown:
      raise ValueError(f"unknown graph key(s) {', '.join(unknown)}")
    num_inputs = _int(config.get("num_inputs"), "graph.num_inputs")
    nodes_spec = config.get("nodes")
    if not isinstance(nodes_spec, list):
      raise ValueError(f"graph.nodes must be a list, found {nodes_spec!r:.80}")
    nodes = []
    for i, spec in enumerate(nodes_spec):
      if not isinstance(spec, dict) or not {"layers", "inputs"} <= set(spec) <= {
        "layers",
        "inputs",
        "clear_masks",
      }:
        raise ValueError(f"graph.nodes[{i}] must be an object with layers, inputs (clear_masks)")
      clear = spec.get("clear_masks", False)
      if not isinstance(clear, bool):
        raise ValueError(f"graph.nodes[{i}].clear_masks must be true or false")
      layer_names = spec["layers"]
      if not isinstance(layer_names, list) or not all(isinstance(n, str) for n in layer_names):
        raise ValueError(f"graph.nodes[{i}].layers must be a list of layer names")
      inputs = spec["inputs"]
      if not isinstance(inputs, list):
        raise ValueError(f"graph.nodes[{i}].inputs must be a list of tensor numbers")
      numbers = tuple(_int(t, f"graph.nodes[{i}].inputs") for t in inputs)
      nodes.append(Node(tuple(layer_names), numbers, clear))
    outputs = config.get("outputs")
    if not isinstance(outputs, list):
      raise ValueError(f"graph.outputs must be a list, found {outputs!r:.80}")
    names = config.get("output_names")
    if names is not None and (
      not isinstance(names, list) or not all(isinstance(n, str) for n in names)
    ):
      raise ValueError(f"graph.output_names must be null or a list of strings, found {names!r:.80}")
    output_list = config.get("output_list", False)
    if not isinstance(output_list, bool):
      raise ValueError(f"graph.output_list must be true or false, found {output_list!r:.80}")
    return cls(
      num_inputs,
      tuple(nodes),
      tuple(_int(t, "graph.outputs") for t in outputs),
      None if names is None else tuple(names),
      output_list,
    )


def _int(value, where: str) -> int:
  if not isinstance(value, int) or isinstance(value, bool) or value < 0:
    raise ValueError(f"{where} must hold non-negative ints, found {value!r:.80}")
  return value
