"""COMPASS-ECDA: drift monitoring, gated adapter updates on drift, and a registry of versions."""

from ..selection.reference import Reference
from .control import Controls
from .detectors import Calibration, NullDistribution, PageHinkley, calibrate, js_divergence
from .jobs import Job, JobQueue
from .loop import AdaptiveMonitor, replay
from .machine import Confirmation, IllegalTransition, Machine, Transition
from .monitor import DriftMonitor, summarise
from .notify import Notifier, NotifyConfig
from .policy import PolicyConfig, UpdateOutcome, UpdatePolicy, gate
from .registry import AdapterVersion, Decision, Registry, validate_id
from .windows import DriftReport
from .worker import Worker, WorkerConfig

__all__ = ["AdaptiveMonitor", "AdapterVersion", "Calibration", "Confirmation", "Controls", "Decision",
           "DriftMonitor", "DriftReport", "IllegalTransition", "Job", "JobQueue", "Machine", "Notifier",
           "NotifyConfig", "NullDistribution", "PageHinkley", "PolicyConfig", "Reference", "Registry",
           "Transition", "UpdateOutcome", "UpdatePolicy", "Worker", "WorkerConfig", "calibrate", "gate",
           "js_divergence", "replay", "summarise", "validate_id"]
