"""COMPASS: distribution-aware multilingual data selection for language-specific LoRA adapters."""

from .errors import CompassError, ConfigError, DataError

__version__ = "0.1.0"


def __getattr__(name: str):  # lazy: `import compass` stays cheap for the CLI and the server
    if name in ("select", "Selection", "SelectConfig"):
        import importlib

        return getattr(importlib.import_module("compass.selection"), name)
    raise AttributeError(name)


__all__ = ["CompassError", "ConfigError", "DataError", "Selection", "SelectConfig", "select"]
