"""jaxnets: Keras-trained networks as hand-written, jit-compiled JAX layers.

Usable with JAX alone — nothing here imports TensorFlow or Keras::

    import jaxnets
    model = jaxnets.load("ported_model_dir")   # written by port.load(...).save(...)
    probabilities = model.predict(images, batch_size=256)
    model.export("exported_dir")               # jax.export StableHLO + weights
    jaxnets.load_exported("exported_dir").predict(images)   # no layer code runs
"""

from jaxnets import activations
from jaxnets import batching
from jaxnets import layers
from jaxnets import settings
from jaxnets import text
from jaxnets.errors import InputError
from jaxnets.export import ExportedModel, load_exported
from jaxnets.model import Model, load

__all__ = [
  "activations",
  "batching",
  "layers",
  "settings",
  "text",
  "InputError",
  "Model",
  "load",
  "ExportedModel",
  "load_exported",
]
__version__ = "0.1.0"
