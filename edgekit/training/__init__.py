"""The one supervised training loop (finetune, distill, bottleneck training all use it) and losses."""

from edgekit.training.loop import Objective, TrainParams, TrainReport, cross_entropy, train
from edgekit.training.evaluate import accuracy_counts, evaluate_module

__all__ = ["Objective", "TrainParams", "TrainReport", "accuracy_counts", "cross_entropy", "evaluate_module",
           "train"]
