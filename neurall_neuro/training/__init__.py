"""Training of registered models: ``train(TrainConfig(...)) -> TrainResult``.

See :mod:`neurall_neuro.training.trainer` for what a run writes and
:class:`~neurall_neuro.training.config.TrainConfig` for the options and defaults.
"""

from neurall_neuro.training.config import TrainConfig
from neurall_neuro.training.trainer import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
