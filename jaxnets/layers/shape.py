"""Data-movement layers and layers that are the identity at inference.

- ``Permute``: ``(batch, *dims) -> transpose (0, *permutation)``; drops a mask.
- ``RepeatVector``: ``(batch, features) -> (batch, n, features)``; drops a mask.
- ``Identity``: returns its input and mask.
- Inference no-ops (``SpatialDropout2D``, ``GaussianNoise``, ``RandomFlip``...):
  one registered class per Keras class, so a ported model's ``summary()`` shows
  what the Keras model held, and ``port.to_keras`` can rebuild it from the
  options kept in ``options``. Keras returns the input unchanged for all of
  them at inference (checked against Keras's ``predict`` in
  ``tests/test_shape_layers.py``). Their training behaviour (random noise,
  dropout, augmentation) is not implemented: ``training=True`` raises, naming
  the layer, rather than silently training without it.

Masks follow Keras's ``supports_masking``: the regularisation layers pass a
time mask on, the image augmentation layers (which Keras does not mark as
mask-aware) drop it.
"""

import dataclasses
import json
from typing import Any, ClassVar

import jax.numpy as jnp

from jaxnets.layers import base


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Permute(base.Layer):
  """Permutes the non-batch axes: ``dims`` are Keras's (1-based) axis numbers."""

  dims: tuple[int, ...]

  def __post_init__(self):
    if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
      raise ValueError(
        f"Permute {self.name!r}: dims {self.dims} must be a permutation of 1..{len(self.dims)}"
      )

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    del params, mask, training, rng
    if x.ndim != len(self.dims) + 1:
      raise ValueError(
        f"Permute {self.name!r}: dims {self.dims} do not fit an input of rank {x.ndim}"
      )
    return jnp.transpose(x, (0,) + tuple(self.dims)), None


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class RepeatVector(base.Layer):
  """``(batch, features) -> (batch, n, features)``, each row repeated ``n`` times."""

  n: int

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    del params, mask, training, rng
    if x.ndim != 2:
      raise ValueError(
        f"RepeatVector {self.name!r}: input must be (batch, features), got {x.shape}"
      )
    return jnp.repeat(x[:, None, :], self.n, axis=1), None


@base.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Identity(base.Layer):
  """Returns its input (and mask) unchanged."""

  trailing_padding_safe = True

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    del params, training, rng
    return x, mask


@dataclasses.dataclass(frozen=True, kw_only=True)
class InferenceNoOp(base.Layer):
  """Base of the layers that return their input at inference.

  Attributes:
    options: the Keras layer's own options (``rate``, ``stddev``, ``factor``...)
      as a JSON object in a string (hashable, like every other layer field),
      kept only so ``port.to_keras`` can rebuild the Keras layer.
  """

  options: str = "{}"

  # Whether Keras marks the layer as mask-aware (a time mask passes through).
  passes_mask: ClassVar[bool] = True
  # Whether the layer only makes sense on floating inputs: Keras's image
  # augmentation layers cast some inputs to float32 even at inference, so an
  # integer input would come back with another dtype there.
  float_only: ClassVar[bool] = False

  @property
  def trailing_padding_safe(self) -> bool:  # type: ignore[override]
    return self.passes_mask

  def apply(self, params, x, mask=None, *, training=False, rng=None):
    del params, rng
    if training:
      raise NotImplementedError(
        f"{type(self).__name__} {self.name!r}: only the inference form (the identity) "
        "is implemented; its training-time noise/augmentation is not"
      )
    if self.float_only and not jnp.issubdtype(x.dtype, jnp.floating):
      raise ValueError(
        f"{type(self).__name__} {self.name!r}: only a floating-point input is supported "
        f"(got {x.dtype})"
      )
    return x, (mask if self.passes_mask else None)

  def __post_init__(self):
    try:
      decoded = json.loads(self.options)
    except (TypeError, ValueError):
      decoded = None
    if not isinstance(decoded, dict):
      raise ValueError(
        f"{type(self).__name__} {self.name!r}: options {self.options!r:.80} is not a JSON object"
      )

  def keras_options(self) -> dict[str, Any]:
    """The Keras constructor's keyword arguments."""
    return json.loads(self.options)


def _no_op_class(keras_name: str, kind: str) -> type[InferenceNoOp]:
  """Registers the no-op class named like the Keras class ``keras_name``.

  ``kind`` is ``"regularization"`` (passes a mask) or ``"augmentation"`` (drops
  it, float input only).
  """
  augmentation = kind == "augmentation"
  cls = type(
    keras_name,
    (InferenceNoOp,),
    {
      "__doc__": f"Keras's ``{keras_name}`` at inference: the identity ({kind} layer).",
      "__module__": __name__,
      "__qualname__": keras_name,
      "passes_mask": not augmentation,
      "float_only": augmentation,
    },
  )
  return base.register(dataclasses.dataclass(frozen=True, kw_only=True)(cls))


# Keras classes whose inference output is the input, by kind.
REGULARIZATION_NO_OPS = (
  "SpatialDropout1D",
  "SpatialDropout2D",
  "SpatialDropout3D",
  "GaussianNoise",
  "GaussianDropout",
  "AlphaDropout",
  "ActivityRegularization",
)
AUGMENTATION_NO_OPS = (
  "RandomBrightness",
  "RandomColorDegeneration",
  "RandomColorJitter",
  "RandomContrast",
  "RandomElasticTransform",
  "RandomErasing",
  "RandomFlip",
  "RandomGaussianBlur",
  "RandomGrayscale",
  "RandomHue",
  "RandomInvert",
  "RandomPerspective",
  "RandomPosterization",
  "RandomRotation",
  "RandomSaturation",
  "RandomSharpness",
  "RandomShear",
  "RandomTranslation",
  "RandomZoom",
)

NO_OP_CLASSES: dict[str, type[InferenceNoOp]] = {
  **{name: _no_op_class(name, "regularization") for name in REGULARIZATION_NO_OPS},
  **{name: _no_op_class(name, "augmentation") for name in AUGMENTATION_NO_OPS},
}
