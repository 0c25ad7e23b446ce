"""Training: train state, mesh and shardings, task registry, checkpoints, the loop."""
from jaxcv.train.loop import Trainer, TrainingDivergedError, train_and_evaluate

__all__ = ["Trainer", "TrainingDivergedError", "train_and_evaluate"]
