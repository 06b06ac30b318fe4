"""port: Keras-trained models -> jaxnets models, exactly or not at all.

    import port
    model = port.load("model.keras")        # or a keras.Model, or a legacy .h5
    probabilities = model.predict(x, batch_size=256)
    print(model.summary())
    model.save("ported/")                   # reload later with jaxnets.load, no TF
    port.unsupported("other.keras")         # [(layer name, class, reason), ...]
    keras_model = port.to_keras(model)      # the inverse: jaxnets params -> Keras model
    port.compare(keras_model, model, x).check()  # the parity rule (port/comparison.py)

Every Keras layer class has one converter (``port/converters``); a converter
rejects, with ``UnsupportedLayerError`` naming the layer, option and value,
anything it cannot reproduce exactly.
"""

from port import comparison
from port.api import flat_layers, load, load_keras, unsupported
from port.comparison import Comparison, ParityError, compare, float64_reference
from port.to_keras import to_keras
from port.registry import UnsupportedLayerError, UnsupportedModelError, supported_classes

__all__ = [
  "Comparison",
  "ParityError",
  "compare",
  "comparison",
  "float64_reference",
  "load",
  "load_keras",
  "flat_layers",
  "unsupported",
  "UnsupportedLayerError",
  "UnsupportedModelError",
  "supported_classes",
  "to_keras",
]
