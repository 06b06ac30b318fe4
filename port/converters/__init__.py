"""Converters, one module per family; importing this package registers them all."""

from port.converters import attention
from port.converters import conv
from port.converters import conv_extra
from port.converters import core
from port.converters import merge
from port.converters import norm_extra
from port.converters import recurrent
from port.converters import shape
from port.converters import spatial
from port.converters import text
from port.converters import wrappers

__all__ = [
  "attention",
  "conv",
  "conv_extra",
  "core",
  "merge",
  "norm_extra",
  "recurrent",
  "shape",
  "spatial",
  "text",
  "wrappers",
]
