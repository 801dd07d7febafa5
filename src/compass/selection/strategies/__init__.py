"""Selection strategies behind one interface: ``Strategy.plan`` (phase 3, allocate the
budget), which both engines drive (:mod:`compass.selection.driver`).

``compass`` fills the clusters that train under-serves relative to usage; the
baselines are ``random``, ``lang-sim`` (closest languages first, the paper's
baseline), ``target-proportional`` (u_c alone) and ``uniform-cluster`` (diversity).
"""

from __future__ import annotations

from .base import ClusterStrategy, Strategy, allocate
from .baselines import LangSimStrategy, RandomStrategy, TargetProportionalStrategy, UniformClusterStrategy
from .compass import CompassStrategy

STRATEGY_CLASSES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (CompassStrategy, RandomStrategy, LangSimStrategy,
                              TargetProportionalStrategy, UniformClusterStrategy)
}


def get_strategy(name: str) -> Strategy:
    return STRATEGY_CLASSES[name]()


__all__ = ["STRATEGY_CLASSES", "ClusterStrategy", "CompassStrategy", "LangSimStrategy", "RandomStrategy",
           "Strategy", "TargetProportionalStrategy", "UniformClusterStrategy", "allocate", "get_strategy"]
