"""``TimeDistributed``: one inner layer applied to every time step.

Input ``(batch, time, *step)``; the inner layer sees ``(batch * time, *step)``
(time steps folded into the batch, row-major, so example ``b`` step ``t`` is row
``b * time + t``) and its output ``(batch * time, *out)`` is unfolded to
``(batch, time, *out)``. Keras applies the inner layer step by step; the inner
layers allowed here (those with a port record) treat every row of their batch
independently at inference, so folding gives the same numbers in one call.

Params are the inner layer's own (``kernel``, ``bias``...), not nested under
its name: Keras names the wrapper's weights that way too.

Masks, as Keras's ``TimeDistributed``: the incoming mask passes through
unchanged. Keras hands step ``t``'s slice ``mask[:, t]`` to an inner layer whose
``call`` takes a mask. A mask with axes beyond ``(batch, time)`` (e.g.
``(batch, time, words)`` from an ``Embedding(mask_zero=True)`` on
``(batch, time, words)`` ids) is folded like the input, so an inner LSTM or
``GlobalAveragePooling1D`` sees each step's own ``(words,)`` mask. A plain
``(batch, time)`` mask would give the inner layer one flag per example, which
the jaxnets layers that read masks (recurrent, pooling over time, Softmax) do
not take: that combination raises, naming the layer.
"""

import dataclasses
from typing import Any

from jaxnets.layers import base


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class TimeDistributed(base.Layer):
  """Applies ``layer`` to each step of axis 1.

  Attributes:
    layer: the inner jaxnets layer (any registered class).
  """

  layer: base.Layer

  @property
  def trailing_padding_safe(self) -> bool:  # type: ignore[override]
    # Each step is computed alone, so dropping trailing steps changes no other.
    return True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    if x.ndim < 3:
      raise ValueError(
        f"TimeDistributed {self.name!r}: input must be (batch, time, ...), got {x.shape}"
      )
    batch, time = x.shape[:2]
    inner_mask = None
    if mask is not None and mask.ndim > 2 and tuple(mask.shape[:2]) == (batch, time):
      inner_mask = mask.reshape((batch * time,) + tuple(mask.shape[2:]))
    elif mask is not None and _reads_mask(self.layer):
      raise ValueError(
        f"TimeDistributed {self.name!r}: a {tuple(mask.shape)} mask would give the inner "
        f"layer {type(self.layer).__name__} one flag per example and step, which it does "
        "not take"
      )
    folded = x.reshape((batch * time,) + tuple(x.shape[2:]))
    y, _ = self.layer.apply(params, folded, inner_mask, training=training, rng=rng)
    return y.reshape((batch, time) + tuple(y.shape[1:])), mask

  def init(self, rng, input_shape):
    return self.layer.init(rng, tuple(input_shape[1:]))

  def check_input(self, x) -> None:
    self.layer.check_input(x)

  def get_config(self) -> dict[str, Any]:
    return {
      "name": self.name,
      "layer": {"class": type(self.layer).__name__, "config": self.layer.get_config()},
    }

  @classmethod
  def from_config(cls, config: dict[str, Any]) -> "TimeDistributed":
    unknown = sorted(set(config) - {"name", "layer"})
    if unknown:
      raise ValueError(f"unknown option(s) {', '.join(unknown)} for TimeDistributed")
    inner = config.get("layer")
    if not isinstance(inner, dict) or set(inner) != {"class", "config"}:
      raise ValueError(f"option layer={inner!r:.80} is not a {{'class', 'config'}} dict")
    name = config.get("name")
    if not isinstance(name, str):
      raise ValueError(f"option name={name!r:.80} is not of type str")
    return cls(name=name, layer=base.layer_class(inner["class"]).from_config(inner["config"]))


def _reads_mask(layer: base.Layer) -> bool:
  """Whether ``layer``'s output depends on a time mask it is given."""
  return type(layer).__name__ in _MASK_READERS


# jaxnets layers whose output depends on the mask they receive.
_MASK_READERS = frozenset(
  {
    "LSTM",
    "GRU",
    "SimpleRNN",
    "Bidirectional",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "Softmax",
  }
)
