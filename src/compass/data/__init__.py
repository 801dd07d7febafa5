"""Data layer: records and the loaders behind source strings."""

from .records import Record
from .sources import Source, load

__all__ = ["Record", "Source", "load"]
