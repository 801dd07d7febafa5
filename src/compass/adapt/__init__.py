"""Adapter layer: LoRA training and evaluation on any transformers causal LM."""

from .config import TrainConfig
from .evaluate import evaluate
from .train import train

__all__ = ["TrainConfig", "evaluate", "train"]
