"""COMPASS-ECDA: drift monitoring against an adapter's reference, and a registry of versions."""

from ..selection.reference import Reference
from .detectors import Calibration, NullDistribution, PageHinkley, calibrate, js_divergence
from .monitor import DriftMonitor, DriftReport, replay, summarise
from .registry import AdapterVersion, Decision, Registry, validate_id

__all__ = ["AdapterVersion", "Calibration", "Decision", "DriftMonitor", "DriftReport", "NullDistribution",
           "PageHinkley", "Reference", "Registry", "calibrate", "js_divergence", "replay", "summarise",
           "validate_id"]
