"""Converters, one module per family; importing this package registers them all."""

from port.converters import conv
from port.converters import core
from port.converters import recurrent
from port.converters import text

__all__ = ["conv", "core", "recurrent", "text"]
