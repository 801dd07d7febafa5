"""Adapter layer: LoRA training and evaluation on any transformers causal LM."""

from .adapter import Adapter
from .config import EvalConfig, TrainConfig
from .evaluate import evaluate
from .train import train

__all__ = ["Adapter", "EvalConfig", "TrainConfig", "evaluate", "train"]
