"""Selection layer: COMPASS and its baselines behind one strategy interface."""

from .api import select
from .artifact import Selection
from .config import STRATEGIES, SelectConfig
from .core import select_embedded

__all__ = ["STRATEGIES", "SelectConfig", "Selection", "select", "select_embedded"]
