"""jaxnets layers: pure functions of explicit parameters, one module per family.

Importing this package registers every layer class (see ``base.register``), which
``jaxnets.load`` needs to rebuild a saved architecture.
"""

from jaxnets.layers import base
from jaxnets.layers import conv
from jaxnets.layers import core
from jaxnets.layers import embedding
from jaxnets.layers import normalization
from jaxnets.layers import pooling
from jaxnets.layers import recurrent
from jaxnets.layers.base import Layer, layer_class, register
from jaxnets.layers.core import Activation, Dense, Dropout, Flatten, ReLU, Reshape, Softmax
