"""jaxnets layers: pure functions of explicit parameters, one module per family.

Importing this package registers every layer class (see ``base.register``), which
``jaxnets.load`` needs to rebuild a saved architecture.
"""

from jaxnets.layers import attention
from jaxnets.layers import base
from jaxnets.layers import conv
from jaxnets.layers import conv_extra
from jaxnets.layers import core
from jaxnets.layers import embedding
from jaxnets.layers import merge
from jaxnets.layers import norm_extra
from jaxnets.layers import normalization
from jaxnets.layers import pooling
from jaxnets.layers import recurrent
from jaxnets.layers import resizing
from jaxnets.layers import shape
from jaxnets.layers import spatial
from jaxnets.layers import wrappers
from jaxnets.layers.base import Layer, layer_class, register
from jaxnets.layers.conv import Conv1D, Conv2D
from jaxnets.layers.core import Activation, Dense, Dropout, Flatten, ReLU, Reshape, Softmax
from jaxnets.layers.embedding import Embedding, Masking
from jaxnets.layers.normalization import BatchNormalization
from jaxnets.layers.pooling import (
  AveragePooling1D,
  AveragePooling2D,
  GlobalAveragePooling1D,
  GlobalAveragePooling2D,
  GlobalMaxPooling1D,
  GlobalMaxPooling2D,
  MaxPooling1D,
  MaxPooling2D,
)
from jaxnets.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN

__all__ = [
  "attention",
  "base",
  "conv",
  "conv_extra",
  "core",
  "embedding",
  "merge",
  "norm_extra",
  "normalization",
  "pooling",
  "recurrent",
  "resizing",
  "shape",
  "spatial",
  "wrappers",
  "Layer",
  "layer_class",
  "register",
  "Conv1D",
  "Conv2D",
  "Activation",
  "Dense",
  "Dropout",
  "Flatten",
  "ReLU",
  "Reshape",
  "Softmax",
  "Embedding",
  "Masking",
  "BatchNormalization",
  "AveragePooling1D",
  "AveragePooling2D",
  "GlobalAveragePooling1D",
  "GlobalAveragePooling2D",
  "GlobalMaxPooling1D",
  "GlobalMaxPooling2D",
  "MaxPooling1D",
  "MaxPooling2D",
  "GRU",
  "LSTM",
  "Bidirectional",
  "SimpleRNN",
]
