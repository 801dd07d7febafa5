"""COMPASS-ECDA: drift monitoring, gated adapter updates on drift, and a registry of versions."""

from ..selection.reference import Reference
from .detectors import Calibration, NullDistribution, PageHinkley, calibrate, js_divergence
from .loop import AdaptiveMonitor, replay
from .monitor import DriftMonitor, DriftReport, summarise
from .policy import PolicyConfig, UpdateOutcome, UpdatePolicy, gate
from .registry import AdapterVersion, Decision, Registry, validate_id

__all__ = ["AdaptiveMonitor", "AdapterVersion", "Calibration", "Decision", "DriftMonitor", "DriftReport",
           "NullDistribution",
           "PageHinkley", "PolicyConfig", "Reference", "Registry", "UpdateOutcome", "UpdatePolicy",
           "calibrate", "gate", "js_divergence", "replay", "summarise", "validate_id"]
