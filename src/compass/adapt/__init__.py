"""Adapter layer: LoRA training and evaluation on any transformers causal LM."""

from .config import EvalConfig, TrainConfig
from .evaluate import evaluate
from .train import train

__all__ = ["EvalConfig", "TrainConfig", "evaluate", "train"]
