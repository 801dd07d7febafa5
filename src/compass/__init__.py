"""COMPASS: distribution-aware multilingual data selection for language-specific LoRA adapters."""

from .errors import CompassError, ConfigError, DataError

__version__ = "0.1.0"


def __getattr__(name: str):  # lazy: `import compass` stays cheap for the CLI and the server
    import importlib

    if name in ("select", "Selection", "SelectConfig"):
        return getattr(importlib.import_module("compass.selection"), name)
    if name in ("train", "evaluate", "TrainConfig"):
        return getattr(importlib.import_module("compass.adapt"), name)
    raise AttributeError(name)


__all__ = ["CompassError", "ConfigError", "DataError", "Selection", "SelectConfig", "TrainConfig",
           "evaluate", "select", "train"]
